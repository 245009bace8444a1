//! What an alert message says and which buttons it offers, whatever the
//! platform. Each chat adapter only lays this out in its own markup.

use crate::domain::alert::NoticeKind;
use crate::domain::rules::{RuleName, Severity};
use crate::ports::{AlertMessages, MessageRefs, SendError, StoredNotice};

/// Delivers a notice to a chat channel that keeps one message per alert:
/// the first is posted and remembered, later ones edit it (a repeat replies
/// to it), and what changes an alert never posted here is no news.
pub async fn deliver(
    channel: &dyn AlertMessages,
    refs: &dyn MessageRefs,
    output: &str,
    n: &StoredNotice,
) -> Result<(), SendError> {
    let store = |e: crate::ports::StoreError| SendError::Retryable(e.to_string());
    let posted = refs
        .message(output, &n.fingerprint, n.started_at)
        .await
        .map_err(store)?;
    match (n.kind, posted) {
        (NoticeKind::Repeat, Some(at)) => channel.reply(&at, n).await,
        (_, Some(at)) => channel.edit(&at, n).await,
        // Silenced before it was posted, or posted before this output
        // existed: there is nothing to edit.
        (NoticeKind::Acknowledged | NoticeKind::Silenced, None) => Ok(()),
        (_, None) => {
            if let Some(at) = channel.post(n).await? {
                refs.record_message(output, &n.fingerprint, n.started_at, &at)
                    .await
                    .map_err(store)?;
            }
            Ok(())
        }
    }
}

/// A button on an alert message. On the wire it is `<id>:<fingerprint>`
/// (at most 28 bytes: within the smallest limit a platform puts on a
/// button's payload, 64 bytes), so a press
/// names the alert and what to do, and nothing a forger could widen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Ack,
    Silence1h,
    Silence24h,
    /// What fixes the condition; part 4's approval flows start here.
    TopUp,
    Renew,
    PayOrder,
}

impl Button {
    pub const ALL: [Button; 6] = [
        Button::Ack,
        Button::Silence1h,
        Button::Silence24h,
        Button::TopUp,
        Button::Renew,
        Button::PayOrder,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Button::Ack => "ack",
            Button::Silence1h => "silence_1h",
            Button::Silence24h => "silence_24h",
            Button::TopUp => "topup",
            Button::Renew => "renew",
            Button::PayOrder => "pay",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Button::Ack => "Acknowledge",
            Button::Silence1h => "Silence 1 h",
            Button::Silence24h => "Silence 24 h",
            Button::TopUp => "Top up…",
            Button::Renew => "Renew…",
            Button::PayOrder => "Pay order…",
        }
    }

    pub fn from_id(id: &str) -> Option<Button> {
        Button::ALL.into_iter().find(|b| b.id() == id)
    }

    /// The button's payload for the alert with `fingerprint`.
    pub fn data(self, fingerprint: &str) -> String {
        format!("{}:{fingerprint}", self.id())
    }

    /// A payload back into the button and the fingerprint it names.
    pub fn parse_data(data: &str) -> Option<(Button, &str)> {
        let (id, fp) = data.split_once(':')?;
        let fp_ok = (6..=64).contains(&fp.len()) && fp.bytes().all(|b| b.is_ascii_hexdigit());
        Some((Button::from_id(id)?, fp)).filter(|_| fp_ok)
    }

    /// The remedy for an alert of `rule`, if purser can start one.
    pub fn remedy(rule: RuleName) -> Option<Button> {
        match rule {
            RuleName::LowBalance | RuleName::Runway | RuleName::UnallocatedFunds => {
                Some(Button::TopUp)
            }
            RuleName::Expiring | RuleName::AutorenewAtRisk | RuleName::AutorenewFailed => {
                Some(Button::Renew)
            }
            RuleName::UnpaidOrder => Some(Button::PayOrder),
            RuleName::PollFailed | RuleName::StaleBalance => None,
        }
    }
}

/// How loud the message looks (colour or icon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Critical,
    Warning,
    Minor,
    Resolved,
}

/// One alert message, in plain text: adapters escape and lay it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    pub tone: Tone,
    /// `[B] expiring · acme / ins-7f3k2a1b`
    pub headline: String,
    pub summary: String,
    /// The first 8 digits of the fingerprint: what `ack` takes.
    pub short_id: String,
    /// `firing since 2026-11-23 02:00 UTC · acknowledged by ana`
    pub status: String,
    pub buttons: Vec<Button>,
    /// One line for notifications and previews.
    pub fallback: String,
}

impl AlertView {
    pub fn of(n: &StoredNotice) -> AlertView {
        let target = if n.resource.is_empty() {
            n.account.clone()
        } else {
            format!("{} / {}", n.account, n.resource)
        };
        let headline = format!("[{}] {} · {target}", n.severity, n.rule);
        let short_id = n.fingerprint[..n.fingerprint.len().min(8)].to_owned();
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        if n.kind == NoticeKind::Resolved {
            return AlertView {
                tone: Tone::Resolved,
                fallback: format!("Resolved: {} {} {}", n.rule, n.account, n.summary),
                headline,
                summary: n.summary.clone(),
                short_id,
                status: format!("resolved {}", stamp(n.resolved_at.unwrap_or(n.decided_at))),
                buttons: Vec::new(),
            };
        }
        let mut status = format!("firing since {}", stamp(n.fired_at.unwrap_or(n.started_at)));
        let mut buttons = Vec::new();
        match &n.acknowledged_by {
            Some(by) => status.push_str(&format!(" · acknowledged by {by}")),
            None => buttons.push(Button::Ack),
        }
        match (&n.silenced_by, n.silenced_until) {
            (Some(by), Some(until)) => {
                status.push_str(&format!(" · silenced by {by} until {}", stamp(until)));
            }
            _ => buttons.extend([Button::Silence1h, Button::Silence24h]),
        }
        buttons.extend(Button::remedy(n.rule));
        AlertView {
            tone: match n.severity {
                Severity::A => Tone::Critical,
                Severity::B => Tone::Warning,
                Severity::C => Tone::Minor,
            },
            fallback: format!("[{}] {} {}: {}", n.severity, n.rule, n.account, n.summary),
            headline,
            summary: n.summary.clone(),
            short_id,
            status,
            buttons,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::alert::AlertState;
    use chrono::{TimeZone, Utc};

    /// An expiring-resource notice with markup-hostile text, for every
    /// platform's rendering tests.
    pub(crate) fn notice(kind: NoticeKind) -> StoredNotice {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 23, 2, 0, 0)
            .single()
            .unwrap_or_default();
        StoredNotice {
            id: "n1".into(),
            kind,
            fingerprint: "e0fae2a62feacddd".into(),
            rule: RuleName::Expiring,
            severity: Severity::B,
            status: AlertState::Firing,
            account: "acme".into(),
            resource: "ins-7f3k2a1b".into(),
            tier: "7d".into(),
            summary: "cvm ins-7f3k2a1b (web<01>) expires in 6 days & counting".into(),
            labels: Default::default(),
            started_at: t,
            fired_at: Some(t),
            resolved_at: None,
            escalated_from: None,
            acknowledged_by: None,
            silenced_by: None,
            silenced_until: None,
            decided_at: t,
        }
    }

    #[test]
    fn button_payloads_round_trip_and_refuse_anything_else() {
        for b in Button::ALL {
            let data = b.data("e0fae2a62feacddd");
            assert!(data.len() <= 64, "{data}");
            assert_eq!(Button::parse_data(&data), Some((b, "e0fae2a62feacddd")));
        }
        for bad in [
            "",
            "ack",
            "ack:",
            "ack:xyz123",
            "ack:e0fa",
            "explode:e0fae2a62feacddd",
            "ack:e0fae2a62feacddd,rule=x",
        ] {
            assert_eq!(Button::parse_data(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_view_offers_what_is_still_to_do() {
        let v = AlertView::of(&notice(NoticeKind::Firing));
        assert_eq!(v.headline, "[B] expiring · acme / ins-7f3k2a1b");
        assert_eq!(v.status, "firing since 2026-11-23 02:00 UTC");
        assert_eq!(
            v.buttons,
            [
                Button::Ack,
                Button::Silence1h,
                Button::Silence24h,
                Button::Renew
            ]
        );
        assert_eq!(v.tone, Tone::Warning);

        let mut n = notice(NoticeKind::Silenced);
        n.acknowledged_by = Some("ana".into());
        n.silenced_by = Some("bo".into());
        n.silenced_until = Some(n.decided_at + chrono::Duration::hours(24));
        let v = AlertView::of(&n);
        assert_eq!(
            v.status,
            "firing since 2026-11-23 02:00 UTC · acknowledged by ana · silenced by bo until 2026-11-24 02:00 UTC"
        );
        assert_eq!(v.buttons, [Button::Renew]);

        let mut n = notice(NoticeKind::Resolved);
        n.resolved_at = Some(n.decided_at + chrono::Duration::hours(3));
        let v = AlertView::of(&n);
        assert_eq!(v.tone, Tone::Resolved);
        assert_eq!(v.status, "resolved 2026-11-23 05:00 UTC");
        assert!(v.buttons.is_empty());
    }
}
