//! Silences: label matchers with an end, set by a person for a reason. A
//! silenced alert still fires and resolves in the store; only its notices are
//! held back, and the first one is sent if it still fires when the silence ends.

use super::command::Matcher;
use super::model::Account;
use super::rules::AlertKey;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: u64,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: Option<String>,
    /// Set when someone ended it before `ends_at`.
    pub ended_by: Option<String>,
}

impl Silence {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether every matcher holds for an alert of `account` with `key`.
    pub fn matches(&self, account: &Account, key: &AlertKey, severity: &str) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(|name| key.label(account, severity, name)))
    }
}

/// The `silenced` notices a new silence calls for: one per firing alert
/// people were told of (`told`) that it covers from its start, with the
/// alert's account. What they never saw stays unsaid.
pub fn newly_silenced<'a>(
    silence: &Silence,
    told: Vec<super::alert::Alert>,
    accounts: &'a [Account],
) -> Vec<(super::alert::Notice, &'a Account)> {
    if !silence.active_at(silence.starts_at) {
        return Vec::new();
    }
    told.into_iter()
        .filter(|a| a.state == super::alert::AlertState::Firing && a.last_notified_at.is_some())
        .filter_map(|alert| {
            let account = accounts
                .iter()
                .find(|c| c.id.as_str() == alert.key.account)?;
            silence
                .matches(account, &alert.key, alert.severity.as_str())
                .then_some((
                    super::alert::Notice {
                        kind: super::alert::NoticeKind::Silenced,
                        alert,
                        escalated_from: None,
                    },
                    account,
                ))
        })
        .collect()
}

/// The `acknowledged` notice an acknowledgement of `alert` calls for, with
/// its account: only when people were told of the alert, so that they see
/// who took it on.
pub fn acknowledged_notice<'a>(
    alert: &super::alert::Alert,
    accounts: &'a [Account],
) -> Option<(super::alert::Notice, &'a Account)> {
    alert.last_notified_at?;
    let account = accounts
        .iter()
        .find(|c| c.id.as_str() == alert.key.account)?;
    Some((
        super::alert::Notice {
            kind: super::alert::NoticeKind::Acknowledged,
            alert: alert.clone(),
            escalated_from: None,
        },
        account,
    ))
}

/// The first silence in force at `now` that covers the alert, if any.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    account: &Account,
    key: &AlertKey,
    severity: &str,
    now: DateTime<Utc>,
) -> Option<&'a Silence> {
    silences
        .iter()
        .find(|s| s.active_at(now) && s.matches(account, key, severity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::command::Matcher;
    use crate::domain::rules::RuleName;
    use crate::domain::rules::tests::{account, now};
    use chrono::Duration;

    fn silence(matchers: &str, hours: i64) -> Silence {
        Silence {
            id: 1,
            matchers: Matcher::parse_list(matchers).unwrap(),
            starts_at: now(),
            ends_at: now() + Duration::hours(hours),
            created_by: "ana".into(),
            reason: None,
            ended_by: None,
        }
    }

    fn key(rule: RuleName, resource: &str) -> AlertKey {
        AlertKey {
            rule,
            account: "acme".into(),
            resource: resource.into(),
            tier: String::new(),
        }
    }

    #[test]
    fn matchers_see_account_rule_resource_severity_and_account_labels() {
        let mut a = account();
        a.labels.insert("env".into(), "prod".into());
        let expiring = key(RuleName::Expiring, "ins-1");
        assert!(silence("account=acme,rule=expiring", 1).matches(&a, &expiring, "C"));
        assert!(silence("env=prod,severity!=A", 1).matches(&a, &expiring, "C"));
        assert!(!silence("env=prod,severity!=A", 1).matches(&a, &expiring, "A"));
        assert!(silence("resource=ins-1", 1).matches(&a, &expiring, "C"));
        assert!(!silence("resource=ins-2", 1).matches(&a, &expiring, "C"));
        assert!(!silence("env=dev", 1).matches(&a, &expiring, "C"));
        assert!(silence("provider=sim", 1).matches(&a, &expiring, "C"));
        // An account-level alert has no resource label.
        assert!(!silence("resource=ins-1", 1).matches(&a, &key(RuleName::LowBalance, ""), "B"));
    }

    #[test]
    fn a_silence_is_in_force_from_its_start_until_its_end() {
        let s = [silence("account=acme", 2)];
        let k = key(RuleName::LowBalance, "");
        let a = account();
        assert!(silenced_by(&s, &a, &k, "B", now()).is_some());
        assert!(silenced_by(&s, &a, &k, "B", now() - Duration::seconds(1)).is_none());
        assert!(silenced_by(&s, &a, &k, "B", now() + Duration::hours(2)).is_none());
    }
}
