//! What a request's card in a channel says and which buttons it offers,
//! whatever the platform; and the line its thread hears when its state
//! changes. Each chat adapter only lays this out in its own markup.

use crate::domain::request::{Request, RequestId, State, Verdict};
use crate::engine::alert_view::Tone;
use crate::engine::approvals::card;

/// A button on a request card. On the wire it is `<id>:<request>`, such as
/// `approve:R12`: it names the request and the decision, and nothing a
/// forger could widen (the presser is still looked up and judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Approve,
    Deny,
}

impl Choice {
    pub const ALL: [Choice; 2] = [Choice::Approve, Choice::Deny];

    pub fn id(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Deny => "deny",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Choice::Approve => "Approve",
            Choice::Deny => "Deny",
        }
    }

    pub fn from_id(id: &str) -> Option<Choice> {
        Choice::ALL.into_iter().find(|c| c.id() == id)
    }

    pub fn data(self, id: RequestId) -> String {
        format!("{}:{id}", self.id())
    }

    /// A payload back into the choice and the request.
    pub fn parse_data(data: &str) -> Option<(Choice, RequestId)> {
        let (choice, id) = data.split_once(':')?;
        // Only the canonical form: `R` and digits.
        let digits = id.strip_prefix('R')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((Choice::from_id(choice)?, RequestId::parse(id).ok()?))
    }
}

/// One request card, in plain text: adapters escape and lay it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub id: RequestId,
    pub tone: Tone,
    /// `R12 · top up ¥5,000.00 by wire transfer on acme`
    pub headline: String,
    /// Cost and balance after, who asked, each decision, and the status.
    pub lines: Vec<String>,
    /// Approve and Deny while it waits for decisions; none after.
    pub buttons: Vec<Choice>,
    /// One line for notifications and previews.
    pub fallback: String,
}

impl RequestView {
    pub fn of(r: &Request) -> RequestView {
        let mut lines = card(r);
        let what = if lines.is_empty() {
            String::new()
        } else {
            lines.remove(0)
        };
        let headline = format!("{} · {what}", r.id);
        let tone = match r.state {
            State::Requested => Tone::Warning,
            State::Approved | State::Executing | State::AwaitingPayment => Tone::Minor,
            State::Succeeded | State::Verified => Tone::Resolved,
            State::Denied | State::Expired | State::Cancelled | State::Failed | State::Unclear => {
                Tone::Critical
            }
        };
        let buttons = if r.state == State::Requested {
            Choice::ALL.to_vec()
        } else {
            Vec::new()
        };
        let status = lines.last().cloned().unwrap_or_default();
        RequestView {
            id: r.id,
            tone,
            fallback: format!("{headline}: {status}"),
            headline,
            lines,
            buttons,
        }
    }
}

/// What the card's thread hears when the request's state changed from
/// `was` to what it is now; `None` when the change is news to nobody.
pub fn news(r: &Request, was: State) -> Option<String> {
    if r.state == was {
        return None;
    }
    let names = |verdict: Verdict| {
        let names: Vec<&str> = r
            .decisions
            .iter()
            .filter(|d| d.verdict == verdict)
            .map(|d| d.by.as_str())
            .collect();
        names.join(" and ")
    };
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let id = r.id;
    Some(match r.state {
        State::Requested => return None,
        State::Expired => format!(
            "{id} expired: nobody decided it by {}. Ask again if it is still needed.",
            stamp(r.expires_at)
        ),
        State::Denied => {
            let why = r
                .decisions
                .iter()
                .find(|d| d.verdict == Verdict::Deny)
                .and_then(|d| d.comment.as_deref())
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            format!("{id} denied by {}{why}.", names(Verdict::Deny))
        }
        State::Cancelled => format!("{id} was cancelled: nothing is charged for it."),
        State::Approved | State::Executing => {
            format!(
                "{id} approved by {}; purser is carrying it out.",
                names(Verdict::Approve)
            )
        }
        State::Succeeded => format!("{id} approved by {} and done.", names(Verdict::Approve)),
        State::AwaitingPayment => format!(
            "{id} approved by {}: now a task for a person (see `request {id}`); purser closes it when the cloud shows it done.",
            names(Verdict::Approve)
        ),
        State::Verified => format!("{id} verified: the cloud shows it done."),
        State::Failed => format!("{id} failed: see `request {id}` for the cloud's answer."),
        State::Unclear => format!(
            "{id} needs a person: the cloud's answer was lost and what it shows cannot be tied to {id} (see `request {id}`). Check the console, then say `resolve {id} done` or `resolve {id} failed`."
        ),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::model::AccountId;
    use crate::domain::money::{Currency, Money};
    use crate::domain::request::{Action, Decision, PaymentMethod, Tiers, Via};
    use chrono::{DateTime, Utc};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap()
    }

    /// R7: ¥6,000 by wire on `shop`, asked by ria, waiting for two approvals.
    pub(crate) fn waiting() -> Request {
        let cost = Money::new(6_000.into(), Currency::Cny);
        Request {
            id: RequestId(7),
            account: AccountId::parse("shop").unwrap(),
            action: Action::Topup {
                amount: cost,
                method: PaymentMethod::Wire,
            },
            reason: Some("Q4 <budget> & more".into()),
            cost: Some(cost),
            balance: Some(Money::new(300.into(), Currency::Cny)),
            tier: Tiers::defaults().for_amount(Some(&cost)).clone(),
            requested_by: "ria".into(),
            requested_at: t(0),
            expires_at: t(24),
            state: State::Requested,
            decisions: Vec::new(),
            key: "k".into(),
            origin: None,
            version: 1,
        }
    }

    fn decided(r: &mut Request, by: &str, verdict: Verdict, comment: Option<&str>) {
        r.decisions.push(Decision {
            by: by.into(),
            role: "approver".into(),
            verdict,
            at: t(1),
            via: Via {
                platform: "chat-a".into(),
                message: Some("C1/1".into()),
            },
            second_factor: false,
            comment: comment.map(str::to_owned),
        });
    }

    #[test]
    fn a_waiting_request_offers_approve_and_deny_and_a_decided_one_nothing() {
        let r = waiting();
        let v = RequestView::of(&r);
        assert_eq!(v.headline, "R7 · top up ¥6,000.00 by wire transfer on shop");
        assert_eq!(v.buttons, [Choice::Approve, Choice::Deny]);
        assert_eq!(v.tone, Tone::Warning);
        assert!(
            v.lines
                .iter()
                .any(|l| l == "asked by ria: Q4 <budget> & more")
        );
        assert!(
            v.fallback.contains("waiting for 2 more approvals"),
            "{}",
            v.fallback
        );
        for (state, tone) in [
            (State::AwaitingPayment, Tone::Minor),
            (State::Verified, Tone::Resolved),
            (State::Expired, Tone::Critical),
            (State::Denied, Tone::Critical),
        ] {
            let v = RequestView::of(&Request { state, ..r.clone() });
            assert!(v.buttons.is_empty(), "{state}");
            assert_eq!(v.tone, tone, "{state}");
        }
    }

    #[test]
    fn the_thread_hears_each_change_of_state_once() {
        let mut r = waiting();
        assert_eq!(news(&r, State::Requested), None, "a vote is no news");
        r.state = State::Expired;
        assert_eq!(
            news(&r, State::Requested).unwrap(),
            "R7 expired: nobody decided it by 2026-09-22 14:13 UTC. Ask again if it is still needed."
        );
        assert_eq!(news(&r, State::Expired), None);
        let mut r = waiting();
        decided(&mut r, "ana", Verdict::Deny, Some("too early"));
        r.state = State::Denied;
        assert_eq!(
            news(&r, State::Requested).unwrap(),
            "R7 denied by ana: too early."
        );
        let mut r = waiting();
        decided(&mut r, "ana", Verdict::Approve, None);
        decided(&mut r, "bo", Verdict::Approve, None);
        r.state = State::Succeeded;
        assert_eq!(
            news(&r, State::Requested).unwrap(),
            "R7 approved by ana and bo and done."
        );
        r.state = State::Verified;
        assert_eq!(
            news(&r, State::AwaitingPayment).unwrap(),
            "R7 verified: the cloud shows it done."
        );
    }

    #[test]
    fn a_choice_payload_names_the_decision_and_the_request_only() {
        assert_eq!(Choice::Approve.data(RequestId(12)), "approve:R12");
        assert_eq!(
            Choice::parse_data("deny:R7"),
            Some((Choice::Deny, RequestId(7)))
        );
        for forged in [
            "approve:R0",
            "approve:12",
            "approve:R12x",
            "approve:R",
            "approve",
            "cancel:R1",
            "ack:R1",
            "approve:R1:code",
        ] {
            assert_eq!(Choice::parse_data(forged), None, "{forged}");
        }
        // An alert button's payload is not a request button's.
        assert_eq!(Choice::parse_data("ack:0123abcd"), None);
    }
}
