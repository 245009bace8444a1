//! Each account's request policy: its cloud's documented rules as defaults
//! (seed documents and the providers' references), which `[policy]` and
//! `[overrides.policy]` may narrow — never widen, since the cloud would
//! refuse what it does not take — and the team's own caps and roles.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Duration;
use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;

use super::{Cloud, Config, Issues, S, bare_amount, parse_duration};
use crate::domain::command::Role;
use crate::domain::model::AccountId;
use crate::domain::money::{Currency, Money};
use crate::domain::policy::{Amounts, Caps, MethodRule, Policy};
use crate::domain::request::{ActionKind, PaymentMethod};

fn method(method: PaymentMethod, minimum: i64, settles_within: Duration) -> MethodRule {
    MethodRule {
        method,
        minimum: Decimal::from(minimum),
        multiple: None,
        settles_within,
    }
}

/// Online payments show within the half hour the clouds ask people to
/// wait; a wire transfer is confirmed days later.
fn online(m: PaymentMethod, minimum: i64) -> MethodRule {
    method(m, minimum, Duration::minutes(30))
}

fn wire(minimum: i64) -> MethodRule {
    method(PaymentMethod::Wire, minimum, Duration::days(5))
}

/// A cloud's documented rules; `None` is the simulated provider, which
/// follows the strictest portal's (the 21Vianet one) so the demo shows them.
pub fn defaults(cloud: Option<Cloud>, currency: Currency) -> Policy {
    use PaymentMethod::*;
    // No documented minimum: the smallest amount there is.
    let any = 0;
    let (topup, allocate, renew_months, combined_payment, coupons, discounts) = match cloud {
        // Seed 000: Alipay and UnionPay from ¥1,000, wire from ¥5,000; no
        // resources or orders by API.
        Some(Cloud::AzureChina) => (
            vec![online(Alipay, 1_000), online(Unionpay, 1_000), wire(5_000)],
            None,
            (1..=12).collect(),
            false,
            0,
            0,
        ),
        // The simulated provider stands in for any cloud: the strictest
        // top-up minimums, and allocations to whatever contracts its
        // scenario gives (a contract it does not have is refused).
        None => (
            vec![online(Alipay, 1_000), online(Unionpay, 1_000), wire(5_000)],
            Some(Amounts {
                minimum: Decimal::ZERO,
                multiple: None,
            }),
            (1..=12).collect(),
            false,
            0,
            0,
        ),
        // Seed 001: Alipay and UnionPay (no credit cards through Alipay),
        // bank transfer; one coupon per order. BSS RenewInstance takes 1–9,
        // 12, 24 or 36 months. Orders have no payment API.
        Some(Cloud::Alibaba) => (
            vec![online(Alipay, any), online(Unionpay, any), wire(any)],
            None,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 24, 36],
            false,
            1,
            0,
        ),
        // Online banking, WeChat Pay, Alipay, bank transfer; managed
        // services take ¥1,000 and multiples of ¥1,000 per contract (seed
        // 003). CVM renews 1–12, 24, 36, 48 or 60 months; PayDeals pays
        // orders together with one voucher.
        Some(Cloud::Tencent) => (
            vec![
                online(OnlineBanking, any),
                online(Wechat, any),
                online(Alipay, any),
                wire(any),
            ],
            Some(Amounts {
                minimum: Decimal::from(1_000),
                multiple: Some(Decimal::from(1_000)),
            }),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 36, 48, 60],
            true,
            1,
            0,
        ),
        // Seed 002 and PayOrders: up to 3 coupons, one discount (the kinds
        // exclude each other); PayOrders takes one order_id, so orders are
        // paid one request each (a combined payment would be several calls,
        // one of which could fail after another had paid); renewals of 1–11
        // months or 1–3 years.
        Some(Cloud::Huawei) => (
            vec![
                online(Alipay, any),
                online(OnlineBanking, any),
                online(Wechat, any),
                online(Unionpay, any),
                wire(any),
            ],
            None,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 36],
            false,
            3,
            1,
        ),
    };
    Policy {
        currency,
        topup,
        allocate,
        renew_months,
        combined_payment,
        coupons_per_order: coupons,
        discounts_per_order: discounts,
        require_funds: true,
        caps: Caps::default(),
        roles: BTreeMap::new(),
    }
}

impl Config {
    /// Every account's policy.
    pub fn policies(&self) -> HashMap<AccountId, Arc<Policy>> {
        self.accounts
            .iter()
            .map(|a| (a.account.id.clone(), Arc::clone(&a.policy)))
            .collect()
    }
}

// ---------------------------------------------------------------- config

/// `[policy]` as written; every key optional, so that an override replaces
/// only what it names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    require_funds: Option<bool>,
    caps: Option<RawCaps>,
    /// Action kind → the least role that may ask for it.
    #[serde(default)]
    roles: BTreeMap<String, S>,
    topup: Option<RawTopup>,
    allocate: Option<RawAllocate>,
    renew: Option<RawRenew>,
    pay: Option<RawPay>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaps {
    per_request: Option<S>,
    per_account_day: Option<S>,
    per_requester_day: Option<S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopup {
    /// The methods taken, in order; the first is used when none is named.
    methods: Option<Spanned<Vec<S>>>,
    #[serde(default)]
    minimum: BTreeMap<String, S>,
    #[serde(default)]
    multiple: BTreeMap<String, S>,
    #[serde(default)]
    settles_within: BTreeMap<String, S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllocate {
    minimum: Option<S>,
    multiple: Option<S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenew {
    periods: Option<Spanned<Vec<Spanned<i64>>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPay {
    combined: Option<Spanned<bool>>,
    coupons: Option<Spanned<i64>>,
    discounts: Option<Spanned<i64>>,
}

fn lay<T: Clone>(base: &mut Option<T>, over: &Option<T>) {
    if over.is_some() {
        base.clone_from(over);
    }
}

fn lay_map<V: Clone>(base: &mut BTreeMap<String, V>, over: &BTreeMap<String, V>) {
    base.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// Lays `over` on top of `base`, key by key.
pub(super) fn merge(base: &mut RawPolicy, over: &RawPolicy) {
    lay(&mut base.require_funds, &over.require_funds);
    if let Some(o) = &over.caps {
        let b = base.caps.get_or_insert_with(Default::default);
        lay(&mut b.per_request, &o.per_request);
        lay(&mut b.per_account_day, &o.per_account_day);
        lay(&mut b.per_requester_day, &o.per_requester_day);
    }
    lay_map(&mut base.roles, &over.roles);
    if let Some(o) = &over.topup {
        let b = base.topup.get_or_insert_with(Default::default);
        lay(&mut b.methods, &o.methods);
        lay_map(&mut b.minimum, &o.minimum);
        lay_map(&mut b.multiple, &o.multiple);
        lay_map(&mut b.settles_within, &o.settles_within);
    }
    if let Some(o) = &over.allocate {
        let b = base.allocate.get_or_insert_with(Default::default);
        lay(&mut b.minimum, &o.minimum);
        lay(&mut b.multiple, &o.multiple);
    }
    if let Some(o) = &over.renew {
        let b = base.renew.get_or_insert_with(Default::default);
        lay(&mut b.periods, &o.periods);
    }
    if let Some(o) = &over.pay {
        let b = base.pay.get_or_insert_with(Default::default);
        lay(&mut b.combined, &o.combined);
        lay(&mut b.coupons, &o.coupons);
        lay(&mut b.discounts, &o.discounts);
    }
}

/// How refusals name the cloud whose documented rules a setting would break.
fn whose(cloud: Option<Cloud>) -> &'static str {
    match cloud {
        None => "the simulated provider (which keeps 21Vianet's rules)",
        Some(Cloud::Tencent) => "Tencent Cloud",
        Some(Cloud::Alibaba) => "Alibaba Cloud",
        Some(Cloud::Huawei) => "Huawei Cloud",
        Some(Cloud::AzureChina) => "Azure operated by 21Vianet",
    }
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cap: an amount above zero, or `"none"` to lift one set elsewhere.
fn cap(issues: &mut Issues<'_>, key: &str, value: &S) -> Option<Decimal> {
    if value.get_ref().trim().eq_ignore_ascii_case("none") {
        return None;
    }
    let amount = bare_amount(issues, key, value)?;
    if amount <= Decimal::ZERO {
        issues.at(
            value,
            key,
            "a cap must be above zero (\"none\" lifts it); to keep people from asking for a kind of request, raise its role in [policy.roles]",
        );
        return None;
    }
    Some(amount)
}

/// A step that amounts must be whole multiples of: above zero, and itself a
/// multiple of the cloud's own step.
fn step(
    issues: &mut Issues<'_>,
    key: &str,
    value: &S,
    documented: Option<Decimal>,
    currency: Currency,
    who: &str,
) -> Option<Option<Decimal>> {
    let amount = bare_amount(issues, key, value)?;
    if amount <= Decimal::ZERO {
        issues.at(value, key, "a multiple must be above zero");
        return None;
    }
    if let Some(d) = documented.filter(|d| !(amount % d).is_zero()) {
        issues.at(
            value,
            key,
            format!(
                "{who} takes multiples of {}; {} is not one",
                Money::new(d, currency),
                Money::new(amount, currency)
            ),
        );
        return None;
    }
    Some(Some(amount))
}

/// A minimum no lower than the cloud's own.
fn floor(
    issues: &mut Issues<'_>,
    key: &str,
    value: &S,
    documented: Decimal,
    currency: Currency,
    what: &str,
) -> Option<Decimal> {
    let amount = bare_amount(issues, key, value)?;
    if amount < documented {
        issues.at(
            value,
            key,
            format!(
                "{what} from {}; a lower minimum would be refused there",
                Money::new(documented, currency)
            ),
        );
        return None;
    }
    Some(amount)
}

/// One account's policy: the cloud's documented rules with `raw` laid on
/// top. A setting the cloud would refuse is reported, and the documented
/// rule kept.
pub(super) fn resolve(
    issues: &mut Issues<'_>,
    raw: &RawPolicy,
    cloud: Option<Cloud>,
    currency: Currency,
) -> Policy {
    let documented = defaults(cloud, currency);
    let mut policy = documented.clone();
    let who = whose(cloud);
    if let Some(v) = raw.require_funds {
        policy.require_funds = v;
    }
    if let Some(c) = &raw.caps {
        for (slot, value, key) in [
            (&mut policy.caps.per_request, &c.per_request, "per_request"),
            (
                &mut policy.caps.per_account_day,
                &c.per_account_day,
                "per_account_day",
            ),
            (
                &mut policy.caps.per_requester_day,
                &c.per_requester_day,
                "per_requester_day",
            ),
        ] {
            if let Some(v) = value {
                *slot = cap(issues, &format!("policy.caps.{key}"), v);
            }
        }
    }
    roles(issues, raw, &mut policy);
    if let Some(t) = &raw.topup {
        topup(issues, t, &documented, &mut policy, who);
    }
    if let Some(a) = &raw.allocate {
        allocate(issues, a, &documented, &mut policy, who);
    }
    if let Some(periods) = raw.renew.as_ref().and_then(|r| r.periods.as_ref()) {
        renew_periods(issues, periods, &documented, &mut policy, who);
    }
    if let Some(pay) = &raw.pay {
        self::pay(issues, pay, &documented, &mut policy, who);
    }
    policy
}

/// `[policy.roles]`: the least role that may ask for each kind of request.
fn roles(issues: &mut Issues<'_>, raw: &RawPolicy, policy: &mut Policy) {
    for (kind, role) in &raw.roles {
        let key = format!("policy.roles.{kind}");
        let Some(kind) = ActionKind::parse(kind) else {
            issues.at(
                role,
                key,
                format!(
                    "{kind:?} is not a kind of request; the kinds: {}",
                    list(ActionKind::ALL)
                ),
            );
            continue;
        };
        match Role::parse(role.get_ref()) {
            Some(r) if r >= Role::Requester => {
                policy.roles.insert(kind, r);
            }
            _ => issues.at(
                role,
                key,
                format!(
                    "{:?} must be requester, approver or admin (viewers never ask for money)",
                    role.get_ref()
                ),
            ),
        }
    }
}

/// `[policy.allocate]`: within what the cloud takes.
fn allocate(
    issues: &mut Issues<'_>,
    a: &RawAllocate,
    documented: &Policy,
    policy: &mut Policy,
    who: &str,
) {
    let currency = policy.currency;
    let Some(rule) = policy.allocate.as_mut() else {
        return;
    };
    let was = documented.allocate.clone().unwrap_or(rule.clone());
    if let Some(v) = &a.minimum
        && let Some(m) = floor(
            issues,
            "policy.allocate.minimum",
            v,
            was.minimum,
            currency,
            &format!("{who} takes allocations"),
        )
    {
        rule.minimum = m;
    }
    if let Some(v) = &a.multiple
        && let Some(m) = step(
            issues,
            "policy.allocate.multiple",
            v,
            was.multiple,
            currency,
            who,
        )
    {
        rule.multiple = m;
    }
}

/// `[policy.renew] periods`: some of the periods the cloud renews for.
fn renew_periods(
    issues: &mut Issues<'_>,
    periods: &Spanned<Vec<Spanned<i64>>>,
    documented: &Policy,
    policy: &mut Policy,
    who: &str,
) {
    let key = "policy.renew.periods";
    let mut chosen = Vec::new();
    for p in periods.get_ref() {
        match u32::try_from(*p.get_ref()) {
            Ok(m) if documented.renew_months.contains(&m) => {
                if !chosen.contains(&m) {
                    chosen.push(m);
                }
            }
            _ => issues.at(
                p,
                key,
                format!(
                    "{who} renews for {} months; {} is not one of them",
                    list(&documented.renew_months),
                    p.get_ref()
                ),
            ),
        }
    }
    if periods.get_ref().is_empty() {
        issues.at(
            periods,
            key,
            "must list at least one period; to keep people from asking for renewals, raise the role for renew in [policy.roles]",
        );
    } else if !chosen.is_empty() {
        chosen.sort_unstable();
        policy.renew_months = chosen;
    }
}

/// `[policy.pay]`: combined payments, coupons and discounts, within what
/// the cloud takes.
fn pay(issues: &mut Issues<'_>, pay: &RawPay, documented: &Policy, policy: &mut Policy, who: &str) {
    if let Some(v) = &pay.combined {
        if *v.get_ref() && !documented.combined_payment {
            issues.at(
                v,
                "policy.pay.combined",
                format!("{who} pays orders one at a time; it cannot be true here"),
            );
        } else {
            policy.combined_payment = *v.get_ref();
        }
    }
    for (value, slot, most, key, what) in [
        (
            &pay.coupons,
            &mut policy.coupons_per_order,
            documented.coupons_per_order,
            "policy.pay.coupons",
            "coupon(s)",
        ),
        (
            &pay.discounts,
            &mut policy.discounts_per_order,
            documented.discounts_per_order,
            "policy.pay.discounts",
            "discount(s)",
        ),
    ] {
        let Some(v) = value else { continue };
        match u8::try_from(*v.get_ref()) {
            Ok(n) if n <= most => *slot = n,
            _ => issues.at(
                v,
                key,
                format!(
                    "{who} takes at most {most} {what} per order; {} is not allowed",
                    v.get_ref()
                ),
            ),
        }
    }
}

fn topup(
    issues: &mut Issues<'_>,
    t: &RawTopup,
    documented: &Policy,
    policy: &mut Policy,
    who: &str,
) {
    let currency = policy.currency;
    let taken = || list(documented.topup.iter().map(|m| m.method.as_str()));
    let unknown = |name: &str| {
        format!(
            "unknown payment method {name:?}; use {}",
            list(PaymentMethod::ALL.map(|m| m.as_str()))
        )
    };
    if let Some(methods) = &t.methods {
        let mut chosen: Vec<MethodRule> = Vec::new();
        for m in methods.get_ref() {
            let key = "policy.topup.methods";
            match PaymentMethod::parse(m.get_ref()) {
                None => issues.at(m, key, unknown(m.get_ref())),
                Some(pm) => match documented.method(pm) {
                    None => issues.at(
                        m,
                        key,
                        format!(
                            "{who} does not take top-ups by {}; it takes {}",
                            pm.label(),
                            taken()
                        ),
                    ),
                    Some(_) if chosen.iter().any(|c| c.method == pm) => {
                        issues.at(m, key, format!("{} is listed twice", pm.as_str()))
                    }
                    Some(rule) => chosen.push(rule.clone()),
                },
            }
        }
        policy.topup = chosen;
    }
    // A setting is checked against the cloud's rule for the method even
    // where this account's list leaves the method out: the section may be
    // shared with accounts that take it.
    let known = |issues: &mut Issues<'_>, part: &str, name: &str, value: &S| {
        let key = format!("policy.topup.{part}.{name}");
        match PaymentMethod::parse(name) {
            None => {
                issues.at(value, key, unknown(name));
                None
            }
            Some(pm) => Some((key, pm)),
        }
    };
    for (name, v) in &t.minimum {
        let Some((key, pm)) = known(issues, "minimum", name, v) else {
            continue;
        };
        let Some(was) = documented.method(pm).map(|r| r.minimum) else {
            continue;
        };
        let what = format!("{who} takes {}", pm.label());
        if let (Some(m), Some(rule)) = (
            floor(issues, &key, v, was, currency, &what),
            policy.topup.iter_mut().find(|r| r.method == pm),
        ) {
            rule.minimum = m;
        }
    }
    for (name, v) in &t.multiple {
        let Some((key, pm)) = known(issues, "multiple", name, v) else {
            continue;
        };
        let Some(was) = documented.method(pm).map(|r| r.multiple) else {
            continue;
        };
        if let (Some(m), Some(rule)) = (
            step(issues, &key, v, was, currency, who),
            policy.topup.iter_mut().find(|r| r.method == pm),
        ) {
            rule.multiple = m;
        }
    }
    for (name, v) in &t.settles_within {
        let Some((key, pm)) = known(issues, "settles_within", name, v) else {
            continue;
        };
        match parse_duration(v.get_ref()) {
            Ok(d) if d > Duration::zero() => {
                if let Some(rule) = policy.topup.iter_mut().find(|r| r.method == pm) {
                    rule.settles_within = d;
                }
            }
            Ok(_) => issues.at(v, key, "must be longer than zero"),
            Err(e) => issues.at(v, key, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_documents_rules_are_the_defaults() {
        let azure = defaults(Some(Cloud::AzureChina), Currency::Cny);
        let min = |p: &Policy, m| p.method(m).map(|r| r.minimum);
        assert_eq!(
            min(&azure, PaymentMethod::Alipay),
            Some(Decimal::from(1_000))
        );
        assert_eq!(min(&azure, PaymentMethod::Wire), Some(Decimal::from(5_000)));
        assert!(azure.method(PaymentMethod::Wechat).is_none());
        let ali = defaults(Some(Cloud::Alibaba), Currency::Cny);
        assert!(ali.method(PaymentMethod::CreditCard).is_none());
        assert_eq!(ali.coupons_per_order, 1);
        let tencent = defaults(Some(Cloud::Tencent), Currency::Cny);
        assert_eq!(
            tencent.allocate.as_ref().and_then(|a| a.multiple),
            Some(Decimal::from(1_000))
        );
        let huawei = defaults(Some(Cloud::Huawei), Currency::Cny);
        assert_eq!(huawei.discounts_per_order, 1);
        assert!(huawei.renew_months.contains(&36) && !huawei.renew_months.contains(&13));
    }
}
