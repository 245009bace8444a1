//! The rules a request must pass before anyone is asked to approve it: what
//! the account's cloud accepts (currency, payment methods and their minimums,
//! renewal periods, coupons, payment windows) and what the team allows (caps,
//! roles). Every value comes from config, where each cloud's documented rules
//! are the defaults; a refusal names the rule it applied and says why.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::command::Role;
use super::model::{BucketKind, ExternalId, RenewalMode, ResourceStatus, Snapshot};
use super::money::{Currency, Money};
use super::people::Person;
use super::request::{Action, ActionKind, PaymentMethod};

/// A payment method the cloud takes for top-ups, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    pub method: PaymentMethod,
    /// The least a single payment may be.
    pub minimum: Decimal,
    /// Payments must be whole multiples of this, when set.
    pub multiple: Option<Decimal>,
    /// How long the money may take to show on the account before purser
    /// calls the payment late: minutes for Alipay, days for a wire.
    pub settles_within: Duration,
}

/// A minimum and an optional step, for allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amounts {
    pub minimum: Decimal,
    pub multiple: Option<Decimal>,
}

/// The team's own limits on money requested, in the account's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub per_request: Option<Decimal>,
    /// Over the 24 hours before a request, on one account.
    pub per_account_day: Option<Decimal>,
    /// Over the 24 hours before a request, by one person, on every account.
    pub per_requester_day: Option<Decimal>,
}

/// One account's policy, resolved from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The only currency the account is paid and charged in.
    pub currency: Currency,
    /// Accepted top-up methods; a method not listed is refused.
    pub topup: Vec<MethodRule>,
    /// `None`: the account has no contracts to allocate to.
    pub allocate: Option<Amounts>,
    /// Renewal periods the cloud accepts, in months.
    pub renew_months: Vec<u32>,
    /// Whether several orders may be paid as one combined payment.
    pub combined_payment: bool,
    pub coupons_per_order: u8,
    /// Discounts of different kinds cannot be combined: usually one.
    pub discounts_per_order: u8,
    /// Refuse renewals and payments the balance cannot cover.
    pub require_funds: bool,
    pub caps: Caps,
    /// The least role that may ask for each kind of request.
    pub roles: BTreeMap<ActionKind, Role>,
}

impl Policy {
    /// The least role for `kind`: requester unless config says otherwise.
    pub fn role_for(&self, kind: ActionKind) -> Role {
        self.roles.get(&kind).copied().unwrap_or(Role::Requester)
    }

    pub fn method(&self, method: PaymentMethod) -> Option<&MethodRule> {
        self.topup.iter().find(|m| m.method == method)
    }
}

/// A coupon or discount the cloud offers on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub id: String,
    pub discount: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// The cloud requires it on the order (a price adjustment).
    pub required: bool,
    /// What it is, as a card shows it: `voucher ¥100.00`.
    pub label: String,
}

/// What the check needs to know besides the request.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub requester: &'a Person,
    pub now: DateTime<Utc>,
    /// The account as last read; `None` when it was never read.
    pub latest: Option<&'a Snapshot>,
    /// What the request will cost or move, when known.
    pub cost: Option<Money>,
    /// Money in requests on this account in the 24 hours before (those not
    /// denied, expired, cancelled or failed).
    pub account_day: Money,
    /// The same, for this requester across every account.
    pub requester_day: Money,
    /// The coupons and discounts the cloud offers on the order being paid;
    /// `None` where the cloud does not list them (it checks them itself
    /// when paying).
    pub offers: Option<&'a [Offer]>,
}

/// Why policy refused a request: the rule (as named in config) and a
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (policy: {})", self.why, self.rule)
    }
}

impl std::error::Error for Refusal {}

fn refuse(rule: &'static str, why: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal {
        rule,
        why: why.into(),
    })
}

/// Checks `action` on the account against `policy`. The first rule broken
/// is the one reported.
pub fn check(policy: &Policy, action: &Action, cx: &Context<'_>) -> Result<(), Refusal> {
    let kind = action.kind();
    let least = policy.role_for(kind);
    if cx.requester.role < least {
        return refuse(
            "roles",
            format!(
                "asking for {} needs the {least} role; you are {}",
                kind.noun(),
                cx.requester.role
            ),
        );
    }
    let currency = policy.currency;
    // A change that costs nothing has no amount to check.
    let cost = cx.cost.filter(|_| !action.costs_nothing());
    for m in action.stated_amount().iter().chain(cost.iter()) {
        if m.currency() != currency {
            return refuse(
                "currency",
                format!(
                    "this account is paid and charged in {currency} only; {m} is in {}",
                    m.currency()
                ),
            );
        }
        if !m.is_positive() {
            return refuse("amount", format!("{m} is not an amount of money to move"));
        }
    }
    match action {
        Action::Topup { amount, method } => topup(policy, amount, *method)?,
        Action::Allocate {
            amount, contract, ..
        } => allocate(policy, cx, amount, contract)?,
        Action::Renew { resources, months } => renew(policy, cx, resources, *months)?,
        Action::Pay {
            orders,
            coupons,
            discount,
            ..
        } => pay(policy, cx, orders, coupons, discount)?,
        Action::Autorenew { resource, on } => autorenew(cx, resource, *on)?,
    }
    caps(policy, action, cx)
}

/// A top-up: a method the account takes, in the amounts it takes.
fn topup(policy: &Policy, amount: &Money, method: PaymentMethod) -> Result<(), Refusal> {
    let Some(rule) = policy.method(method) else {
        let accepted: Vec<&str> = policy.topup.iter().map(|m| m.method.as_str()).collect();
        return refuse(
            "topup.methods",
            if accepted.is_empty() {
                "this account takes no top-ups through purser".to_owned()
            } else {
                format!(
                    "this account does not take {}; it takes {}",
                    method.label(),
                    accepted.join(", ")
                )
            },
        );
    };
    steps(
        amount,
        rule.minimum,
        rule.multiple,
        ("topup.minimum", "topup.multiple"),
        &format!("a top-up by {}", method.label()),
    )?;
    Ok(())
}

/// An allocation: to a contract the account has, from money paid in and
/// not yet allocated.
fn allocate(
    policy: &Policy,
    cx: &Context<'_>,
    amount: &Money,
    contract: &str,
) -> Result<(), Refusal> {
    let currency = policy.currency;
    let Some(rule) = &policy.allocate else {
        return refuse(
            "allocate",
            "this account has no service contracts to allocate money to",
        );
    };
    steps(
        amount,
        rule.minimum,
        rule.multiple,
        ("allocate.minimum", "allocate.multiple"),
        "an allocation",
    )?;
    // What the contract held is what closes the task later.
    let Some(s) = cx.latest else {
        return refuse(
            "allocate.contract",
            "the account has not been read yet, so its contracts are not known; try after the next poll",
        );
    };
    {
        let buckets = &s.balance.buckets;
        if !buckets
            .iter()
            .any(|b| b.kind == BucketKind::Contract && b.name == contract)
        {
            let known: Vec<&str> = buckets
                .iter()
                .filter(|b| b.kind == BucketKind::Contract)
                .map(|b| b.name.as_str())
                .collect();
            return refuse(
                "allocate.contract",
                format!(
                    "the account has no contract {contract:?}{}",
                    if known.is_empty() {
                        "; enter its balance first (setbalance <account> <amount> contract=<number>)".to_owned()
                    } else {
                        format!("; its contracts: {}", known.join(", "))
                    }
                ),
            );
        }
        let free = s.balance.unallocated().unwrap_or(Money::zero(currency));
        if free.amount() < amount.amount() {
            return refuse(
                "allocate.funds",
                format!(
                    "only {free} is paid in and unallocated; top up before allocating {amount}"
                ),
            );
        }
    }
    Ok(())
}

/// A renewal: a period the cloud takes, of resources the account has and
/// that are not released, with the money for it.
fn renew(
    policy: &Policy,
    cx: &Context<'_>,
    resources: &[ExternalId],
    months: u32,
) -> Result<(), Refusal> {
    if !policy.renew_months.contains(&months) {
        let list: Vec<String> = policy.renew_months.iter().map(u32::to_string).collect();
        return refuse(
            "renew.periods",
            format!(
                "{months} months is not a renewal period this cloud takes; it takes {} months",
                list.join(", ")
            ),
        );
    }
    let Some(s) = cx.latest else {
        return refuse(
            "renew.resource",
            "the account has not been read yet, so its resources are not known; try after the next poll",
        );
    };
    for id in resources {
        match s.resources.iter().find(|r| &r.id == id) {
            None => {
                return refuse(
                    "renew.resource",
                    format!("{id} is not a prepaid resource of this account as last read"),
                );
            }
            Some(r) if r.status == ResourceStatus::Released => {
                return refuse(
                    "renew.resource",
                    format!("{id} was released; it can no longer be renewed"),
                );
            }
            Some(_) => {}
        }
    }
    funds(policy, cx)
}

/// A payment: orders awaiting payment and within their window, offers the
/// cloud makes on them, and the money for it.
fn pay(
    policy: &Policy,
    cx: &Context<'_>,
    orders: &[ExternalId],
    coupons: &[String],
    discount: &Option<String>,
) -> Result<(), Refusal> {
    let Some(s) = cx.latest else {
        return refuse(
            "pay.order",
            "the account has not been read yet, so its orders are not known; try after the next poll",
        );
    };
    if orders.len() > 1 && !policy.combined_payment {
        return refuse(
            "pay.combined",
            "this cloud pays orders one at a time; ask for each order separately",
        );
    }
    for id in orders {
        let Some(o) = s.orders.iter().find(|o| &o.id == id) else {
            return refuse(
                "pay.order",
                format!(
                    "order {id} is not awaiting payment as last read (paid, cancelled, or still under review); combined payments need every order reviewed"
                ),
            );
        };
        if let Some(deadline) = o.pay_deadline
            && cx.now >= deadline
        {
            return refuse(
                "pay.window",
                format!(
                    "order {id} could be paid until {}; the cloud has cancelled it or will",
                    deadline.format("%Y-%m-%d %H:%M UTC")
                ),
            );
        }
    }
    if coupons.len() > usize::from(policy.coupons_per_order) {
        return refuse(
            "pay.coupons",
            format!(
                "at most {} coupon(s) per order; {} given",
                policy.coupons_per_order,
                coupons.len()
            ),
        );
    }
    if discount.is_some() && policy.discounts_per_order == 0 {
        return refuse("pay.discounts", "this cloud takes no discount on payment");
    }
    if orders.len() > 1 && (!coupons.is_empty() || discount.is_some()) {
        return refuse(
            "pay.offers",
            "a coupon or discount applies to one order: pay that order on its own",
        );
    }
    let Some(offers) = cx.offers else {
        // The cloud checks them when paying.
        return funds(policy, cx);
    };
    if let Some(required) = offers.iter().find(|o| o.required && o.discount)
        && discount.as_ref().is_some_and(|d| d != &required.id)
    {
        return refuse(
            "pay.discounts",
            format!(
                "the order carries {} ({}), which the cloud requires and which excludes any other discount",
                required.id, required.label
            ),
        );
    }
    for id in coupons.iter().chain(discount.iter()) {
        let Some(offer) = offers.iter().find(|o| &o.id == id) else {
            return refuse(
                "pay.offers",
                format!("{id} is not a coupon or discount the cloud offers on this order"),
            );
        };
        if offer.discount != discount.as_ref().is_some_and(|d| d == id) {
            return refuse(
                "pay.offers",
                format!(
                    "{id} is a {}, not a {}",
                    if offer.discount { "discount" } else { "coupon" },
                    if offer.discount { "coupon" } else { "discount" }
                ),
            );
        }
        if offer.expires_at.is_some_and(|at| at <= cx.now) {
            return refuse(
                "pay.offers",
                format!("{id} has expired; an expired discount or coupon cannot be used"),
            );
        }
    }
    funds(policy, cx)
}

/// A change of auto-renewal: on a resource the account has, to what it is
/// not already.
fn autorenew(cx: &Context<'_>, resource: &ExternalId, on: bool) -> Result<(), Refusal> {
    if let Some(s) = cx.latest {
        match s.resources.iter().find(|r| &r.id == resource) {
            None => {
                return refuse(
                    "autorenew.resource",
                    format!("{resource} is not a prepaid resource of this account as last read"),
                );
            }
            Some(r) if (r.renewal == RenewalMode::Auto) == on => {
                return refuse(
                    "autorenew.unchanged",
                    format!(
                        "{resource} already renews {}",
                        if on { "automatically" } else { "by hand" }
                    ),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn steps(
    amount: &Money,
    minimum: Decimal,
    multiple: Option<Decimal>,
    rules: (&'static str, &'static str),
    what: &str,
) -> Result<(), Refusal> {
    let currency = amount.currency();
    if amount.amount() < minimum {
        return refuse(
            rules.0,
            format!(
                "{what} must be at least {}; {amount} is less",
                Money::new(minimum, currency)
            ),
        );
    }
    if let Some(step) = multiple.filter(|s| !s.is_zero())
        && !(amount.amount() % step).is_zero()
    {
        return refuse(
            rules.1,
            format!(
                "{what} must be a multiple of {}; {amount} is not",
                Money::new(step, currency)
            ),
        );
    }
    Ok(())
}

fn funds(policy: &Policy, cx: &Context<'_>) -> Result<(), Refusal> {
    let (true, Some(cost), Some(s)) = (policy.require_funds, cx.cost, cx.latest) else {
        return Ok(());
    };
    let available = s.balance.available;
    if available.currency() == cost.currency() && available.amount() < cost.amount() {
        return refuse(
            "require_funds",
            format!(
                "it costs {cost} and the balance is {available}; top up first, or the cloud will refuse it"
            ),
        );
    }
    Ok(())
}

fn caps(policy: &Policy, action: &Action, cx: &Context<'_>) -> Result<(), Refusal> {
    let caps = &policy.caps;
    if caps == &Caps::default() || action.costs_nothing() {
        return Ok(());
    }
    let Some(cost) = cx.cost.or(action.stated_amount()) else {
        return refuse(
            "caps",
            "the cost is not known, so the team's caps cannot be checked; ask for a priced request or raise it with an admin",
        );
    };
    let currency = policy.currency;
    if let Some(cap) = caps.per_request
        && cost.amount() > cap
    {
        return refuse(
            "caps.per_request",
            format!(
                "{cost} is above the cap of {} per request",
                Money::new(cap, currency)
            ),
        );
    }
    for (cap, so_far, rule, whose) in [
        (
            caps.per_account_day,
            cx.account_day,
            "caps.per_account_day",
            "this account",
        ),
        (
            caps.per_requester_day,
            cx.requester_day,
            "caps.per_requester_day",
            "you",
        ),
    ] {
        let Some(cap) = cap else { continue };
        let total = so_far.amount().checked_add(cost.amount());
        if total.is_none_or(|t| t > cap) {
            return refuse(
                rule,
                format!(
                    "{whose} already asked for {so_far} in the last 24 hours; {cost} more would pass the cap of {}",
                    Money::new(cap, currency)
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Balance, Bucket, ExternalId, Order, Resource};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap()
    }

    fn cny(a: i64) -> Money {
        Money::new(Decimal::from(a), Currency::Cny)
    }

    fn id(s: &str) -> ExternalId {
        ExternalId::parse(s).unwrap()
    }

    fn rule(method: PaymentMethod, minimum: i64, multiple: Option<i64>) -> MethodRule {
        MethodRule {
            method,
            minimum: Decimal::from(minimum),
            multiple: multiple.map(Decimal::from),
            settles_within: Duration::minutes(30),
        }
    }

    /// The seed documents' rules for a portal that takes Alipay, UnionPay
    /// and wire transfers, and contracts in steps of ¥1,000.
    fn policy() -> Policy {
        Policy {
            currency: Currency::Cny,
            topup: vec![
                rule(PaymentMethod::Alipay, 1_000, None),
                rule(PaymentMethod::Unionpay, 1_000, None),
                rule(PaymentMethod::Wire, 5_000, None),
            ],
            allocate: Some(Amounts {
                minimum: Decimal::from(1_000),
                multiple: Some(Decimal::from(1_000)),
            }),
            renew_months: vec![1, 2, 3, 6, 12],
            combined_payment: true,
            coupons_per_order: 1,
            discounts_per_order: 1,
            require_funds: true,
            caps: Caps::default(),
            roles: BTreeMap::new(),
        }
    }

    fn snapshot() -> Snapshot {
        let mut balance = Balance::available_only(cny(2_000));
        balance.buckets = vec![
            Bucket {
                name: "COC-2024-7891".into(),
                kind: BucketKind::Contract,
                amount: cny(500),
                entered_as_of: None,
            },
            Bucket {
                name: "unallocated".into(),
                kind: BucketKind::Unallocated,
                amount: cny(3_000),
                entered_as_of: None,
            },
        ];
        Snapshot {
            taken_at: t(0),
            balance,
            resources: vec![Resource {
                id: id("ins-a"),
                product: "cvm".into(),
                region: None,
                name: None,
                expires_at: t(100),
                renewal: RenewalMode::Manual,
                status: ResourceStatus::Active,
                renewal_price: Some(cny(600)),
                renewal_months: None,
                unpriced: None,
            }],
            orders: vec![Order {
                id: id("o-1"),
                amount: cny(800),
                created_at: t(-24),
                pay_deadline: Some(t(24 * 6)),
                description: String::new(),
            }],
            spend: None,
            recharges: vec![],
            tally: None,
        }
    }

    struct Ask {
        person: Person,
        snapshot: Snapshot,
        cost: Option<Money>,
        account_day: Money,
        requester_day: Money,
        offers: Option<Vec<Offer>>,
        now: DateTime<Utc>,
    }

    impl Ask {
        fn new() -> Ask {
            Ask {
                person: Person {
                    name: "ria".into(),
                    role: Role::Requester,
                },
                snapshot: snapshot(),
                cost: None,
                account_day: cny(0),
                requester_day: cny(0),
                offers: Some(vec![]),
                now: t(1),
            }
        }

        fn check(&self, p: &Policy, a: &Action) -> Result<(), Refusal> {
            check(
                p,
                a,
                &Context {
                    requester: &self.person,
                    now: self.now,
                    latest: Some(&self.snapshot),
                    cost: self.cost,
                    account_day: self.account_day,
                    requester_day: self.requester_day,
                    offers: self.offers.as_deref(),
                },
            )
        }
    }

    fn rule_of(r: Result<(), Refusal>) -> &'static str {
        r.err().map(|e| e.rule).unwrap_or("passed")
    }

    fn topup(amount: Money, method: PaymentMethod) -> Action {
        Action::Topup { amount, method }
    }

    #[test]
    fn top_ups_keep_the_methods_and_minimums() {
        let p = policy();
        let ask = Ask::new();
        assert_eq!(
            ask.check(&p, &topup(cny(1_000), PaymentMethod::Alipay)),
            Ok(())
        );
        let low = ask
            .check(&p, &topup(cny(999), PaymentMethod::Unionpay))
            .unwrap_err();
        assert_eq!(low.rule, "topup.minimum");
        assert_eq!(
            low.to_string(),
            "a top-up by UnionPay online payment must be at least ¥1,000.00; ¥999.00 is less (policy: topup.minimum)"
        );
        assert_eq!(
            rule_of(ask.check(&p, &topup(cny(4_000), PaymentMethod::Wire))),
            "topup.minimum",
            "a wire needs ¥5,000"
        );
        let card = ask
            .check(&p, &topup(cny(2_000), PaymentMethod::CreditCard))
            .unwrap_err();
        assert_eq!(card.rule, "topup.methods");
        assert!(card.why.contains("alipay, unionpay, wire"), "{card}");
        let usd = Money::new(Decimal::from(2_000), Currency::Usd);
        assert_eq!(
            rule_of(ask.check(&p, &topup(usd, PaymentMethod::Alipay))),
            "currency"
        );
    }

    #[test]
    fn multiples_are_checked_where_the_cloud_asks_for_them() {
        let mut p = policy();
        p.topup = vec![rule(PaymentMethod::Wire, 1_000, Some(1_000))];
        let ask = Ask::new();
        let r = ask
            .check(&p, &topup(cny(1_500), PaymentMethod::Wire))
            .unwrap_err();
        assert_eq!(
            r.to_string(),
            "a top-up by wire transfer must be a multiple of ¥1,000.00; ¥1,500.00 is not (policy: topup.multiple)"
        );
        let cents = Money::new(Decimal::new(300_001, 2), Currency::Cny);
        assert_eq!(
            rule_of(ask.check(&p, &topup(cents, PaymentMethod::Wire))),
            "topup.multiple"
        );
        assert_eq!(
            ask.check(&p, &topup(cny(3_000), PaymentMethod::Wire)),
            Ok(())
        );
    }

    #[test]
    fn allocations_need_a_contract_the_money_and_the_steps() {
        let p = policy();
        let ask = Ask::new();
        let alloc = |amount, contract: &str| Action::Allocate {
            amount,
            contract: contract.into(),
            had: None,
        };
        assert_eq!(ask.check(&p, &alloc(cny(2_000), "COC-2024-7891")), Ok(()));
        assert_eq!(
            rule_of(ask.check(&p, &alloc(cny(2_500), "COC-2024-7891"))),
            "allocate.multiple"
        );
        assert_eq!(
            rule_of(ask.check(&p, &alloc(cny(4_000), "COC-2024-7891"))),
            "allocate.funds"
        );
        let wrong = ask.check(&p, &alloc(cny(1_000), "COC-1")).unwrap_err();
        assert_eq!(wrong.rule, "allocate.contract");
        assert!(wrong.why.contains("COC-2024-7891"));
        let mut none = policy();
        none.allocate = None;
        assert_eq!(
            rule_of(ask.check(&none, &alloc(cny(1_000), "COC-2024-7891"))),
            "allocate"
        );
    }

    #[test]
    fn renewals_need_a_known_resource_a_period_and_the_funds() {
        let p = policy();
        let mut ask = Ask::new();
        ask.cost = Some(cny(600));
        let renew = |r: &str, months| Action::Renew {
            resources: vec![id(r)],
            months,
        };
        assert_eq!(ask.check(&p, &renew("ins-a", 1)), Ok(()));
        assert_eq!(rule_of(ask.check(&p, &renew("ins-a", 5))), "renew.periods");
        assert_eq!(rule_of(ask.check(&p, &renew("ins-z", 1))), "renew.resource");
        ask.snapshot.resources[0].status = ResourceStatus::Released;
        assert_eq!(rule_of(ask.check(&p, &renew("ins-a", 1))), "renew.resource");
        ask.snapshot.resources[0].status = ResourceStatus::Recovery;
        ask.cost = Some(cny(2_400));
        let short = ask.check(&p, &renew("ins-a", 1)).unwrap_err();
        assert_eq!(short.rule, "require_funds");
        assert!(short.why.contains("¥2,400.00") && short.why.contains("¥2,000.00"));
    }

    #[test]
    fn payments_keep_the_window_the_combination_and_the_offers() {
        let mut p = policy();
        let mut ask = Ask::new();
        ask.cost = Some(cny(800));
        let pay = |orders: &[&str], coupons: &[&str], discount: Option<&str>| Action::Pay {
            orders: orders.iter().map(|o| id(o)).collect(),
            coupons: coupons.iter().map(|c| c.to_string()).collect(),
            discount: discount.map(str::to_owned),
            offered: vec![],
        };
        assert_eq!(ask.check(&p, &pay(&["o-1"], &[], None)), Ok(()));
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-2"], &[], None))),
            "pay.order"
        );
        ask.now = t(24 * 6);
        let late = ask.check(&p, &pay(&["o-1"], &[], None)).unwrap_err();
        assert_eq!(late.rule, "pay.window");
        ask.now = t(1);
        let mut second = ask.snapshot.orders[0].clone();
        second.id = id("o-2");
        ask.snapshot.orders.push(second);
        assert_eq!(ask.check(&p, &pay(&["o-1", "o-2"], &[], None)), Ok(()));
        p.combined_payment = false;
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1", "o-2"], &[], None))),
            "pay.combined"
        );
        let offer = |id: &str, discount: bool, expires_at: Option<DateTime<Utc>>| Offer {
            id: id.into(),
            discount,
            expires_at,
            required: false,
            label: String::new(),
        };
        ask.offers = Some(vec![
            offer("c1", false, None),
            offer("c2", false, None),
            offer("d-old", true, Some(t(0))),
            offer("d-new", true, Some(t(100))),
        ]);
        assert_eq!(
            ask.check(&p, &pay(&["o-1"], &["c1"], Some("d-new"))),
            Ok(())
        );
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1"], &["c1", "c2"], None))),
            "pay.coupons",
            "one coupon per order"
        );
        let expired = ask
            .check(&p, &pay(&["o-1"], &[], Some("d-old")))
            .unwrap_err();
        assert_eq!(expired.rule, "pay.offers");
        assert!(expired.why.contains("expired"));
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1"], &["d-new"], None))),
            "pay.offers",
            "a discount is not a coupon"
        );
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1"], &["c9"], None))),
            "pay.offers"
        );
        // Coupons and discounts are per order.
        p.combined_payment = true;
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1", "o-2"], &["c1"], None))),
            "pay.offers"
        );
        // A price adjustment the cloud requires excludes any other discount.
        if let Some(o) = ask.offers.as_mut() {
            o.push(Offer {
                required: true,
                label: "price adjustment".into(),
                ..offer("d-609", true, None)
            });
        }
        let other = ask
            .check(&p, &pay(&["o-1"], &[], Some("d-new")))
            .unwrap_err();
        assert_eq!(other.rule, "pay.discounts");
        assert!(
            other.why.contains("d-609 (price adjustment)"),
            "{}",
            other.why
        );
        assert_eq!(ask.check(&p, &pay(&["o-1"], &[], Some("d-609"))), Ok(()));
        // A cloud that does not list its offers checks them when paying.
        ask.offers = None;
        assert_eq!(ask.check(&p, &pay(&["o-1"], &["c9"], None)), Ok(()));
        p.discounts_per_order = 0;
        assert_eq!(
            rule_of(ask.check(&p, &pay(&["o-1"], &[], Some("d-new")))),
            "pay.discounts"
        );
    }

    #[test]
    fn auto_renew_changes_must_change_something() {
        let p = policy();
        let ask = Ask::new();
        let set = |on| Action::Autorenew {
            resource: id("ins-a"),
            on,
        };
        assert_eq!(ask.check(&p, &set(true)), Ok(()));
        assert_eq!(rule_of(ask.check(&p, &set(false))), "autorenew.unchanged");
        let mut priced = Ask::new();
        priced.cost = Some(cny(0));
        assert_eq!(
            priced.check(&p, &set(true)),
            Ok(()),
            "a zero cost is no amount"
        );
    }

    #[test]
    fn caps_per_request_account_and_requester() {
        let mut p = policy();
        p.caps = Caps {
            per_request: Some(Decimal::from(20_000)),
            per_account_day: Some(Decimal::from(30_000)),
            per_requester_day: Some(Decimal::from(25_000)),
        };
        let mut ask = Ask::new();
        assert_eq!(
            rule_of(ask.check(&p, &topup(cny(20_001), PaymentMethod::Wire))),
            "caps.per_request"
        );
        ask.account_day = cny(15_000);
        assert_eq!(
            ask.check(&p, &topup(cny(15_000), PaymentMethod::Wire)),
            Ok(()),
            "¥30,000 on the account is at the cap, not over"
        );
        let over = ask
            .check(&p, &topup(cny(15_001), PaymentMethod::Wire))
            .unwrap_err();
        assert_eq!(over.rule, "caps.per_account_day");
        assert!(over.why.contains("¥15,000.00"), "{over}");
        ask.account_day = cny(0);
        ask.requester_day = cny(20_000);
        assert_eq!(
            rule_of(ask.check(&p, &topup(cny(6_000), PaymentMethod::Wire))),
            "caps.per_requester_day"
        );
        let free = Action::Autorenew {
            resource: id("ins-a"),
            on: true,
        };
        assert_eq!(ask.check(&p, &free), Ok(()), "costs nothing");
        let unpriced = Action::Renew {
            resources: vec![id("ins-a")],
            months: 1,
        };
        assert_eq!(rule_of(ask.check(&p, &unpriced)), "caps");
    }

    #[test]
    fn a_payment_keeps_the_caps_where_the_cloud_lists_no_offers() {
        let mut p = policy();
        p.caps.per_request = Some(Decimal::from(500));
        let mut ask = Ask::new();
        ask.cost = Some(cny(800));
        let pay = Action::Pay {
            orders: vec![id("o-1")],
            coupons: vec![],
            discount: None,
            offered: vec![],
        };
        assert_eq!(rule_of(ask.check(&p, &pay)), "caps.per_request");
        // A cloud that checks coupons itself when paying lists none.
        ask.offers = None;
        assert_eq!(rule_of(ask.check(&p, &pay)), "caps.per_request");
    }

    #[test]
    fn roles_are_configurable_per_kind() {
        let mut p = policy();
        p.roles.insert(ActionKind::Topup, Role::Approver);
        let r = Ask::new()
            .check(&p, &topup(cny(1_000), PaymentMethod::Alipay))
            .unwrap_err();
        assert_eq!(
            r.to_string(),
            "asking for a top-up needs the approver role; you are requester (policy: roles)"
        );
    }
}
