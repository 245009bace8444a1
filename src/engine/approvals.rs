//! Requests from asking to deciding: the account and cost are worked out,
//! policy is applied (a refusal is audited too), the request is stored with
//! its idempotency key, decisions are judged by the domain and written
//! guarded by the version read, and an approved request is handed to the
//! executor.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::executor::{self, Executor};
use crate::domain::account::AccountSpec;
use crate::domain::audit::{Event, NewEntry};
use crate::domain::model::{AccountId, Snapshot};
use crate::domain::money::Money;
use crate::domain::people::Person;
use crate::domain::policy::{self, Context, Policy, Refusal};
use crate::domain::request::{
    self, Action, Holdings, Judged, NotCancelled, NotDecided, NotResolved, Request, RequestId,
    State, Tiers, Verdict, Via,
};
use crate::ports::{NewRequest, Requests, SecondFactors, Step, Store, StoreError, Written};

/// Checks second-factor codes; people without a secret are not enrolled.
pub struct Approvals {
    pub requests: Arc<dyn Requests>,
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    pub policies: Arc<HashMap<AccountId, Arc<Policy>>>,
    pub tiers: Tiers,
    /// How long a request waits for its decisions.
    pub ttl: Duration,
    pub second_factors: Arc<dyn SecondFactors>,
    pub executor: Arc<Executor>,
    /// Told of every change, so that the request's cards in chat show it.
    pub board: Option<super::board::BoardSignal>,
}

/// What asking did.
#[derive(Debug)]
pub enum Opened {
    Opened(Box<Request>),
    Refused(Refusal),
    /// The request names something purser cannot place (no such account,
    /// a resource on no account): nothing was stored.
    Unknown(String),
}

/// A person's decision as they gave it.
#[derive(Debug, Clone)]
pub struct Vote<'a> {
    pub verdict: Verdict,
    /// A second-factor code, when they gave one.
    pub code: Option<&'a str>,
    pub comment: Option<String>,
    pub via: Via,
}

/// What a decision did.
#[derive(Debug)]
pub enum Decided {
    Counted {
        request: Request,
        missing: String,
    },
    /// Approved by this decision, and carried out as far as it goes now:
    /// the request's state says where it stands, `outcome` in a line.
    Approved {
        request: Request,
        outcome: Option<String>,
    },
    Denied(Request),
    AlreadyDecided(Request),
    Refused(NotDecided),
    NotFound(RequestId),
}

/// What a person's word on an unclear request did.
#[derive(Debug)]
pub enum Resolved {
    Resolved(Box<Request>),
    Refused(NotResolved),
    NotFound(RequestId),
}

#[derive(Debug)]
pub enum Cancelled {
    Cancelled(Box<Request>),
    Refused(NotCancelled),
    NotFound(RequestId),
}

/// The account's latest good snapshot: what the rules judge it on. One row,
/// not the runway window's history (thousands of snapshots a month).
pub async fn last_read(store: &dyn Store, a: &AccountSpec) -> Result<Option<Snapshot>, StoreError> {
    store.latest_snapshot(&a.account.id).await
}

/// Who purser is in the audit log when it acts by itself.
pub const PURSER: &str = "purser";

impl Approvals {
    /// The method a top-up uses when none is named: the account's first.
    pub fn default_method(&self, account: &AccountId) -> Option<request::PaymentMethod> {
        self.policies
            .get(account)
            .and_then(|p| p.topup.first())
            .map(|m| m.method)
    }

    fn changed(&self) {
        if let Some(b) = &self.board {
            b.changed();
        }
    }

    fn account(&self, id: &AccountId) -> Option<&AccountSpec> {
        self.accounts
            .iter()
            .find(|a| &a.account.id == id)
            .map(|a| &**a)
    }

    async fn latest(&self, a: &AccountSpec) -> Result<Option<Snapshot>, StoreError> {
        last_read(self.store.as_ref(), a).await
    }

    /// The account whose latest snapshot has `found`, among all.
    async fn owner(
        &self,
        what: &str,
        found: impl Fn(&Snapshot) -> bool,
    ) -> Result<Result<AccountId, String>, StoreError> {
        let mut owners = Vec::new();
        for a in self.accounts.iter() {
            if let Some(s) = self.latest(a).await?
                && found(&s)
            {
                owners.push(a.account.id.clone());
            }
        }
        Ok(match owners.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "No account has {what} as last read. `expiring` lists resources; unpaid orders show in alerts."
            )),
            many => Err(format!(
                "{what} is on several accounts ({}); ids should be unique, so check the config.",
                many.iter()
                    .map(AccountId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
    }

    /// The account an action is on: named (top-up, allocation) or found by
    /// the resource or order it names.
    pub async fn account_of(
        &self,
        named: Option<&AccountId>,
        action: &Action,
    ) -> Result<Result<AccountId, String>, StoreError> {
        if let Some(id) = named {
            return Ok(match self.account(id) {
                Some(_) => Ok(id.clone()),
                None => Err(format!(
                    "No account {id}. Known: {}",
                    self.accounts
                        .iter()
                        .map(|a| a.account.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
        match action {
            Action::Renew { resources, .. } => {
                let first = &resources[0];
                self.owner(&format!("resource {first}"), |s| {
                    s.resources.iter().any(|r| &r.id == first)
                })
                .await
            }
            Action::Autorenew { resource, .. } => {
                self.owner(&format!("resource {resource}"), |s| {
                    s.resources.iter().any(|r| &r.id == resource)
                })
                .await
            }
            Action::Pay { orders, .. } => {
                let first = &orders[0];
                self.owner(&format!("unpaid order {first}"), |s| {
                    s.orders.iter().any(|o| &o.id == first)
                })
                .await
            }
            Action::Topup { .. } | Action::Allocate { .. } => {
                Ok(Err("Name the account the money is for.".into()))
            }
        }
    }

    /// What an action costs, as far as the last read tells: the amount
    /// named, the orders' amounts, or each resource's renewal price per
    /// month times the months (unknown if any resource's price is).
    fn cost(action: &Action, latest: Option<&Snapshot>, zero: Money) -> Option<Money> {
        match action {
            Action::Topup { amount, .. } | Action::Allocate { amount, .. } => Some(*amount),
            Action::Autorenew { .. } => Some(zero),
            Action::Pay { orders, .. } => {
                let s = latest?;
                orders.iter().try_fold(zero, |sum, id| {
                    let o = s.orders.iter().find(|o| &o.id == id)?;
                    sum.checked_add(&o.amount).ok()
                })
            }
            Action::Renew { resources, months } => {
                let s = latest?;
                resources.iter().try_fold(zero, |sum, id| {
                    let r = s.resources.iter().find(|r| &r.id == id)?;
                    // The price is of one renewal period; the request
                    // may ask for more or fewer months.
                    let factor = rust_decimal::Decimal::from(*months)
                        .checked_div(r.period_months().into())?;
                    sum.checked_add(&r.renewal_price?.checked_mul(factor).ok()?)
                        .ok()
                })
            }
        }
    }

    /// A refusal, audited.
    async fn refused(
        &self,
        person: &Person,
        account: &AccountId,
        action: &Action,
        via: &Via,
        refusal: policy::Refusal,
        now: DateTime<Utc>,
    ) -> Result<Opened, StoreError> {
        self.requests
            .audit(&[NewEntry::new(
                now,
                &person.name,
                Event::Refused,
                None,
                serde_json::json!({
                    "account": account.as_str(),
                    "action": action,
                    "rule": refusal.rule,
                    "why": &refusal.why,
                    "via": via,
                }),
            )])
            .await?;
        Ok(Opened::Refused(refusal))
    }

    /// The coupons and discounts the cloud offers on the order a payment
    /// names, read when it is asked for; what they are is written into the
    /// request for its card, and a discount the cloud requires (a price
    /// adjustment) is added when none was named.
    async fn offers(
        &self,
        a: &AccountSpec,
        action: &mut Action,
    ) -> Result<Option<Vec<policy::Offer>>, policy::Refusal> {
        let Action::Pay {
            orders,
            coupons,
            discount,
            offered,
        } = action
        else {
            return Ok(None);
        };
        let (Some(actions), [order]) = (
            self.executor.actions.get(&a.account.provider),
            orders.as_slice(),
        ) else {
            return Ok(None);
        };
        let list = match actions.offers(&a.account, order).await {
            Ok(Some(list)) => list,
            Ok(None) => return Ok(None),
            Err(e) if coupons.is_empty() && discount.is_none() => {
                tracing::warn!(account = %a.account.id, order = %order, error = %e, "reading the order's offers failed");
                return Ok(None);
            }
            Err(e) => {
                return Err(policy::Refusal {
                    rule: "pay.offers",
                    why: format!(
                        "the coupons and discounts the cloud offers on order {order} could not be read ({e}); try again"
                    ),
                });
            }
        };
        if discount.is_none()
            && let Some(required) = list.iter().find(|o| o.required && o.discount)
        {
            *discount = Some(required.id.clone());
        }
        *offered = coupons
            .iter()
            .chain(discount.iter())
            .filter_map(|id| list.iter().find(|o| &o.id == id))
            .map(|o| {
                let mut line = format!(
                    "{} {}: {}",
                    if o.discount { "discount" } else { "coupon" },
                    o.id,
                    o.label
                );
                if let Some(at) = o.expires_at {
                    line.push_str(&format!(", until {}", at.format("%Y-%m-%d %H:%M UTC")));
                }
                if o.required {
                    line.push_str(" (required by the cloud)");
                }
                line
            })
            .collect();
        Ok(Some(list))
    }

    /// Asks for `action` on `account` as `person`.
    pub async fn open(
        &self,
        person: &Person,
        account: &AccountId,
        action: Action,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Opened, StoreError> {
        let (Some(a), Some(policy)) = (self.account(account), self.policies.get(account)) else {
            return Ok(Opened::Unknown(format!("No account {account}.")));
        };
        let latest = self.latest(a).await?;
        let zero = Money::zero(a.currency);
        let mut cost = Self::cost(&action, latest.as_ref(), zero);
        if cost.is_none()
            && let Some(actions) = self.executor.actions.get(&a.account.provider)
        {
            // The cloud's own price inquiry; a failure leaves it unknown,
            // which the strictest tier covers.
            match actions.quote(&a.account, &action).await {
                Ok(quoted) => cost = quoted,
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "the price inquiry failed")
                }
            }
        }
        let (mut account_day, mut requester_day) = (zero, zero);
        for r in self
            .requests
            .requests_since(now - Duration::hours(24))
            .await?
        {
            let Some(c) = r.cost.filter(|c| c.currency() == a.currency) else {
                continue;
            };
            if !r.state.counts_against_caps() {
                continue;
            }
            if &r.account == account {
                account_day = account_day.checked_add(&c).unwrap_or(account_day);
            }
            if r.requested_by == person.name {
                requester_day = requester_day.checked_add(&c).unwrap_or(requester_day);
            }
        }
        let mut action = action;
        if let (Action::Allocate { contract, had, .. }, Some(s)) = (&mut action, latest.as_ref()) {
            *had = Holdings::read(s, contract);
        }
        let offers = match self.offers(a, &mut action).await {
            Ok(offers) => offers,
            Err(refusal) => {
                return self
                    .refused(person, account, &action, &via, refusal, now)
                    .await;
            }
        };
        let cx = Context {
            requester: person,
            now,
            latest: latest.as_ref(),
            cost,
            account_day,
            requester_day,
            offers: offers.as_deref(),
        };
        if let Err(refusal) = policy::check(policy, &action, &cx) {
            return self
                .refused(person, account, &action, &via, refusal, now)
                .await;
        }
        let tier = self.tiers.for_amount(cost.as_ref()).clone();
        let new = NewRequest {
            account: account.clone(),
            action,
            reason,
            cost,
            balance: latest.as_ref().map(|s| s.balance.available),
            tier,
            requested_by: person.name.clone(),
            requested_at: now,
            expires_at: now + self.ttl,
            origin: Some(via),
        };
        let opened = self.requests.open_request(&new).await?;
        self.changed();
        Ok(Opened::Opened(Box::new(opened)))
    }

    /// `person`'s vote on request `id`.
    pub async fn decide(
        &self,
        person: &Person,
        id: RequestId,
        vote: Vote<'_>,
        now: DateTime<Utc>,
    ) -> Result<Decided, StoreError> {
        let Vote {
            verdict,
            code,
            comment,
            via,
        } = vote;
        // A concurrent decision makes the write stale; judge again on what
        // is there now. Each round someone else's write landed, so this ends.
        for _ in 0..8 {
            let Some(r) = self.requests.request(id).await? else {
                return Ok(Decided::NotFound(id));
            };
            if request::is_overdue(&r, now) {
                let r = self.expire(r, now).await?;
                self.changed();
                return Ok(Decided::Refused(NotDecided::Expired {
                    id,
                    at: r.expires_at,
                }));
            }
            let factor = self.second_factors.check(&person.name, code, now);
            let (judged, decision) = match request::decide(
                &r,
                person,
                verdict,
                via.clone(),
                factor,
                comment.clone(),
                now,
            ) {
                Ok(j) => j,
                Err(no) => return Ok(Decided::Refused(no)),
            };
            let then = match &judged {
                Judged::AlreadyDecided(_) => return Ok(Decided::AlreadyDecided(r)),
                Judged::Approved => Some(State::Approved),
                Judged::Denied => Some(State::Denied),
                Judged::Counted { .. } => None,
            };
            match self
                .requests
                .record_decision(id, r.version, &decision, then)
                .await?
            {
                Written::Done(after) => {
                    let decided = match judged {
                        Judged::Approved => {
                            let (request, outcome) = self.start(after).await?;
                            Decided::Approved { request, outcome }
                        }
                        Judged::Denied => Decided::Denied(after),
                        Judged::Counted { missing } => Decided::Counted {
                            request: after,
                            missing,
                        },
                        Judged::AlreadyDecided(_) => Decided::AlreadyDecided(after),
                    };
                    // Carried out (or not) since: the card shows how it ended.
                    self.changed();
                    return Ok(decided);
                }
                // Busy only stops a move into executing.
                Written::Stale(_) | Written::Busy { .. } => continue,
                Written::NotFound => return Ok(Decided::NotFound(id)),
            }
        }
        Err(StoreError::Corrupt(format!(
            "{id} kept changing while a decision was written"
        )))
    }

    /// Carries out an approved request as far as it goes now, with a line
    /// on where it stands.
    async fn start(&self, r: Request) -> Result<(Request, Option<String>), StoreError> {
        let Some(ran) = self.executor.run(r.id).await? else {
            return Ok((r, None));
        };
        let progress = self.requests.progress(r.id).await?;
        let line = executor::outcome_line(&ran.request, progress.as_ref(), ran.paused.as_ref());
        Ok((ran.request, line))
    }

    pub async fn cancel(
        &self,
        person: &Person,
        id: RequestId,
        now: DateTime<Utc>,
    ) -> Result<Cancelled, StoreError> {
        for _ in 0..8 {
            let Some(r) = self.requests.request(id).await? else {
                return Ok(Cancelled::NotFound(id));
            };
            if let Err(no) = request::may_cancel(&r, person) {
                return Ok(Cancelled::Refused(no));
            }
            let step = Step::new(r.state, State::Cancelled, &person.name, now);
            match self.requests.transition(id, step).await? {
                Written::Done(after) => {
                    self.changed();
                    return Ok(Cancelled::Cancelled(Box::new(after)));
                }
                Written::Stale(_) | Written::Busy { .. } => continue,
                Written::NotFound => return Ok(Cancelled::NotFound(id)),
            }
        }
        Err(StoreError::Corrupt(format!(
            "{id} kept changing while it was cancelled"
        )))
    }

    /// Settles a request purser left unclear with what `person` found in
    /// the cloud's console: done or not. Audited with their note.
    pub async fn resolve(
        &self,
        person: &Person,
        id: RequestId,
        done: bool,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Resolved, StoreError> {
        for _ in 0..8 {
            let Some(r) = self.requests.request(id).await? else {
                return Ok(Resolved::NotFound(id));
            };
            if let Err(no) = request::may_resolve(&r, person) {
                return Ok(Resolved::Refused(no));
            }
            let progress = self.requests.progress(id).await?;
            let mut exec = executor::execution(progress.as_ref()).unwrap_or_default();
            let said = note.map(|n| format!(": {n}")).unwrap_or_default();
            if done {
                exec.receipt = Some(format!(
                    "{} found it carried out in the cloud's console{said}",
                    person.name
                ));
            } else {
                exec.failure = Some(format!(
                    "{} found it not carried out in the cloud's console{said}",
                    person.name
                ));
            }
            let progress = serde_json::json!({ "execution": &exec });
            let entry = [NewEntry::new(
                now,
                &person.name,
                Event::Note,
                Some(id),
                serde_json::json!({
                    "resolved": if done { "done" } else { "failed" },
                    "note": note,
                    "unclear": exec.unclear,
                }),
            )];
            let to = if done {
                State::Succeeded
            } else {
                State::Failed
            };
            let step = Step {
                progress: Some(&progress),
                audit: &entry,
                ..Step::new(State::Unclear, to, &person.name, now)
            };
            match self.requests.transition(id, step).await? {
                Written::Done(after) => {
                    self.changed();
                    return Ok(Resolved::Resolved(Box::new(after)));
                }
                Written::Stale(_) | Written::Busy { .. } => continue,
                Written::NotFound => return Ok(Resolved::NotFound(id)),
            }
        }
        Err(StoreError::Corrupt(format!(
            "{id} kept changing while it was resolved"
        )))
    }

    /// Expires requests whose time is up, and carries on with approved and
    /// executing ones (after a restart, or when a cloud could not be asked).
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for r in self.requests.requests(true, 500).await? {
            if request::is_overdue(&r, now) {
                self.expire(r, now).await?;
            } else if r.state == State::AwaitingPayment {
                self.close_task(r, now).await?;
            }
        }
        for ran in self.executor.resume().await? {
            if let Some(p) = ran.paused {
                tracing::info!(request = %ran.request.id, paused = ?p, "request not finished yet");
            }
        }
        // Whatever changed here (an expiry, a closed task, a resumed
        // execution), the cards catch up with.
        self.changed();
        Ok(())
    }

    /// Closes a task for a person when the latest poll shows it done.
    async fn close_task(&self, r: Request, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(a) = self.account(&r.account) else {
            return Ok(());
        };
        let Some(s) = self.latest(a).await? else {
            return Ok(());
        };
        if s.taken_at < r.requested_at {
            return Ok(());
        }
        let Some(seen) = request::settled(&r, &s) else {
            return Ok(());
        };
        let receipt = [NewEntry::new(
            now,
            PURSER,
            Event::Receipt,
            Some(r.id),
            serde_json::json!({"summary": &seen, "snapshot_at": s.taken_at.to_rfc3339()}),
        )];
        let step = Step {
            audit: &receipt,
            ..Step::new(State::AwaitingPayment, State::Verified, PURSER, now)
        };
        self.requests.transition(r.id, step).await?;
        Ok(())
    }

    async fn expire(&self, r: Request, now: DateTime<Utc>) -> Result<Request, StoreError> {
        let step = Step::new(State::Requested, State::Expired, PURSER, now);
        Ok(match self.requests.transition(r.id, step).await? {
            Written::Done(after) | Written::Stale(after) => after,
            Written::NotFound | Written::Busy { .. } => r,
        })
    }
}

/// A request as lines for chat: what, cost and balance after, what it
/// still needs, who asked, and who decided.
pub fn card(r: &Request) -> Vec<String> {
    let mut lines = vec![format!("{} on {}", r.action.describe(), r.account)];
    if let Action::Pay { offered, .. } = &r.action {
        lines.extend(offered.iter().cloned());
    }
    let mut money = Vec::new();
    if let Some(c) = r.cost.filter(|_| !r.action.costs_nothing()) {
        money.push(format!("cost {c}"));
    } else if !r.action.costs_nothing() {
        money.push("cost not known".to_owned());
    }
    if let (Some(b), Some(after)) = (r.balance, r.balance_after()) {
        if b != after {
            money.push(format!("balance {b} → {after} after"));
        } else {
            money.push(format!("balance {b}"));
        }
    }
    if !money.is_empty() {
        lines.push(money.join(" · "));
    }
    let asked = match &r.reason {
        Some(why) => format!("asked by {}: {why}", r.requested_by),
        None => format!("asked by {}", r.requested_by),
    };
    lines.push(asked);
    for d in &r.decisions {
        lines.push(format!(
            "{} by {} ({}) at {} on {}{}",
            match d.verdict {
                Verdict::Approve => "approved",
                Verdict::Deny => "denied",
            },
            d.by,
            d.role,
            d.at.format("%Y-%m-%d %H:%M UTC"),
            d.via.platform,
            d.comment
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ));
    }
    let status = match r.state {
        State::Requested => format!(
            "waiting for {} (not {}'s) · expires {}",
            r.missing().unwrap_or_else(|| "a decision".into()),
            r.requested_by,
            r.expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
        State::AwaitingPayment => match &r.action {
            Action::Topup { .. } => format!(
                "approved · waiting for the payment: quote reference {} · purser closes it when the money arrives",
                r.key
            ),
            Action::Allocate { .. } => "approved · waiting for the allocation in the console · purser closes it when a reading (or an entry) shows the money moved".into(),
            Action::Pay { .. } => "approved · to be paid by hand · purser closes it when the order leaves the unpaid list".into(),
            Action::Renew { .. } => "approved · to be renewed by hand · purser closes it when the new expiry shows".into(),
            Action::Autorenew { .. } => "approved · to be set by hand · purser closes it when the cloud shows the change".into(),
        },
        s => s.to_string(),
    };
    lines.push(status);
    lines
}
