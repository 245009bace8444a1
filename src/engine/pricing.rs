//! Renewal prices for what auto-renews soon: asked of the cloud's own price
//! inquiry, only for resources that fall due inside the rule's window, and
//! kept until the resource's expiry or renewal period changes.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use tracing::{debug, warn};

use crate::domain::model::{Account, AccountId, ExternalId, Resource, Snapshot, Unpriced};
use crate::domain::money::Money;
use crate::domain::request::Action;
use crate::domain::rules::renews_within;
use crate::ports::{Actions, Clock};

/// Prices the resources of `snapshot` that auto-renew within `within`.
/// A price one of `previous` holds is kept while the resource's expiry and
/// period are unchanged; what cannot be priced by `deadline` says so.
pub async fn price(
    actions: &dyn Actions,
    clock: &dyn Clock,
    account: &Account,
    snapshot: &mut Snapshot,
    previous: &[Known],
    within: Duration,
    deadline: DateTime<Utc>,
) {
    let now = snapshot.taken_at;
    for r in snapshot.resources.iter_mut() {
        if !renews_within(r, within, now) || r.renewal_price.is_some() {
            continue;
        }
        if let Some(known) = kept(previous, r) {
            match &known.price {
                Ok(p) => r.renewal_price = Some(*p),
                Err(gap) => r.unpriced = Some(Unpriced::clone(gap)),
            }
            continue;
        }
        if clock.now() >= deadline {
            r.unpriced = Some(Unpriced {
                why: "pricing did not finish within the poll's timeout".into(),
                lasting: false,
                last_charge: None,
            });
            continue;
        }
        let renew = Action::Renew {
            resources: vec![r.id.clone()],
            months: r.period_months(),
        };
        let unpriced = match actions.quote(account, &renew).await {
            Ok(Some(p)) if p.is_negative() => Unpriced {
                why: format!("the cloud quoted a negative price ({p})"),
                lasting: false,
                last_charge: None,
            },
            Ok(Some(p)) => {
                debug!(account = %account.id, resource = %r.id, price = %p, "renewal priced");
                r.renewal_price = Some(p);
                continue;
            }
            Ok(None) => Unpriced {
                why: format!("the cloud has no price inquiry for {}", r.product),
                lasting: true,
                last_charge: None,
            },
            Err(e) => {
                warn!(account = %account.id, resource = %r.id, error = %e, "renewal price inquiry failed");
                Unpriced {
                    why: format!("the price inquiry failed: {e}"),
                    lasting: false,
                    last_charge: None,
                }
            }
        };
        let last_charge = match actions.last_renewal(account, r).await {
            Ok(c) => c,
            Err(e) => {
                warn!(account = %account.id, resource = %r.id, error = %e, "reading the last renewal charge failed");
                None
            }
        };
        r.unpriced = Some(Unpriced {
            last_charge,
            ..unpriced
        });
    }
}

/// A price a poll found for a resource: a quote, or a lasting reason there
/// is none. It stands while the resource's expiry and period are the same.
#[derive(Debug, Clone)]
pub struct Known {
    id: ExternalId,
    expires_at: DateTime<Utc>,
    months: u32,
    // Boxed: a lasting gap is rare, and most of a Known's size otherwise.
    price: Result<Money, Box<Unpriced>>,
}

/// The prices `resources` hold, for a later poll to keep.
pub fn known(resources: &[Resource]) -> Vec<Known> {
    resources
        .iter()
        .filter_map(|r| {
            let price = match (&r.renewal_price, &r.unpriced) {
                (Some(p), _) => Ok(*p),
                (None, Some(u)) if u.lasting => Err(Box::new(u.clone())),
                _ => return None,
            };
            Some(Known {
                id: r.id.clone(),
                expires_at: r.expires_at,
                months: r.period_months(),
                price,
            })
        })
        .collect()
}

/// What `previous` knew of `r`'s price, if it still holds: the same expiry
/// and period.
fn kept<'a>(previous: &'a [Known], r: &Resource) -> Option<&'a Known> {
    previous
        .iter()
        .find(|p| p.id == r.id && p.expires_at == r.expires_at && p.months == r.period_months())
}

/// The prices each account's last poll here found or kept, so that the
/// next poll keeps them without reading its snapshot back from the store.
/// A price stands for a resource's expiry and period, not for the moment
/// it was asked, so one remembered from this replica's last poll holds as
/// well as one from the store's newest snapshot; a miss (the first poll
/// here, or one running beside another of the same account) reads the
/// store.
#[derive(Default)]
pub struct Remembered(Mutex<HashMap<AccountId, Box<[Known]>>>);

impl Remembered {
    /// What the account's last poll here priced, taken out: a poll running
    /// beside it finds nothing and reads the store.
    pub fn take(&self, account: &AccountId) -> Option<Box<[Known]>> {
        self.lock().remove(account)
    }

    /// Keeps what `snapshot` holds a price for, for the account's next poll.
    pub fn keep(&self, account: &AccountId, snapshot: &Snapshot) {
        let priced = known(&snapshot.resources);
        let mut by_account = self.lock();
        if priced.is_empty() {
            by_account.remove(account);
        } else {
            by_account.insert(account.clone(), priced.into_boxed_slice());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Box<[Known]>>> {
        // A map of plain data: a panic elsewhere cannot leave it half-made.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Balance, Charge, ExternalId, RenewalMode, ResourceStatus};
    use crate::domain::money::{Currency, Money};
    use crate::engine::clock::ManualClock;
    use crate::ports::{
        ActionError, CallAnswer, CloudCall, LostCall, NextCall, ProviderError, ReadBack,
    };
    use async_trait::async_trait;
    use std::sync::Mutex;

    fn cny(v: i64) -> Money {
        Money::from_minor(v * 100, Currency::Cny)
    }

    struct Quotes {
        asked: Mutex<Vec<String>>,
        answer: fn(&str) -> Result<Option<Money>, ProviderError>,
    }

    #[async_trait]
    impl Actions for Quotes {
        async fn quote(
            &self,
            _: &Account,
            action: &Action,
        ) -> Result<Option<Money>, ProviderError> {
            let Action::Renew { resources, months } = action else {
                panic!("only renewals are priced");
            };
            let id = resources[0].to_string();
            self.asked.lock().unwrap().push(format!("{id}/{months}"));
            (self.answer)(&id)
        }
        async fn last_renewal(
            &self,
            _: &Account,
            r: &Resource,
        ) -> Result<Option<Charge>, ProviderError> {
            Ok((r.id.as_str() == "charged").then(|| Charge {
                amount: cny(700),
                at: "2026-06-01T00:00:00Z".parse().unwrap(),
            }))
        }
        async fn next(
            &self,
            _: &Account,
            _: &Action,
            _: &[(CloudCall, CallAnswer)],
        ) -> Result<NextCall, ProviderError> {
            unreachable!()
        }
        async fn call(
            &self,
            _: &Account,
            _: &CloudCall,
            _: &str,
        ) -> Result<CallAnswer, ActionError> {
            unreachable!()
        }
        async fn read_back(&self, _: &Account, _: LostCall<'_>) -> Result<ReadBack, ProviderError> {
            unreachable!()
        }
    }

    fn resource(id: &str, days: i64, renewal: RenewalMode, now: DateTime<Utc>) -> Resource {
        Resource {
            id: ExternalId::parse(id).unwrap(),
            product: "CVM".into(),
            region: None,
            name: None,
            expires_at: now + Duration::days(days),
            renewal,
            status: ResourceStatus::Active,
            renewal_months: Some(3),
            renewal_price: None,
            unpriced: None,
        }
    }

    fn snapshot(now: DateTime<Utc>, resources: Vec<Resource>) -> Snapshot {
        Snapshot {
            taken_at: now,
            balance: Balance::available_only(cny(100)),
            resources,
            orders: vec![],
            spend: None,
            recharges: vec![],
            tally: None,
        }
    }

    fn account() -> Account {
        Account {
            id: crate::domain::model::AccountId::parse("prod").unwrap(),
            provider: "cloud".into(),
            site: "cn".into(),
            labels: Default::default(),
        }
    }

    /// A cloud that quotes `soon`, has no inquiry for `gone`, and fails for
    /// the rest.
    fn quotes() -> Quotes {
        Quotes {
            asked: Mutex::new(vec![]),
            answer: |id| match id {
                "soon" => Ok(Some(cny(900))),
                "gone" => Ok(None),
                _ => Err(ProviderError::Transport("connection reset".into())),
            },
        }
    }

    #[tokio::test]
    async fn only_what_renews_inside_the_window_is_priced_and_a_price_is_kept() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(now);
        let q = quotes();
        let mut s = snapshot(
            now,
            vec![
                resource("soon", 5, RenewalMode::Auto, now),
                resource("later", 60, RenewalMode::Auto, now),
                resource("manual", 5, RenewalMode::Manual, now),
                resource("gone", 5, RenewalMode::Auto, now),
                resource("charged", 5, RenewalMode::Auto, now),
            ],
        );
        let deadline = now + Duration::seconds(30);
        price(
            &q,
            &clock,
            &account(),
            &mut s,
            &[],
            Duration::days(14),
            deadline,
        )
        .await;
        assert_eq!(
            *q.asked.lock().unwrap(),
            ["soon/3", "gone/3", "charged/3"],
            "each due auto-renewal is priced once, for its own period"
        );
        let by = |id: &str| s.resources.iter().find(|r| r.id.as_str() == id).unwrap();
        assert_eq!(by("soon").renewal_price, Some(cny(900)));
        assert_eq!(by("later").renewal_price, None);
        assert!(by("later").unpriced.is_none());
        let gone = by("gone").unpriced.clone().unwrap();
        assert!(
            gone.lasting && gone.why.contains("no price inquiry"),
            "{gone:?}"
        );
        let charged = by("charged").unpriced.clone().unwrap();
        assert!(!charged.lasting && charged.why.contains("connection reset"));
        assert_eq!(charged.last_charge.unwrap().amount, cny(700));

        // The next poll: the same expiries. The quote and the lasting gap
        // are kept; the failed inquiry is asked again.
        q.asked.lock().unwrap().clear();
        let later = now + Duration::minutes(15);
        let mut next = snapshot(
            later,
            s.resources
                .iter()
                .map(|r| Resource {
                    renewal_price: None,
                    unpriced: None,
                    ..r.clone()
                })
                .collect(),
        );
        price(
            &q,
            &clock,
            &account(),
            &mut next,
            &known(&s.resources),
            Duration::days(14),
            deadline,
        )
        .await;
        assert_eq!(*q.asked.lock().unwrap(), ["charged/3"]);

        // A renewal moved the expiry: priced afresh.
        q.asked.lock().unwrap().clear();
        let mut moved = next.clone();
        for r in &mut moved.resources {
            r.renewal_price = None;
            r.unpriced = None;
            if r.id.as_str() == "soon" {
                r.expires_at += Duration::days(1);
            }
        }
        price(
            &q,
            &clock,
            &account(),
            &mut moved,
            &known(&next.resources),
            Duration::days(14),
            deadline,
        )
        .await;
        assert_eq!(*q.asked.lock().unwrap(), ["soon/3", "charged/3"]);
    }

    #[tokio::test]
    async fn a_remembered_poll_keeps_its_prices_and_one_with_none_is_forgotten() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(now);
        let q = quotes();
        let fresh = |at| {
            snapshot(
                at,
                vec![
                    resource("soon", 5, RenewalMode::Auto, now),
                    resource("gone", 5, RenewalMode::Auto, now),
                    resource("failing", 5, RenewalMode::Auto, now),
                    resource("later", 60, RenewalMode::Auto, now),
                ],
            )
        };
        let id = account().id;
        let memory = Remembered::default();
        let deadline = now + Duration::seconds(30);
        let mut first = fresh(now);
        price(
            &q,
            &clock,
            &account(),
            &mut first,
            &[],
            Duration::days(14),
            deadline,
        )
        .await;
        memory.keep(&id, &first);

        // The next poll, from memory: the quote and the lasting gap are
        // kept, the failed inquiry is asked again.
        q.asked.lock().unwrap().clear();
        let remembered = memory.take(&id).expect("the first poll's prices");
        let kept: Vec<&str> = remembered.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(kept, ["soon", "gone"], "only what holds a price is kept");
        assert!(memory.take(&id).is_none(), "taken out while in use");
        let mut next = fresh(now + Duration::minutes(15));
        price(
            &q,
            &clock,
            &account(),
            &mut next,
            &remembered,
            Duration::days(14),
            deadline,
        )
        .await;
        assert_eq!(*q.asked.lock().unwrap(), ["failing/3"]);
        assert_eq!(next.resources[0].renewal_price, Some(cny(900)));

        // A poll that priced nothing leaves nothing behind.
        memory.keep(&id, &next);
        memory.keep(&id, &fresh(now + Duration::minutes(30)));
        assert!(memory.take(&id).is_none());
    }

    #[tokio::test]
    async fn past_the_deadline_nothing_more_is_asked_and_the_gap_says_why() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(now + Duration::seconds(31));
        let q = Quotes {
            asked: Mutex::new(vec![]),
            answer: |_| Ok(Some(cny(1))),
        };
        let mut s = snapshot(now, vec![resource("soon", 5, RenewalMode::Auto, now)]);
        price(
            &q,
            &clock,
            &account(),
            &mut s,
            &[],
            Duration::days(14),
            now + Duration::seconds(30),
        )
        .await;
        assert!(q.asked.lock().unwrap().is_empty());
        let u = s.resources[0].unpriced.clone().unwrap();
        assert!(u.why.contains("timeout"), "{u:?}");
    }
}
