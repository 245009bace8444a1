//! The alert lifecycle: pending → firing → resolved, after Alertmanager, with
//! tiers, hysteresis (via `Level::Hold`) and repeat intervals.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rules::{AlertKey, Finding, Level, RuleSet, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `pending` time.
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// One occurrence of an alert condition, from the first time it held until it resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub fingerprint: String,
    pub key: AlertKey,
    pub severity: Severity,
    pub rank: u32,
    pub state: AlertState,
    pub summary: String,
    pub started_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    /// When people were last told; `None` while a silence held every notice back.
    pub last_notified_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Someone took it on: it stops repeating until it resolves.
    pub acknowledged: Option<Acknowledgement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Firing,
    /// Still firing after the rule's repeat interval.
    Repeat,
    Resolved,
    /// Someone took it on: chat messages show who, and stop offering the button.
    Acknowledged,
    /// A silence now covers it: chat messages show until when, and stop
    /// offering to silence it.
    Silenced,
    /// A step of its escalation chain was taken: the channel hears who was
    /// paged, so every step is visible where the alert is.
    Paged,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Firing => "firing",
            NoticeKind::Repeat => "repeat",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Acknowledged => "acknowledged",
            NoticeKind::Silenced => "silenced",
            NoticeKind::Paged => "paged",
        }
    }
}

/// Something to tell people about one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub alert: Alert,
    /// When a more severe tier takes over from a firing one: the one it replaces.
    pub escalated_from: Option<String>,
}

/// What one evaluation changes: alerts to write and notices to send, to be
/// stored together so that neither is lost without the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub alerts: Vec<Alert>,
    pub notices: Vec<Notice>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.notices.is_empty()
    }
}

/// Moves one account's open alerts (pending or firing) forward given what its
/// rules found now. Pure: the caller stores the result. `muted` says whether a
/// silence holds an alert's notices back now.
pub fn reconcile(
    open: &[Alert],
    findings: &[Finding],
    rules: &RuleSet,
    muted: &dyn Fn(&Alert) -> bool,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = Changes::default();
    let by_fp: HashMap<&str, &Alert> = open.iter().map(|a| (a.fingerprint.as_str(), a)).collect();
    let mut seen: HashSet<String> = HashSet::new();

    for f in findings {
        let fp = f.key.fingerprint();
        if !seen.insert(fp.clone()) {
            continue;
        }
        let timing = rules.timing(f.key.rule);
        match (by_fp.get(fp.as_str()), f.level) {
            (None, Level::Hold) => {}
            (None, Level::Breach) => {
                let mut alert = Alert {
                    fingerprint: fp,
                    key: f.key.clone(),
                    severity: f.severity,
                    rank: f.rank,
                    state: AlertState::Pending,
                    summary: f.summary.clone(),
                    started_at: now,
                    fired_at: None,
                    last_notified_at: None,
                    resolved_at: None,
                    acknowledged: None,
                };
                if timing.pending_for <= chrono::Duration::zero() {
                    fire(&mut alert, open, muted, now, &mut changes);
                }
                changes.alerts.push(alert);
            }
            (Some(existing), level) => {
                let mut alert = (*existing).clone();
                alert.summary = f.summary.clone();
                alert.severity = f.severity;
                if level == Level::Breach {
                    match alert.state {
                        AlertState::Pending if now - alert.started_at >= timing.pending_for => {
                            fire(&mut alert, open, muted, now, &mut changes);
                        }
                        // Fired under a silence that has since ended: tell people now.
                        AlertState::Firing
                            if alert.last_notified_at.is_none() && !muted(&alert) =>
                        {
                            alert.last_notified_at = Some(now);
                            changes.notices.push(Notice {
                                kind: NoticeKind::Firing,
                                alert: alert.clone(),
                                escalated_from: None,
                            });
                        }
                        AlertState::Firing => {
                            let due = match (timing.repeat_every, alert.last_notified_at) {
                                (Some(every), Some(last)) => now - last >= every,
                                _ => false,
                            };
                            if due && alert.acknowledged.is_none() && !muted(&alert) {
                                alert.last_notified_at = Some(now);
                                changes.notices.push(Notice {
                                    kind: NoticeKind::Repeat,
                                    alert: alert.clone(),
                                    escalated_from: None,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                if alert != **existing {
                    changes.alerts.push(alert);
                }
            }
        }
    }

    for a in open {
        if seen.contains(&a.fingerprint) {
            continue;
        }
        let mut alert = a.clone();
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(now);
        // A tier that a more severe one had taken over from resolves quietly:
        // one resolved notice per group, from the tier people last heard about.
        let superseded = open
            .iter()
            .any(|o| o.key.same_group(&a.key) && o.rank > a.rank && o.state == AlertState::Firing);
        // Nobody hears of the end of what they never heard of.
        if a.state == AlertState::Firing && !superseded && a.last_notified_at.is_some() {
            alert.last_notified_at = Some(now);
            changes.notices.push(Notice {
                kind: NoticeKind::Resolved,
                alert: alert.clone(),
                escalated_from: None,
            });
        }
        changes.alerts.push(alert);
    }
    changes
}

fn fire(
    alert: &mut Alert,
    open: &[Alert],
    muted: &dyn Fn(&Alert) -> bool,
    now: DateTime<Utc>,
    changes: &mut Changes,
) {
    alert.state = AlertState::Firing;
    alert.fired_at = Some(now);
    if muted(alert) {
        return;
    }
    alert.last_notified_at = Some(now);
    let escalated_from = open
        .iter()
        .filter(|o| {
            o.key.same_group(&alert.key) && o.rank < alert.rank && o.state == AlertState::Firing
        })
        .max_by_key(|o| o.rank)
        .map(|o| o.fingerprint.clone());
    changes.notices.push(Notice {
        kind: NoticeKind::Firing,
        alert: alert.clone(),
        escalated_from,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::PollHealth;
    use crate::domain::rules::tests::{account, now, rules, snapshot};
    use crate::domain::rules::{AccountState, evaluate};
    use chrono::Duration;

    fn step(
        open: &[Alert],
        available: &str,
        at: DateTime<Utc>,
    ) -> (Vec<Alert>, Vec<(NoticeKind, String)>) {
        step_muted(open, available, at, false)
    }

    fn step_muted(
        open: &[Alert],
        available: &str,
        at: DateTime<Utc>,
        muted: bool,
    ) -> (Vec<Alert>, Vec<(NoticeKind, String)>) {
        let account = account();
        let history = [snapshot(available)];
        let health = PollHealth::new();
        let f = evaluate(
            &rules(),
            &AccountState {
                account: &account,
                history: &history,
                health: &health,
                payments: &[],
                undelivered: &[],
            },
            at,
        )
        .findings;
        let changes = reconcile(open, &f, &rules(), &|_| muted, at);
        let mut next: Vec<Alert> = open.to_vec();
        for a in &changes.alerts {
            next.retain(|o| o.fingerprint != a.fingerprint);
            if a.state != AlertState::Resolved {
                next.push(a.clone());
            }
        }
        let notices = changes
            .notices
            .iter()
            .map(|n| (n.kind, n.alert.key.tier.clone()))
            .collect();
        (next, notices)
    }

    #[test]
    fn a_silence_holds_notices_back_and_its_end_releases_the_first() {
        let t = now();
        // Fires under a silence: stored as firing, nobody told.
        let (open, n) = step_muted(&[], "2500", t, true);
        assert!(n.is_empty(), "{n:?}");
        assert_eq!(open[0].state, AlertState::Firing);
        assert_eq!(open[0].last_notified_at, None);
        // Still silenced hours later: no repeat either.
        let (open, n) = step_muted(&open, "2500", t + Duration::hours(5), true);
        assert!(n.is_empty(), "{n:?}");
        // The silence ends and it still fires: now people hear, once.
        let (open, n) = step(&open, "2500", t + Duration::hours(6));
        assert_eq!(n, [(NoticeKind::Firing, "3000.00".to_owned())]);
        let (_, n) = step(&open, "2500", t + Duration::hours(7));
        assert!(n.is_empty(), "{n:?}");
    }

    #[test]
    fn what_resolved_unheard_resolves_quietly() {
        let t = now();
        let (open, _) = step_muted(&[], "2500", t, true);
        let (open, n) = step(&open, "90000", t + Duration::hours(1));
        assert!(n.is_empty(), "{n:?}");
        assert!(open.is_empty());
        // Heard, then silenced, then resolved: the end is still news.
        let (open, _) = step(&[], "2500", t);
        let (_, n) = step_muted(&open, "90000", t + Duration::hours(1), true);
        assert_eq!(n, [(NoticeKind::Resolved, "3000.00".to_owned())]);
    }

    #[test]
    fn an_acknowledged_alert_stops_repeating_but_still_resolves() {
        let t = now();
        let (mut open, _) = step(&[], "2500", t);
        open[0].acknowledged = Some(Acknowledgement {
            by: "ana".into(),
            at: t + Duration::minutes(5),
        });
        let (open, n) = step(&open, "2500", t + Duration::hours(5));
        assert!(n.is_empty(), "no repeat once acknowledged: {n:?}");
        let (_, n) = step(&open, "90000", t + Duration::hours(6));
        assert_eq!(n, [(NoticeKind::Resolved, "3000.00".to_owned())]);
    }

    #[test]
    fn escalation_and_one_resolution_per_group() {
        let t = now();
        let (open, n) = step(&[], "2500", t);
        assert_eq!(n, [(NoticeKind::Firing, "3000.00".to_owned())]);
        let (open, n) = step(&open, "400", t + Duration::minutes(1));
        assert_eq!(n, [(NoticeKind::Firing, "500.00".to_owned())]);
        assert_eq!(open.len(), 2);
        // The warn tier is held while critical fires: it does not repeat.
        let (open, n) = step(&open, "400", t + Duration::hours(5));
        assert_eq!(n, [(NoticeKind::Repeat, "500.00".to_owned())]);
        let (open, n) = step(&open, "50000", t + Duration::hours(6));
        assert_eq!(n, [(NoticeKind::Resolved, "500.00".to_owned())]);
        assert!(open.is_empty());
    }

    #[test]
    fn deescalation_resolves_the_worse_tier_and_keeps_the_other() {
        let t = now();
        let (open, _) = step(&[], "400", t);
        assert_eq!(open.len(), 1, "only the worst tier starts");
        let (open, n) = step(&open, "2500", t + Duration::minutes(1));
        assert_eq!(
            n,
            [
                (NoticeKind::Firing, "3000.00".to_owned()),
                (NoticeKind::Resolved, "500.00".to_owned())
            ]
        );
        assert_eq!(open.len(), 1);
    }
}
