//! What an alert message says and which buttons it offers, whatever the
//! platform. Each chat adapter only lays this out in its own markup.

use crate::domain::alert::NoticeKind;
use crate::domain::rules::{RuleName, Severity};
use crate::engine::charts::{self, Charts};
use crate::ports::{AlertMessages, MessageRef, MessageRefs, SendError, StoredNotice};

/// Delivers notices (one, or several of one account decided together) to a
/// chat channel that keeps a message per alert or per group: alerts not yet
/// posted here go out together in one new message and are remembered;
/// changes to posted ones redraw their message, showing its other alerts as
/// they were; repeats reply to it; and what changes an alert never posted
/// here is no news.
///
/// A new message about money running out also gets its account's runway
/// chart from `charts`, as a best effort: a chart that cannot be drawn or
/// sent is logged, and the alert counts as delivered.
pub async fn deliver(
    channel: &dyn AlertMessages,
    refs: &dyn MessageRefs,
    charts: Option<&Charts>,
    output: &str,
    notices: &[StoredNotice],
) -> Result<(), SendError> {
    let store = |e: crate::ports::StoreError| SendError::transient(e.to_string());
    let mut fresh = Vec::new();
    let mut posted: Vec<(MessageRef, Vec<&StoredNotice>)> = Vec::new();
    for n in notices {
        match refs
            .message(output, &n.fingerprint, n.started_at)
            .await
            .map_err(store)?
        {
            Some(at) => match posted.iter_mut().find(|(m, _)| *m == at) {
                Some((_, changes)) => changes.push(n),
                None => posted.push((at, vec![n])),
            },
            // Silenced before it was posted, or posted before this output
            // existed: there is nothing to edit.
            None if matches!(
                n.kind,
                NoticeKind::Acknowledged | NoticeKind::Silenced | NoticeKind::Paged
            ) => {}
            None => fresh.push(n.clone()),
        }
    }
    for (at, changes) in posted {
        let (repeats, updates): (Vec<&StoredNotice>, Vec<&StoredNotice>) = changes
            .into_iter()
            .partition(|n| matches!(n.kind, NoticeKind::Repeat | NoticeKind::Paged));
        if !updates.is_empty() {
            let mut shown = refs.shown(output, &at).await.map_err(store)?;
            for u in updates {
                let same = |s: &StoredNotice| {
                    s.fingerprint == u.fingerprint && s.started_at == u.started_at
                };
                match shown.iter_mut().find(|s| same(s)) {
                    Some(s) => *s = u.clone(),
                    None => shown.push(u.clone()),
                }
            }
            channel.edit(&at, &shown).await?;
            refs.record_message(output, &at, &shown)
                .await
                .map_err(store)?;
        }
        if !repeats.is_empty() {
            let repeats: Vec<StoredNotice> = repeats.into_iter().cloned().collect();
            channel.reply(&at, &repeats).await?;
        }
    }
    if !fresh.is_empty()
        && let Some(at) = channel.post(&fresh).await?
    {
        refs.record_message(output, &at, &fresh)
            .await
            .map_err(store)?;
        if let (Some(charts), Some(account)) = (charts, charts::wanted(&fresh)) {
            let shown = match charts.runway(account).await {
                Ok(Some(chart)) => channel.chart(&at, &chart).await,
                Ok(None) => Ok(()),
                Err(e) => Err(SendError::transient(e.to_string())),
            };
            if let Err(e) = shown {
                tracing::warn!(output, account, error = %e, "the alert's runway chart was not sent");
            }
        }
    }
    Ok(())
}

/// The text of a reply in an alert's thread, plain: "still firing", or the
/// escalation steps taken.
pub fn still_firing(notices: &[StoredNotice]) -> String {
    let (paged, repeats): (Vec<&StoredNotice>, Vec<&StoredNotice>) = notices
        .iter()
        .partition(|n| n.kind == NoticeKind::Paged && n.paged.is_some());
    let mut lines: Vec<String> = paged.iter().filter_map(|n| n.paged.clone()).collect();
    match repeats.as_slice() {
        [] => {}
        [n] => lines.push(format!("Still firing: {}", n.summary)),
        _ => {
            let mut s = String::from("Still firing:");
            for n in &repeats {
                s.push_str(&format!("\n• {}", n.summary));
            }
            lines.push(s);
        }
    }
    lines.join("\n")
}

/// A chat channel that keeps a message per alert or group, with what it
/// remembers them by: every such channel is a `Notifier` through `deliver`.
pub trait ChatOutput: AlertMessages {
    /// The output's name, under which its messages are remembered.
    fn output(&self) -> &str;
    fn refs(&self) -> &dyn MessageRefs;
    fn charts(&self) -> Option<&Charts>;
}

#[async_trait::async_trait]
impl<T: ChatOutput> crate::ports::Notifier for T {
    async fn send(&self, n: &StoredNotice) -> Result<(), SendError> {
        self.send_group(std::slice::from_ref(n)).await
    }

    fn group_limit(&self) -> usize {
        CHAT_GROUP_LIMIT
    }

    async fn send_group(&self, notices: &[StoredNotice]) -> Result<(), SendError> {
        deliver(self, self.refs(), self.charts(), self.output(), notices).await
    }
}

/// How many alerts one chat message shows at most: ten fit the limits of
/// every chat platform purser speaks to (the fewest: ten embeds a message)
/// and still read on a phone.
pub const CHAT_GROUP_LIMIT: usize = 10;

/// A button on an alert message. On the wire it is `<id>:<fingerprint>`, or
/// `<id>:all` on a message showing several alerts (at most 28 bytes: within
/// the smallest limit a platform puts on a button's payload, 64 bytes), so a
/// press names the alert or the message and what to do, and nothing a forger
/// could widen.
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

    /// The label on a message showing several alerts, where it acts on each.
    pub fn label_all(self) -> &'static str {
        match self {
            Button::Ack => "Acknowledge all",
            Button::Silence1h => "Silence all 1 h",
            Button::Silence24h => "Silence all 24 h",
            Button::TopUp => "Top up…",
            Button::Renew => "Renew all…",
            Button::PayOrder => "Pay orders…",
        }
    }

    pub fn from_id(id: &str) -> Option<Button> {
        Button::ALL.into_iter().find(|b| b.id() == id)
    }

    /// The button's payload for the alert with `fingerprint`.
    pub fn data(self, fingerprint: &str) -> String {
        format!("{}:{fingerprint}", self.id())
    }

    /// The payload of the button for every alert of the message it is on.
    pub fn data_all(self) -> String {
        format!("{}:{ALL}", self.id())
    }

    /// A payload back into the button and what it acts on.
    pub fn parse_data(data: &str) -> Option<(Button, On<'_>)> {
        let (id, what) = data.split_once(':')?;
        Some((Button::from_id(id)?, On::parse(what)?))
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
            RuleName::PollFailed
            | RuleName::StaleBalance
            | RuleName::PaymentLate
            | RuleName::DeliveryFailed
            | RuleName::CalendarExpiring => None,
        }
    }
}

/// What a button's payload names instead of a fingerprint when it acts on
/// every alert of its message.
pub const ALL: &str = "all";

/// What a pressed button acts on, as its payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On<'a> {
    /// The alert with this fingerprint.
    Alert(&'a str),
    /// Every alert the message it was pressed on shows.
    Message,
}

impl<'a> On<'a> {
    /// `all`, or a fingerprint (hex, 6 to 64 digits).
    pub fn parse(what: &'a str) -> Option<On<'a>> {
        if what == ALL {
            return Some(On::Message);
        }
        let fp_ok = (6..=64).contains(&what.len()) && what.bytes().all(|b| b.is_ascii_hexdigit());
        fp_ok.then_some(On::Alert(what))
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
    /// The headline without the account, for a message that names it once:
    /// `[B] expiring · ins-7f3k2a1b`.
    pub label: String,
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
        let label = if n.resource.is_empty() {
            format!("[{}] {}", n.severity, n.rule)
        } else {
            format!("[{}] {} · {}", n.severity, n.rule, n.resource)
        };
        let short_id = n.fingerprint[..n.fingerprint.len().min(8)].to_owned();
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        if n.kind == NoticeKind::Resolved {
            return AlertView {
                tone: Tone::Resolved,
                fallback: format!("Resolved: {} {} {}", n.rule, n.account, n.summary),
                headline,
                label,
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
            label,
            summary: n.summary.clone(),
            short_id,
            status,
            buttons,
        }
    }
}

/// A message showing several alerts of one account, decided together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The loudest firing alert's; `Resolved` once all are.
    pub tone: Tone,
    /// `acme · 10 alerts: 7 firing, 3 resolved`
    pub headline: String,
    pub items: Vec<AlertView>,
    /// Buttons that act on every alert of the message (`Button::data_all`):
    /// each one that some alert still offers.
    pub buttons: Vec<Button>,
    pub fallback: String,
}

impl GroupView {
    pub fn of(notices: &[StoredNotice]) -> GroupView {
        let items: Vec<AlertView> = notices.iter().map(AlertView::of).collect();
        let account = notices.first().map_or("", |n| n.account.as_str());
        let resolved = items.iter().filter(|v| v.tone == Tone::Resolved).count();
        let firing = items.len() - resolved;
        let headline = match (firing, resolved) {
            (_, 0) => format!("{account} · {firing} alerts firing"),
            (0, _) => format!("{account} · {resolved} alerts, all resolved"),
            _ => format!(
                "{account} · {} alerts: {firing} firing, {resolved} resolved",
                items.len()
            ),
        };
        let loudest = |t: Tone| match t {
            Tone::Critical => 3,
            Tone::Warning => 2,
            Tone::Minor => 1,
            Tone::Resolved => 0,
        };
        let tone = items
            .iter()
            .map(|v| v.tone)
            .max_by_key(|t| loudest(*t))
            .unwrap_or(Tone::Resolved);
        let buttons = Button::ALL
            .into_iter()
            .filter(|b| items.iter().any(|v| v.buttons.contains(b)))
            .collect();
        let mut fallback = format!("{headline}:");
        for v in items.iter().take(3) {
            fallback.push_str(&format!(" {};", v.label));
        }
        if items.len() > 3 {
            fallback.push_str(&format!(" and {} more", items.len() - 3));
        }
        GroupView {
            tone,
            headline,
            items,
            buttons,
            fallback: fallback.trim_end_matches(';').to_owned(),
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
            paged: None,
            decided_at: t,
        }
    }

    #[test]
    fn button_payloads_round_trip_and_refuse_anything_else() {
        for b in Button::ALL {
            let data = b.data("e0fae2a62feacddd");
            assert!(data.len() <= 64, "{data}");
            assert_eq!(
                Button::parse_data(&data),
                Some((b, On::Alert("e0fae2a62feacddd")))
            );
            assert!(b.data_all().len() <= 64);
            assert_eq!(Button::parse_data(&b.data_all()), Some((b, On::Message)));
        }
        for bad in [
            "",
            "ack",
            "ack:",
            "ack:xyz123",
            "ack:e0fa",
            "explode:e0fae2a62feacddd",
            "ack:e0fae2a62feacddd,rule=x",
            "ack:All",
            "ack:all,e0fae2a62feacddd",
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

    /// Ten expiring resources of one account, as one poll decides them.
    pub(crate) fn ten() -> Vec<StoredNotice> {
        (0..10)
            .map(|i| {
                let mut n = notice(NoticeKind::Firing);
                n.fingerprint = format!("{i:x}0fae2a62feacddd");
                n.resource = format!("ins-{i}");
                n.summary = format!("cvm ins-{i} expires in 6 days");
                n
            })
            .collect()
    }

    #[test]
    fn a_group_offers_what_any_of_its_alerts_still_offers() {
        let mut notices = ten();
        let g = GroupView::of(&notices);
        assert_eq!(g.headline, "acme · 10 alerts firing");
        assert_eq!(g.items[3].label, "[B] expiring · ins-3");
        assert_eq!(
            g.buttons,
            [
                Button::Ack,
                Button::Silence1h,
                Button::Silence24h,
                Button::Renew
            ]
        );
        assert_eq!(
            g.fallback,
            "acme · 10 alerts firing: [B] expiring · ins-0; [B] expiring · ins-1; [B] expiring · ins-2; and 7 more"
        );
        for n in &mut notices {
            n.acknowledged_by = Some("ana".into());
        }
        notices[0].kind = NoticeKind::Resolved;
        notices[0].severity = Severity::A;
        let g = GroupView::of(&notices);
        assert_eq!(g.headline, "acme · 10 alerts: 9 firing, 1 resolved");
        assert_eq!(g.tone, Tone::Warning, "the resolved A is quiet now");
        assert_eq!(
            g.buttons,
            [Button::Silence1h, Button::Silence24h, Button::Renew]
        );
        for n in &mut notices {
            n.kind = NoticeKind::Resolved;
        }
        let g = GroupView::of(&notices);
        assert_eq!(g.headline, "acme · 10 alerts, all resolved");
        assert_eq!(g.tone, Tone::Resolved);
        assert!(g.buttons.is_empty());
    }

    /// A chat channel and its memory, recording what `deliver` asks of them.
    #[derive(Default)]
    struct Recorder {
        calls: std::sync::Mutex<Vec<String>>,
        rows: std::sync::Mutex<Vec<(String, MessageRef, StoredNotice)>>,
    }

    impl Recorder {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn names(notices: &[StoredNotice]) -> String {
        let parts: Vec<String> = notices
            .iter()
            .map(|n| format!("{}:{:?}", n.resource, n.kind))
            .collect();
        parts.join(",")
    }

    #[async_trait::async_trait]
    impl AlertMessages for Recorder {
        async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(format!("post {}", names(notices)));
            Ok(Some(MessageRef {
                channel: "c".into(),
                message: format!("m{}", calls.len()),
            }))
        }
        async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(format!("edit {} {}", at.message, names(notices)));
            Ok(())
        }
        async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(format!("reply {} {}", at.message, names(notices)));
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl MessageRefs for Recorder {
        async fn record_message(
            &self,
            output: &str,
            at: &MessageRef,
            notices: &[StoredNotice],
        ) -> Result<(), crate::ports::StoreError> {
            let mut rows = self.rows.lock().unwrap();
            for n in notices {
                rows.retain(|(o, _, r)| !(o == output && r.fingerprint == n.fingerprint));
                rows.push((output.into(), at.clone(), n.clone()));
            }
            Ok(())
        }
        async fn message(
            &self,
            output: &str,
            fingerprint: &str,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<Option<MessageRef>, crate::ports::StoreError> {
            let rows = self.rows.lock().unwrap();
            Ok(rows
                .iter()
                .find(|(o, _, n)| o == output && n.fingerprint == fingerprint)
                .map(|(_, at, _)| at.clone()))
        }
        async fn shown(
            &self,
            output: &str,
            at: &MessageRef,
        ) -> Result<Vec<StoredNotice>, crate::ports::StoreError> {
            let rows = self.rows.lock().unwrap();
            Ok(rows
                .iter()
                .filter(|(o, m, _)| o == output && m == at)
                .map(|(_, _, n)| n.clone())
                .collect())
        }
        async fn alerts_in(&self, _: &MessageRef) -> Result<Vec<String>, crate::ports::StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_group_is_posted_once_and_redrawn_whole_as_its_alerts_change() {
        let r = Recorder::default();
        let mut three: Vec<StoredNotice> = ten().into_iter().take(3).collect();
        deliver(&r, &r, None, "chat", &three).await.unwrap();
        assert_eq!(r.calls(), ["post ins-0:Firing,ins-1:Firing,ins-2:Firing"]);

        // One of them acknowledged: the message shows all three again, the
        // others as they were.
        let mut ack = three[1].clone();
        ack.kind = NoticeKind::Acknowledged;
        deliver(&r, &r, None, "chat", &[ack]).await.unwrap();
        assert_eq!(
            r.calls()[1],
            "edit m1 ins-0:Firing,ins-1:Acknowledged,ins-2:Firing"
        );

        // The next poll: two resolve, one repeats, and a new one fires.
        for n in &mut three {
            n.kind = NoticeKind::Resolved;
        }
        three[2].kind = NoticeKind::Repeat;
        let mut new = ten()[5].clone();
        new.decided_at += chrono::Duration::minutes(5);
        three.push(new);
        deliver(&r, &r, None, "chat", &three).await.unwrap();
        assert_eq!(
            r.calls()[2..],
            [
                "edit m1 ins-0:Resolved,ins-1:Resolved,ins-2:Firing",
                "reply m1 ins-2:Repeat",
                "post ins-5:Firing",
            ]
        );

        // Another output has its own messages; a silence for an alert it
        // never posted is no news there.
        let mut silenced = ten()[7].clone();
        silenced.kind = NoticeKind::Silenced;
        deliver(&r, &r, None, "other", &[silenced]).await.unwrap();
        assert_eq!(r.calls().len(), 5);
    }
}
