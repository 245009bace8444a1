//! Requests to move money or change what the cloud will charge: top-ups,
//! renewals, order payments, auto-renew changes and allocations to a
//! contract. Who may decide them, how many must agree, and the states a
//! request passes through on its way to being done exactly once.
//!
//! Everything here is a decision over values; the engine stores the results
//! and makes the calls.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::command::Role;
use super::model::{AccountId, ExternalId};
use super::money::Money;
use super::people::Person;

/// A request's number, shown as `R12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl RequestId {
    /// `R12`, `r12`, `#12` or `12`.
    pub fn parse(text: &str) -> Result<RequestId, String> {
        let t = text.trim();
        let digits = t
            .strip_prefix(['R', 'r', '#'])
            .unwrap_or(t)
            .trim_start_matches('#');
        digits
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(RequestId)
            .ok_or_else(|| format!("{text:?} is not a request id; ids look like R12"))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{}", self.0)
    }
}

/// How a person pays money into a cloud account. No cloud takes a top-up by
/// API: each of these is done by a person, and purser watches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Alipay,
    Unionpay,
    Wechat,
    OnlineBanking,
    /// A bank (wire) transfer: the slowest, confirmed days later.
    Wire,
    CreditCard,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 6] = [
        PaymentMethod::Alipay,
        PaymentMethod::Unionpay,
        PaymentMethod::Wechat,
        PaymentMethod::OnlineBanking,
        PaymentMethod::Wire,
        PaymentMethod::CreditCard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Alipay => "alipay",
            PaymentMethod::Unionpay => "unionpay",
            PaymentMethod::Wechat => "wechat",
            PaymentMethod::OnlineBanking => "online_banking",
            PaymentMethod::Wire => "wire",
            PaymentMethod::CreditCard => "credit_card",
        }
    }

    /// Names as people write them: `wire`, `bank_transfer`, `WeChat Pay`.
    pub fn parse(text: &str) -> Option<PaymentMethod> {
        let t: String = text
            .trim()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == '-' || c == ' ' { '_' } else { c })
            .collect();
        let t = match t.as_str() {
            "wire_transfer" | "bank_transfer" | "bank" | "transfer" => "wire",
            "union_pay" | "unionpay_online" => "unionpay",
            "wechat_pay" | "wechatpay" | "weixin" => "wechat",
            "ebank" | "netbank" => "online_banking",
            "card" => "credit_card",
            other => other,
        };
        PaymentMethod::ALL.into_iter().find(|m| m.as_str() == t)
    }

    pub fn label(self) -> &'static str {
        match self {
            PaymentMethod::Alipay => "Alipay",
            PaymentMethod::Unionpay => "UnionPay online payment",
            PaymentMethod::Wechat => "WeChat Pay",
            PaymentMethod::OnlineBanking => "online banking",
            PaymentMethod::Wire => "wire transfer",
            PaymentMethod::CreditCard => "credit card",
        }
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of request, for roles and caps in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Topup,
    Renew,
    Pay,
    Autorenew,
    Allocate,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] = [
        ActionKind::Topup,
        ActionKind::Renew,
        ActionKind::Pay,
        ActionKind::Autorenew,
        ActionKind::Allocate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Topup => "topup",
            ActionKind::Renew => "renew",
            ActionKind::Pay => "pay",
            ActionKind::Autorenew => "autorenew",
            ActionKind::Allocate => "allocate",
        }
    }

    pub fn parse(text: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind in a sentence: "a renewal".
    pub fn noun(self) -> &'static str {
        match self {
            ActionKind::Topup => "a top-up",
            ActionKind::Renew => "a renewal",
            ActionKind::Pay => "an order payment",
            ActionKind::Autorenew => "an auto-renew change",
            ActionKind::Allocate => "an allocation",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request asks for, on its account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Money paid in by a person; purser tracks it until it arrives.
    Topup {
        amount: Money,
        method: PaymentMethod,
    },
    /// Renew these resources for `months` from the balance.
    Renew {
        resources: Vec<ExternalId>,
        months: u32,
    },
    /// Pay these unpaid orders from the balance (several: one combined payment).
    Pay {
        orders: Vec<ExternalId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        coupons: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discount: Option<String>,
        /// What the cloud said of each coupon and discount used, when the
        /// request was made: shown on its card.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        offered: Vec<String>,
    },
    /// Turn a resource's auto-renewal on or off.
    Autorenew { resource: ExternalId, on: bool },
    /// Assign paid-in money to a service contract, without which it keeps
    /// nothing running.
    Allocate {
        amount: Money,
        contract: String,
        /// The contract's and the unallocated money as last read when it
        /// was asked: the next reading that shows the money moved closes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        had: Option<Holdings>,
    },
}

/// A contract's money and the unallocated money, at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    pub contract: Money,
    pub unallocated: Option<Money>,
}

impl Holdings {
    /// What `snapshot` shows of `contract` and the unallocated money.
    pub fn read(s: &super::model::Snapshot, contract: &str) -> Option<Holdings> {
        use super::model::BucketKind;
        let b = &s.balance.buckets;
        let contract = b
            .iter()
            .find(|x| x.kind == BucketKind::Contract && x.name == contract)?
            .amount;
        let unallocated = b
            .iter()
            .find(|x| x.kind == BucketKind::Unallocated)
            .map(|x| x.amount);
        Some(Holdings {
            contract,
            unallocated,
        })
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Topup { .. } => ActionKind::Topup,
            Action::Renew { .. } => ActionKind::Renew,
            Action::Pay { .. } => ActionKind::Pay,
            Action::Autorenew { .. } => ActionKind::Autorenew,
            Action::Allocate { .. } => ActionKind::Allocate,
        }
    }

    /// The amount the request itself names (a top-up's or an allocation's);
    /// renewals and payments are priced by the cloud.
    pub fn stated_amount(&self) -> Option<Money> {
        match self {
            Action::Topup { amount, .. } | Action::Allocate { amount, .. } => Some(*amount),
            _ => None,
        }
    }

    /// Whether it changes nothing the cloud charges: turning auto-renew on or
    /// off costs nothing now.
    pub fn costs_nothing(&self) -> bool {
        matches!(self, Action::Autorenew { .. })
    }

    /// The cloud's things it changes: resources renewed or switched, orders
    /// paid. Money moved by a person changes none.
    pub fn touches(&self) -> Vec<&ExternalId> {
        match self {
            Action::Renew { resources, .. } => resources.iter().collect(),
            Action::Pay { orders, .. } => orders.iter().collect(),
            Action::Autorenew { resource, .. } => vec![resource],
            Action::Topup { .. } | Action::Allocate { .. } => Vec::new(),
        }
    }

    /// The first thing both change, if any. Two requests that change the
    /// same thing are carried out one after the other, so that what the
    /// cloud shows after a lost answer belongs to one of them only.
    pub fn shares_with<'a>(&'a self, other: &Action) -> Option<&'a ExternalId> {
        let theirs = other.touches();
        self.touches().into_iter().find(|id| theirs.contains(id))
    }

    /// What will happen, in a line: `renew ins-a, ins-b for 1 month`.
    pub fn describe(&self) -> String {
        match self {
            Action::Topup { amount, method } => {
                format!("top up {amount} by {}", method.label())
            }
            Action::Renew { resources, months } => format!(
                "renew {} for {}",
                join(resources),
                match months {
                    1 => "1 month".to_owned(),
                    m if m % 12 == 0 && *m >= 12 => match m / 12 {
                        1 => "1 year".to_owned(),
                        y => format!("{y} years"),
                    },
                    m => format!("{m} months"),
                }
            ),
            Action::Pay {
                orders,
                coupons,
                discount,
                ..
            } => {
                let mut s = format!(
                    "pay {} {}",
                    if orders.len() == 1 { "order" } else { "orders" },
                    join(orders)
                );
                if orders.len() > 1 {
                    s.push_str(" together");
                }
                if !coupons.is_empty() {
                    s.push_str(&format!(" with coupon {}", coupons.join(", ")));
                }
                if let Some(d) = discount {
                    s.push_str(&format!(" with discount {d}"));
                }
                s
            }
            Action::Autorenew { resource, on } => format!(
                "turn auto-renewal {} for {resource}",
                if *on { "on" } else { "off" }
            ),
            Action::Allocate {
                amount, contract, ..
            } => {
                format!("allocate {amount} to contract {contract}")
            }
        }
    }
}

fn join(ids: &[ExternalId]) -> String {
    ids.iter()
        .map(ExternalId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a request stands. The arrows a request may follow are
/// [`State::may_become`]'s; terminal states go nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Requested,
    Approved,
    Denied,
    /// Nobody decided in time.
    Expired,
    Cancelled,
    /// A call to the cloud is being made, or was made and its outcome is
    /// being established. Never re-entered: a request executes once.
    Executing,
    Succeeded,
    Failed,
    /// A person must pay (or do in a console what no API does); purser
    /// watches for the result.
    AwaitingPayment,
    /// The result was seen on the account.
    Verified,
    /// A call's answer was lost and what the cloud shows cannot be tied to
    /// this request (or shows something else moved): purser will not guess,
    /// and waits for a person to look and say whether it was done.
    Unclear,
}

impl State {
    pub const ALL: [State; 11] = [
        State::Requested,
        State::Approved,
        State::Denied,
        State::Expired,
        State::Cancelled,
        State::Executing,
        State::Succeeded,
        State::Failed,
        State::AwaitingPayment,
        State::Verified,
        State::Unclear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Executing => "executing",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::AwaitingPayment => "awaiting_payment",
            State::Verified => "verified",
            State::Unclear => "unclear",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state machine's arrows.
    pub fn may_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Requested, Approved | Denied | Expired | Cancelled)
                | (Approved, Executing | AwaitingPayment | Cancelled)
                | (Executing, Succeeded | Failed | Unclear)
                | (Unclear, Succeeded | Failed)
                | (AwaitingPayment, Verified | Cancelled)
                | (Succeeded, Verified)
        )
    }

    /// Nothing more will happen to it.
    pub fn is_final(self) -> bool {
        State::ALL.into_iter().all(|to| !self.may_become(to))
    }

    /// Money it names counts against the caps: asked for and not (yet)
    /// refused, cancelled or failed.
    pub fn counts_against_caps(self) -> bool {
        !matches!(
            self,
            State::Denied | State::Expired | State::Cancelled | State::Failed
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// How many must agree before a request of a given size goes ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Applies to amounts above this (in the account's currency).
    #[serde(with = "rust_decimal::serde::str")]
    pub above: Decimal,
    /// Distinct approvers, none of them the requester.
    pub approvers: u8,
    /// An admin must be among them.
    pub admin: bool,
    /// Each approval must carry a current second-factor code.
    pub second_factor: bool,
}

/// Approval tiers, sorted by threshold: the base tier starts at zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    base: Tier,
    higher: Vec<Tier>,
}

impl Tiers {
    /// Sorts `tiers` and checks them: at least one, approvers ≥ 1, thresholds
    /// distinct and not negative, stricter as amounts grow.
    pub fn new(mut tiers: Vec<Tier>) -> Result<Tiers, String> {
        tiers.sort_by_key(|t| t.above);
        let Some(first) = tiers.first() else {
            return Err("give at least one approval tier".into());
        };
        if !first.above.is_zero() {
            return Err(format!(
                "the first approval tier must start at 0 (amounts up to {} need a tier too)",
                first.above
            ));
        }
        for t in &tiers {
            if t.approvers == 0 {
                return Err(format!(
                    "the tier above {} needs at least one approver: purser never approves for people",
                    t.above
                ));
            }
        }
        for pair in tiers.windows(2) {
            let (lo, hi) = (&pair[0], &pair[1]);
            if lo.above == hi.above {
                return Err(format!("two approval tiers start above {}", hi.above));
            }
            if hi.approvers < lo.approvers
                || (lo.admin && !hi.admin)
                || (lo.second_factor && !hi.second_factor)
            {
                return Err(format!(
                    "the tier above {} asks less than the tier above {}; larger amounts must need at least as much",
                    hi.above, lo.above
                ));
            }
        }
        let base = tiers.remove(0);
        Ok(Tiers {
            base,
            higher: tiers,
        })
    }

    /// The defaults: up to ¥5,000 one approver; above, two; above ¥50,000
    /// an admin among them and a second factor.
    pub fn defaults() -> Tiers {
        Tiers {
            base: Tier {
                above: Decimal::ZERO,
                approvers: 1,
                admin: false,
                second_factor: false,
            },
            higher: vec![
                Tier {
                    above: Decimal::from(5_000),
                    approvers: 2,
                    admin: false,
                    second_factor: false,
                },
                Tier {
                    above: Decimal::from(50_000),
                    approvers: 2,
                    admin: true,
                    second_factor: true,
                },
            ],
        }
    }

    /// Lowest first.
    pub fn list(&self) -> impl Iterator<Item = &Tier> {
        std::iter::once(&self.base).chain(&self.higher)
    }

    /// The tier an amount falls in. An amount nobody could tell (a renewal
    /// the cloud would not price) gets the strictest.
    pub fn for_amount(&self, amount: Option<&Money>) -> &Tier {
        let above = |t: &&Tier| amount.is_none_or(|m| m.amount() > t.above);
        self.higher.iter().rev().find(above).unwrap_or(&self.base)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

/// Where a decision was made: the platform, and the message whose button was
/// pressed (or the command's channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Via {
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One person's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub role: String,
    pub verdict: Verdict,
    pub at: DateTime<Utc>,
    pub via: Via,
    /// A second-factor code was checked for this decision.
    pub second_factor: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub account: AccountId,
    pub action: Action,
    pub reason: Option<String>,
    /// What it will cost or move, when known.
    pub cost: Option<Money>,
    /// The available balance when it was asked, for "balance after".
    pub balance: Option<Money>,
    /// The tier it fell in when asked (a later config change does not move it).
    pub tier: Tier,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: State,
    pub decisions: Vec<Decision>,
    /// Sent with every call to the cloud that takes one; stored with the
    /// request, before any call ([`idempotency_key`]).
    pub key: String,
    /// Where it was asked.
    pub origin: Option<Via>,
    /// Changes each time the stored request does: a write names the version
    /// it read, so that of two racing writers one wins and the other re-reads.
    #[serde(skip)]
    pub version: u64,
}

/// The key sent as the cloud's idempotency token (at most 64 ASCII
/// characters): unique per request, and per database, since the account,
/// the moment and the person are in it too.
pub fn idempotency_key(
    id: RequestId,
    account: &AccountId,
    requested_at: DateTime<Utc>,
    requested_by: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        account.as_str(),
        &requested_at.timestamp_millis().to_string(),
        requested_by,
        &id.0.to_string(),
    ] {
        h.update(part.len().to_string().as_bytes());
        h.update(b":");
        h.update(part.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    format!("purser-r{}-{}", id.0, &digest[..16])
}

impl Request {
    /// The balance once it is done, where that can be told.
    pub fn balance_after(&self) -> Option<Money> {
        let (balance, cost) = (self.balance?, self.cost?);
        match self.action {
            Action::Topup { .. } => balance.checked_add(&cost).ok(),
            // An allocation moves money already on the account.
            Action::Allocate { .. } | Action::Autorenew { .. } => Some(balance),
            Action::Renew { .. } | Action::Pay { .. } => balance.checked_sub(&cost).ok(),
        }
    }

    pub fn approvals(&self) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
    }

    /// What is still missing before it is approved, as a phrase; `None` when
    /// nothing is.
    pub fn missing(&self) -> Option<String> {
        let have = self.approvals().count();
        let need = usize::from(self.tier.approvers);
        let admin = self
            .approvals()
            .any(|d| Role::parse(&d.role) == Some(Role::Admin));
        let more = need.saturating_sub(have);
        match (more, self.tier.admin && !admin) {
            (0, false) => None,
            (0, true) => Some("an admin's approval".into()),
            (n, needs_admin) => Some(format!(
                "{n} more {}{}",
                if n == 1 { "approval" } else { "approvals" },
                if needs_admin {
                    ", one of them an admin's"
                } else {
                    ""
                }
            )),
        }
    }
}

/// The second factor, as the engine found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    NotGiven,
    Valid,
    Invalid,
    /// The person has no second factor set up.
    NotEnrolled,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Counted; more are needed (the phrase says what).
    Counted {
        missing: String,
    },
    /// This decision completed the approval.
    Approved,
    Denied,
    /// This person had already decided the same way: nothing changes.
    AlreadyDecided(Decision),
}

/// Why a decision was not taken. Each reads as a sentence to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDecided {
    #[error("{0} is {1}; there is nothing left to decide")]
    Closed(RequestId, State),
    #[error("{id} expired at {at}; ask again if it is still needed", at = .at.format("%Y-%m-%d %H:%M UTC"))]
    Expired { id: RequestId, at: DateTime<Utc> },
    #[error("deciding requests needs the approver role; you are {0}")]
    Role(Role),
    #[error(
        "you asked for {0}; someone else must approve it (cancel it if it is no longer wanted)"
    )]
    OwnRequest(RequestId),
    #[error("you already {prior} {id}; a decision cannot be changed (an approver may still deny it)", prior = if *.0 == Verdict::Approve { "approved" } else { "denied" }, id = .1)]
    ChangedMind(Verdict, RequestId),
    #[error(
        "{0} is above the second-factor threshold: approve it with your authenticator code, e.g. `approve {0} 123456`"
    )]
    SecondFactorNeeded(RequestId),
    #[error("that second-factor code is wrong or no longer current; nothing was recorded")]
    SecondFactorWrong,
    #[error(
        "{0} needs a second factor and you have none set up; ask an admin to add a totp secret to your entry in people"
    )]
    SecondFactorMissing(RequestId),
}

/// Judges `person`'s `verdict` on `request` at `now`. Pure: the caller stores
/// the decision (and the new state, when there is one) only if this says so,
/// guarded by the state it read.
pub fn decide(
    request: &Request,
    person: &Person,
    verdict: Verdict,
    via: Via,
    second_factor: SecondFactor,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Judged, Decision), NotDecided> {
    if now >= request.expires_at && matches!(request.state, State::Requested | State::Expired) {
        return Err(NotDecided::Expired {
            id: request.id,
            at: request.expires_at,
        });
    }
    if request.state != State::Requested {
        return Err(NotDecided::Closed(request.id, request.state));
    }
    if person.role < Role::Approver {
        return Err(NotDecided::Role(person.role));
    }
    if person.name == request.requested_by {
        return Err(NotDecided::OwnRequest(request.id));
    }
    if let Some(prior) = request.decisions.iter().find(|d| d.by == person.name) {
        return if prior.verdict == verdict {
            Ok((Judged::AlreadyDecided(prior.clone()), prior.clone()))
        } else {
            Err(NotDecided::ChangedMind(prior.verdict, request.id))
        };
    }
    // A denial needs no second factor: saying no can only stop money moving.
    let checked = match (verdict, request.tier.second_factor, second_factor) {
        (Verdict::Deny, _, _) | (_, false, _) => second_factor == SecondFactor::Valid,
        (_, true, SecondFactor::Valid) => true,
        (_, true, SecondFactor::NotGiven) => {
            return Err(NotDecided::SecondFactorNeeded(request.id));
        }
        (_, true, SecondFactor::Invalid) => return Err(NotDecided::SecondFactorWrong),
        (_, true, SecondFactor::NotEnrolled) => {
            return Err(NotDecided::SecondFactorMissing(request.id));
        }
    };
    let decision = Decision {
        by: person.name.clone(),
        role: person.role.as_str().to_owned(),
        verdict,
        at: now,
        via,
        second_factor: checked,
        comment,
    };
    if verdict == Verdict::Deny {
        return Ok((Judged::Denied, decision));
    }
    let mut after = request.clone();
    after.decisions.push(decision.clone());
    let judged = match after.missing() {
        None => Judged::Approved,
        Some(missing) => Judged::Counted { missing },
    };
    Ok((judged, decision))
}

/// Why a request cannot be cancelled by this person now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCancelled {
    #[error("only {owner} (who asked) or an approver may cancel {id}")]
    NotYours { id: RequestId, owner: String },
    #[error("{0} is {1} and can no longer be cancelled")]
    TooLate(RequestId, State),
}

/// Whether `person` may cancel `request` now: the requester or an approver,
/// before anything was sent to the cloud (or while a payment is awaited).
pub fn may_cancel(request: &Request, person: &Person) -> Result<(), NotCancelled> {
    if person.name != request.requested_by && person.role < Role::Approver {
        return Err(NotCancelled::NotYours {
            id: request.id,
            owner: request.requested_by.clone(),
        });
    }
    if !request.state.may_become(State::Cancelled) {
        return Err(NotCancelled::TooLate(request.id, request.state));
    }
    Ok(())
}

/// Why a person cannot say how an unclear request ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotResolved {
    #[error("only an approver or an admin may say how {0} ended")]
    NotAllowed(RequestId),
    #[error(
        "{0} is {1}: only a request purser could not tie to the cloud's records is resolved by hand"
    )]
    NotUnclear(RequestId, State),
}

/// Whether `person` may say how `request`, left unclear, ended: an approver
/// or an admin, who looked at the cloud's console.
pub fn may_resolve(request: &Request, person: &Person) -> Result<(), NotResolved> {
    if person.role < Role::Approver {
        return Err(NotResolved::NotAllowed(request.id));
    }
    if request.state != State::Unclear {
        return Err(NotResolved::NotUnclear(request.id, request.state));
    }
    Ok(())
}

/// How long a request waits for its approvals by default.
pub fn default_ttl() -> Duration {
    Duration::hours(24)
}

/// Whether a request nobody decided has run out of time at `now`.
/// What a task for a person waits to see, and whether `s` (a poll taken
/// after the request was approved) shows it: money paid in arrives as a
/// recharge of the amount since the request was asked, or as the balance
/// risen by the amount above what it was then; orders paid by hand leave the
/// unpaid list. `None` while it has not happened.
pub fn settled(request: &Request, s: &super::model::Snapshot) -> Option<String> {
    match &request.action {
        Action::Topup { amount, .. } => {
            if let Some(r) = s
                .recharges
                .iter()
                .find(|r| r.at >= request.requested_at && r.amount == *amount)
            {
                return Some(format!(
                    "{amount} arrived at {}",
                    r.at.format("%Y-%m-%d %H:%M UTC")
                ));
            }
            let before = request.balance?;
            let target = before.checked_add(amount).ok()?;
            (s.balance.available.currency() == target.currency()
                && s.balance.available.amount() >= target.amount())
            .then(|| {
                format!(
                    "the balance rose from {before} to {} (by at least {amount})",
                    s.balance.available
                )
            })
        }
        Action::Pay { orders, .. } => orders
            .iter()
            .all(|o| !s.orders.iter().any(|x| &x.id == o))
            .then(|| {
                format!(
                    "{} no longer unpaid",
                    orders
                        .iter()
                        .map(ExternalId::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        Action::Autorenew { resource, on } => {
            let r = s.resources.iter().find(|r| &r.id == resource)?;
            let auto = r.renewal == super::model::RenewalMode::Auto;
            (auto == *on).then(|| {
                format!(
                    "{resource} shows auto-renew {}",
                    if *on { "on" } else { "off" }
                )
            })
        }
        // A renewal by hand shows as each resource running at least the
        // renewed months past the request. (A resource already paid that far
        // ahead reads as renewed: the request was not needed.)
        Action::Renew { resources, months } => {
            let floor = request
                .requested_at
                .checked_add_months(chrono::Months::new(*months))?;
            let lines = resources
                .iter()
                .map(|id| {
                    let r = s.resources.iter().find(|r| &r.id == id)?;
                    (r.expires_at >= floor).then(|| {
                        format!(
                            "{id} now expires {}",
                            r.expires_at.format("%Y-%m-%d %H:%M UTC")
                        )
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(lines.join(", "))
        }
        // The contract rose by the amount, or the unallocated money fell by
        // it (the contract may have been spending meanwhile).
        Action::Allocate {
            amount,
            contract,
            had: Some(had),
        } => {
            let now = Holdings::read(s, contract)?;
            let rose = had.contract.checked_add(amount).ok()?;
            if now.contract.checked_cmp(&rose).ok()?.is_ge() {
                return Some(format!(
                    "contract {contract} rose from {} to {}",
                    had.contract, now.contract
                ));
            }
            let (before, after) = (had.unallocated?, now.unallocated?);
            let fell = before.checked_sub(amount).ok()?;
            after
                .checked_cmp(&fell)
                .ok()?
                .is_le()
                .then(|| format!("the unallocated money fell from {before} to {after}"))
        }
        Action::Allocate { had: None, .. } => None,
    }
}

/// An approved top-up still waiting for its money, with when that money is
/// due by the method's own pace (`None`: not such a request).
pub fn pending_payment(
    request: &Request,
    policy: &super::policy::Policy,
) -> Option<super::rules::PendingPayment> {
    let Action::Topup { amount, method } = &request.action else {
        return None;
    };
    if request.state != State::AwaitingPayment {
        return None;
    }
    let approved_at = request.approvals().map(|d| d.at).max()?;
    let takes = policy
        .topup
        .iter()
        .find(|m| m.method == *method)
        .map(|m| m.settles_within)
        .unwrap_or(chrono::Duration::minutes(30));
    Some(super::rules::PendingPayment {
        request: request.id.to_string(),
        amount: *amount,
        method: method.label().to_owned(),
        reference: request.key.clone(),
        owner: request.requested_by.clone(),
        approved_at,
        due: approved_at + takes,
    })
}

pub fn is_overdue(request: &Request, now: DateTime<Utc>) -> bool {
    request.state == State::Requested && now >= request.expires_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap()
    }

    fn cny(a: i64) -> Money {
        Money::new(Decimal::from(a), Currency::Cny)
    }

    fn person(name: &str, role: Role) -> Person {
        Person {
            name: name.into(),
            role,
        }
    }

    fn via() -> Via {
        Via {
            platform: "chat-a".into(),
            message: Some("C1/100".into()),
        }
    }

    fn request(amount: i64) -> Request {
        let cost = cny(amount);
        Request {
            id: RequestId(7),
            account: AccountId::parse("shop").unwrap(),
            action: Action::Topup {
                amount: cost,
                method: PaymentMethod::Alipay,
            },
            reason: None,
            cost: Some(cost),
            balance: Some(cny(300)),
            tier: Tiers::defaults().for_amount(Some(&cost)).clone(),
            requested_by: "ria".into(),
            requested_at: t(0),
            expires_at: t(24),
            state: State::Requested,
            decisions: Vec::new(),
            key: "k".into(),
            origin: None,
            version: 0,
        }
    }

    fn approve(r: &mut Request, who: &Person, factor: SecondFactor) -> Result<Judged, NotDecided> {
        let (j, d) = decide(r, who, Verdict::Approve, via(), factor, None, t(1))?;
        if !matches!(j, Judged::AlreadyDecided(_)) {
            r.decisions.push(d);
        }
        if j == Judged::Approved {
            r.state = State::Approved;
        }
        Ok(j)
    }

    fn snapshot(
        available: i64,
        recharges: &[(i64, i64)],
        orders: &[&str],
    ) -> super::super::model::Snapshot {
        use super::super::model::{Balance, Order, Recharge, Snapshot};
        Snapshot {
            taken_at: t(2),
            balance: Balance::available_only(cny(available)),
            resources: vec![],
            orders: orders
                .iter()
                .map(|id| Order {
                    id: ExternalId::parse(id).unwrap(),
                    amount: cny(80),
                    created_at: t(-1),
                    pay_deadline: Some(t(100)),
                    description: String::new(),
                })
                .collect(),
            spend: None,
            recharges: recharges
                .iter()
                .map(|(h, a)| Recharge {
                    at: t(*h),
                    amount: cny(*a),
                })
                .collect(),
            tally: None,
        }
    }

    #[test]
    fn a_task_is_settled_by_the_amount_arriving_or_the_balance_rising_by_it() {
        let r = request(1_000);
        // Nothing yet; a recharge of another amount, or one from before the
        // request, is someone else's.
        assert_eq!(settled(&r, &snapshot(300, &[], &[])), None);
        assert_eq!(
            settled(&r, &snapshot(300, &[(1, 999), (-2, 1_000)], &[])),
            None
        );
        assert_eq!(
            settled(&r, &snapshot(1_250, &[(1, 1_000)], &[])).as_deref(),
            Some("¥1,000.00 arrived at 2026-09-21 15:13 UTC")
        );
        // No record, but the balance rose from ¥300 by at least ¥1,000.
        assert_eq!(settled(&r, &snapshot(1_299, &[], &[])), None);
        assert_eq!(
            settled(&r, &snapshot(1_300, &[], &[])).as_deref(),
            Some("the balance rose from ¥300.00 to ¥1,300.00 (by at least ¥1,000.00)")
        );

        let pay = Request {
            action: Action::Pay {
                orders: vec![
                    ExternalId::parse("O1").unwrap(),
                    ExternalId::parse("O2").unwrap(),
                ],
                coupons: vec![],
                discount: None,
                offered: vec![],
            },
            ..request(160)
        };
        assert_eq!(settled(&pay, &snapshot(0, &[], &["O2"])), None);
        assert_eq!(
            settled(&pay, &snapshot(0, &[], &["O3"])).as_deref(),
            Some("O1, O2 no longer unpaid")
        );
    }

    #[test]
    fn renewals_and_auto_renew_changes_by_hand_are_settled_by_what_the_cloud_shows() {
        use super::super::model::{RenewalMode, Resource, ResourceStatus};
        let resource = |expires_in_days: i64, renewal| Resource {
            id: ExternalId::parse("ins-a").unwrap(),
            product: "cvm".into(),
            region: None,
            name: None,
            expires_at: t(0) + chrono::Duration::days(expires_in_days),
            renewal,
            status: ResourceStatus::Active,
            renewal_price: None,
            renewal_months: None,
            unpriced: None,
        };
        let with = |r: Resource| super::super::model::Snapshot {
            resources: vec![r],
            ..snapshot(0, &[], &[])
        };
        let renew = Request {
            action: Action::Renew {
                resources: vec![ExternalId::parse("ins-a").unwrap()],
                months: 1,
            },
            ..request(600)
        };
        assert_eq!(
            settled(&renew, &with(resource(5, RenewalMode::Manual))),
            None
        );
        assert_eq!(
            settled(&renew, &with(resource(35, RenewalMode::Manual))).as_deref(),
            Some("ins-a now expires 2026-10-26 14:13 UTC")
        );
        assert_eq!(settled(&renew, &snapshot(0, &[], &[])), None, "not listed");

        let on = Request {
            action: Action::Autorenew {
                resource: ExternalId::parse("ins-a").unwrap(),
                on: true,
            },
            ..request(0)
        };
        assert_eq!(settled(&on, &with(resource(5, RenewalMode::Manual))), None);
        assert_eq!(
            settled(&on, &with(resource(5, RenewalMode::Auto))).as_deref(),
            Some("ins-a shows auto-renew on")
        );
    }

    #[test]
    fn idempotency_keys_are_short_ascii_and_differ_per_request() {
        let shop = AccountId::parse("shop").unwrap();
        let a = idempotency_key(RequestId(12), &shop, t(0), "ria");
        assert!(
            a.starts_with("purser-r12-") && a.len() <= 64 && a.is_ascii(),
            "{a}"
        );
        assert_ne!(a, idempotency_key(RequestId(12), &shop, t(1), "ria"));
        assert_ne!(a, idempotency_key(RequestId(13), &shop, t(0), "ria"));
        assert_eq!(a, idempotency_key(RequestId(12), &shop, t(0), "ria"));
    }

    #[test]
    fn request_ids_read_as_people_write_them() {
        for s in ["R12", "r12", "#12", "12", " R12 "] {
            assert_eq!(RequestId::parse(s), Ok(RequestId(12)), "{s}");
        }
        assert!(RequestId::parse("R0").is_err());
        assert!(RequestId::parse("Rx").is_err());
        assert_eq!(RequestId(3).to_string(), "R3");
    }

    #[test]
    fn payment_methods_accept_common_spellings() {
        assert_eq!(
            PaymentMethod::parse("bank transfer"),
            Some(PaymentMethod::Wire)
        );
        assert_eq!(
            PaymentMethod::parse("WeChat-Pay"),
            Some(PaymentMethod::Wechat)
        );
        assert_eq!(PaymentMethod::parse("paypal"), None);
        for m in PaymentMethod::ALL {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn tiers_pick_by_amount_and_unknown_amounts_get_the_strictest() {
        let tiers = Tiers::defaults();
        assert_eq!(tiers.for_amount(Some(&cny(5_000))).approvers, 1);
        assert_eq!(tiers.for_amount(Some(&cny(5_001))).approvers, 2);
        assert!(!tiers.for_amount(Some(&cny(50_000))).admin);
        assert!(tiers.for_amount(Some(&cny(50_001))).second_factor);
        assert!(tiers.for_amount(None).second_factor);
    }

    #[test]
    fn tiers_are_checked() {
        let tier = |above: i64, approvers: u8, admin: bool| Tier {
            above: Decimal::from(above),
            approvers,
            admin,
            second_factor: false,
        };
        assert!(Tiers::new(vec![]).is_err());
        assert!(
            Tiers::new(vec![tier(100, 1, false)])
                .unwrap_err()
                .contains("must start at 0")
        );
        assert!(
            Tiers::new(vec![tier(0, 0, false)])
                .unwrap_err()
                .contains("at least one approver")
        );
        assert!(
            Tiers::new(vec![tier(0, 2, false), tier(10, 1, false)])
                .unwrap_err()
                .contains("asks less")
        );
        assert!(
            Tiers::new(vec![tier(0, 1, true), tier(10, 1, false)])
                .unwrap_err()
                .contains("asks less")
        );
        let sorted = Tiers::new(vec![tier(10, 2, false), tier(0, 1, false)]).unwrap();
        assert_eq!(sorted.list().next().map(|t| t.above), Some(Decimal::ZERO));
    }

    #[test]
    fn one_approver_suffices_in_the_first_tier() {
        let mut r = request(1_000);
        assert_eq!(
            approve(
                &mut r,
                &person("ana", Role::Approver),
                SecondFactor::NotGiven
            ),
            Ok(Judged::Approved)
        );
        assert_eq!(r.state, State::Approved);
    }

    #[test]
    fn the_requester_never_approves_their_own_request() {
        let mut r = request(1_000);
        let ria = person("ria", Role::Admin);
        assert_eq!(
            approve(&mut r, &ria, SecondFactor::NotGiven),
            Err(NotDecided::OwnRequest(RequestId(7)))
        );
        assert!(r.decisions.is_empty());
    }

    #[test]
    fn two_clicks_by_one_person_count_once() {
        let mut r = request(6_000);
        let ana = person("ana", Role::Approver);
        assert_eq!(
            approve(&mut r, &ana, SecondFactor::NotGiven),
            Ok(Judged::Counted {
                missing: "1 more approval".into()
            })
        );
        assert!(matches!(
            approve(&mut r, &ana, SecondFactor::NotGiven),
            Ok(Judged::AlreadyDecided(_))
        ));
        assert_eq!(r.decisions.len(), 1);
        assert_eq!(r.state, State::Requested);
        assert_eq!(
            approve(
                &mut r,
                &person("bo", Role::Approver),
                SecondFactor::NotGiven
            ),
            Ok(Judged::Approved)
        );
    }

    #[test]
    fn the_top_tier_needs_an_admin_and_a_second_factor() {
        let mut r = request(60_000);
        let ana = person("ana", Role::Approver);
        let bo = person("bo", Role::Approver);
        let ada = person("ada", Role::Admin);
        assert_eq!(
            approve(&mut r, &ana, SecondFactor::NotGiven),
            Err(NotDecided::SecondFactorNeeded(RequestId(7)))
        );
        assert_eq!(
            approve(&mut r, &ana, SecondFactor::Invalid),
            Err(NotDecided::SecondFactorWrong)
        );
        assert_eq!(
            approve(&mut r, &ana, SecondFactor::NotEnrolled),
            Err(NotDecided::SecondFactorMissing(RequestId(7)))
        );
        assert!(
            r.decisions.is_empty(),
            "nothing recorded without the factor"
        );
        assert_eq!(
            approve(&mut r, &ana, SecondFactor::Valid),
            Ok(Judged::Counted {
                missing: "1 more approval, one of them an admin's".into()
            })
        );
        assert_eq!(
            approve(&mut r, &bo, SecondFactor::Valid),
            Ok(Judged::Counted {
                missing: "an admin's approval".into()
            }),
            "two approvers are not enough without an admin"
        );
        assert_eq!(
            approve(&mut r, &ada, SecondFactor::Valid),
            Ok(Judged::Approved)
        );
        assert!(r.approvals().all(|d| d.second_factor));
    }

    #[test]
    fn viewers_and_requesters_cannot_decide() {
        let r = request(100);
        for role in [Role::Viewer, Role::Requester] {
            assert_eq!(
                decide(
                    &r,
                    &person("x", role),
                    Verdict::Approve,
                    via(),
                    SecondFactor::NotGiven,
                    None,
                    t(1)
                )
                .map(|(j, _)| j),
                Err(NotDecided::Role(role))
            );
        }
    }

    #[test]
    fn one_denial_denies_and_a_mind_is_not_changed() {
        let mut r = request(6_000);
        let ana = person("ana", Role::Approver);
        approve(&mut r, &ana, SecondFactor::NotGiven).unwrap();
        let bo = person("bo", Role::Approver);
        let (j, _) = decide(
            &r,
            &bo,
            Verdict::Deny,
            via(),
            SecondFactor::NotGiven,
            Some("not this month".into()),
            t(2),
        )
        .unwrap();
        assert_eq!(j, Judged::Denied);
        assert_eq!(
            decide(
                &r,
                &ana,
                Verdict::Deny,
                via(),
                SecondFactor::NotGiven,
                None,
                t(2)
            )
            .map(|(j, _)| j),
            Err(NotDecided::ChangedMind(Verdict::Approve, RequestId(7)))
        );
    }

    #[test]
    fn an_expired_or_closed_request_takes_no_decision() {
        let mut r = request(100);
        let ana = person("ana", Role::Approver);
        let late = decide(
            &r,
            &ana,
            Verdict::Approve,
            via(),
            SecondFactor::NotGiven,
            None,
            t(24),
        );
        assert!(matches!(late, Err(NotDecided::Expired { .. })));
        assert!(is_overdue(&r, t(24)) && !is_overdue(&r, t(23)));
        r.state = State::Cancelled;
        let closed = decide(
            &r,
            &ana,
            Verdict::Approve,
            via(),
            SecondFactor::NotGiven,
            None,
            t(1),
        );
        assert_eq!(
            closed.map(|(j, _)| j),
            Err(NotDecided::Closed(RequestId(7), State::Cancelled))
        );
        assert!(!is_overdue(&r, t(30)));
    }

    #[test]
    fn the_state_machine_has_only_its_arrows() {
        use State::*;
        assert!(Requested.may_become(Approved));
        assert!(Approved.may_become(Executing));
        assert!(Approved.may_become(AwaitingPayment));
        assert!(Executing.may_become(Succeeded));
        assert!(Succeeded.may_become(Verified));
        assert!(AwaitingPayment.may_become(Verified));
        assert!(!Executing.may_become(Executing), "executes once");
        assert!(!Executing.may_become(Cancelled), "too late once called");
        assert!(!Failed.may_become(Executing), "a failure is not retried");
        assert!(!Requested.may_become(Executing), "never without approval");
        assert!(Executing.may_become(Unclear));
        assert!(Unclear.may_become(Succeeded) && Unclear.may_become(Failed));
        assert!(
            !Unclear.may_become(Executing),
            "a person settles it, never a retry"
        );
        assert!(!Unclear.is_final());
        for s in [Denied, Expired, Cancelled, Failed, Verified] {
            assert!(s.is_final(), "{s}");
        }
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn who_may_cancel_and_when() {
        let mut r = request(100);
        let bo = person("bo", Role::Requester);
        assert!(matches!(
            may_cancel(&r, &bo),
            Err(NotCancelled::NotYours { .. })
        ));
        assert_eq!(may_cancel(&r, &person("ria", Role::Requester)), Ok(()));
        assert_eq!(may_cancel(&r, &person("ana", Role::Approver)), Ok(()));
        r.state = State::Executing;
        assert_eq!(
            may_cancel(&r, &person("ria", Role::Requester)),
            Err(NotCancelled::TooLate(RequestId(7), State::Executing))
        );
    }

    #[test]
    fn requests_changing_the_same_thing_share_it() {
        let id = |s: &str| ExternalId::parse(s).unwrap();
        let renew = Action::Renew {
            resources: vec![id("ins-a"), id("ins-b")],
            months: 1,
        };
        let flag = Action::Autorenew {
            resource: id("ins-b"),
            on: true,
        };
        let other = Action::Renew {
            resources: vec![id("ins-c")],
            months: 1,
        };
        assert_eq!(renew.shares_with(&flag), Some(&id("ins-b")));
        assert_eq!(renew.shares_with(&other), None);
        let topup = request(100).action;
        assert_eq!(topup.shares_with(&topup), None, "money in changes nothing");
    }

    #[test]
    fn only_an_approver_settles_an_unclear_request() {
        let mut r = request(100);
        r.state = State::Unclear;
        assert_eq!(may_resolve(&r, &person("ana", Role::Approver)), Ok(()));
        assert_eq!(
            may_resolve(&r, &person("ria", Role::Requester)),
            Err(NotResolved::NotAllowed(RequestId(7)))
        );
        r.state = State::Executing;
        assert_eq!(
            may_resolve(&r, &person("ana", Role::Approver)),
            Err(NotResolved::NotUnclear(RequestId(7), State::Executing))
        );
    }

    #[test]
    fn actions_describe_themselves_and_the_balance_after() {
        let r = request(1_000);
        assert_eq!(r.action.describe(), "top up ¥1,000.00 by Alipay");
        assert_eq!(r.balance_after(), Some(cny(1_300)));
        let renew = Action::Renew {
            resources: vec![
                ExternalId::parse("ins-a").unwrap(),
                ExternalId::parse("ins-b").unwrap(),
            ],
            months: 12,
        };
        assert_eq!(renew.describe(), "renew ins-a, ins-b for 1 year");
        let pay = Action::Pay {
            orders: vec![
                ExternalId::parse("o1").unwrap(),
                ExternalId::parse("o2").unwrap(),
            ],
            coupons: vec![],
            discount: None,
            offered: vec![],
        };
        assert_eq!(pay.describe(), "pay orders o1, o2 together");
        let json = serde_json::to_string(&pay).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), pay);
    }
}
