//! `[rules]` and `[[overrides]]`: the alert rules each account follows, its
//! defaults from the seed, and the checks on every threshold.

use chrono::Duration;
use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;

use super::{Issues, S, duration, parse_duration, policy};
use crate::domain::model::{Labels, RenewalMode};
use crate::domain::money::{Currency, Money};
use crate::domain::rules::{
    AmountTier, AutorenewAtRisk, DaysTier, DeliveryFailed, Expiring, LadderStep, Lasting,
    LowBalance, PollFailed, RuleSet, Runway, Severity, Simple, Timing, UnpaidOrder,
};

macro_rules! merge_opt {
    ($base:expr, $over:expr, $($field:ident),+) => {
        $( if $over.$field.is_some() { $base.$field = $over.$field.clone(); } )+
    };
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) low_balance: Option<RawLowBalance>,
    pub(super) runway: Option<RawRunway>,
    pub(super) expiring: Option<RawExpiring>,
    pub(super) autorenew_at_risk: Option<RawAtRisk>,
    pub(super) autorenew_failed: Option<RawSimple>,
    pub(super) unpaid_order: Option<RawUnpaid>,
    pub(super) poll_failed: Option<RawLasting>,
    pub(super) unallocated_funds: Option<RawLasting>,
    pub(super) stale_balance: Option<RawLasting>,
    pub(super) payment_late: Option<RawSimple>,
    pub(super) delivery_failed: Option<RawSimple>,
    pub(super) calendar_expiring: Option<RawSimple>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLowBalance {
    pub(super) enabled: Option<bool>,
    pub(super) tiers: Option<Vec<RawAmountTier>>,
    pub(super) margin: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAmountTier {
    pub(super) below: S,
    pub(super) severity: S,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunway {
    pub(super) enabled: Option<bool>,
    pub(super) tiers: Option<Vec<RawDaysTier>>,
    pub(super) margin_days: Option<Spanned<f64>>,
    pub(super) window: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaysTier {
    pub(super) below_days: Spanned<f64>,
    pub(super) severity: S,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpiring {
    pub(super) enabled: Option<bool>,
    pub(super) ladder: Option<Vec<RawStep>>,
    pub(super) modes: Option<Vec<S>>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) days: Spanned<i64>,
    pub(super) severity: S,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAtRisk {
    pub(super) enabled: Option<bool>,
    pub(super) within: Option<S>,
    pub(super) severity: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSimple {
    pub(super) enabled: Option<bool>,
    pub(super) severity: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnpaid {
    pub(super) enabled: Option<bool>,
    pub(super) before_deadline: Option<S>,
    pub(super) after: Option<S>,
    pub(super) severity: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLasting {
    pub(super) enabled: Option<bool>,
    pub(super) after: Option<S>,
    pub(super) severity: Option<S>,
    pub(super) pending: Option<S>,
    pub(super) repeat: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverride {
    #[serde(default)]
    pub(super) accounts: Vec<S>,
    #[serde(default)]
    pub(super) labels: Labels,
    #[serde(default)]
    pub(super) rules: RawRules,
    #[serde(default)]
    pub(super) policy: policy::RawPolicy,
}

pub(super) fn severity(issues: &mut Issues<'_>, key: &str, value: &S) -> Severity {
    Severity::parse(value.get_ref()).unwrap_or_else(|| {
        issues.at(
            value,
            key,
            format!("severity {:?} must be A, B or C", value.get_ref()),
        );
        Severity::C
    })
}

/// A rule's severity: the configured one if valid, else the rule's default.
pub(super) fn opt_severity(
    issues: &mut Issues<'_>,
    key: &str,
    value: Option<&S>,
    default: Severity,
) -> Severity {
    value.map_or(default, |s| severity(issues, key, s))
}

pub(super) fn money(issues: &mut Issues<'_>, key: &str, value: &S, currency: Currency) -> Money {
    match Money::parse(value.get_ref(), currency) {
        Ok(m) if m.currency() != currency => {
            issues.at(
                value,
                key,
                format!(
                    "{} is in {}, but the account is in {currency}",
                    m,
                    m.currency()
                ),
            );
            Money::zero(currency)
        }
        Ok(m) => m,
        Err(e) => {
            issues.at(value, key, e.to_string());
            Money::zero(currency)
        }
    }
}

pub(super) fn timing(
    issues: &mut Issues<'_>,
    rule: &str,
    pending: &Option<S>,
    repeat: &Option<S>,
    repeat_default: Option<Duration>,
) -> Timing {
    let pending_for = duration(
        issues,
        &format!("rules.{rule}.pending"),
        pending.as_ref(),
        Duration::zero(),
    );
    let repeat_every = match repeat {
        None => repeat_default,
        Some(v) if v.get_ref() == "never" => None,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d > Duration::zero() => Some(d),
            Ok(_) => {
                issues.at(
                    v,
                    format!("rules.{rule}.repeat"),
                    "repeat must be longer than zero, or \"never\"",
                );
                None
            }
            Err(e) => {
                issues.at(v, format!("rules.{rule}.repeat"), e);
                None
            }
        },
    };
    Timing {
        pending_for,
        repeat_every,
    }
}

pub(super) fn days(issues: &mut Issues<'_>, key: &str, value: &Spanned<f64>) -> Decimal {
    match Decimal::from_f64_retain(*value.get_ref()).map(|d| d.round_dp(2)) {
        Some(d) if d >= Decimal::ZERO => d,
        _ => {
            issues.at(value, key, "must be zero or more days");
            Decimal::ZERO
        }
    }
}

/// Lays `over` on top of `base`, field by field.
pub(super) fn merge_rules(base: &mut RawRules, over: &RawRules) {
    if let Some(o) = &over.low_balance {
        let b = base.low_balance.get_or_insert_with(Default::default);
        merge_opt!(b, o, enabled, tiers, margin, pending, repeat);
    }
    if let Some(o) = &over.runway {
        let b = base.runway.get_or_insert_with(Default::default);
        merge_opt!(b, o, enabled, tiers, margin_days, window, pending, repeat);
    }
    if let Some(o) = &over.expiring {
        let b = base.expiring.get_or_insert_with(Default::default);
        merge_opt!(b, o, enabled, ladder, modes, pending, repeat);
    }
    if let Some(o) = &over.autorenew_at_risk {
        let b = base.autorenew_at_risk.get_or_insert_with(Default::default);
        merge_opt!(b, o, enabled, within, severity, pending, repeat);
    }
    if let Some(o) = &over.autorenew_failed {
        let b = base.autorenew_failed.get_or_insert_with(Default::default);
        merge_opt!(b, o, enabled, severity, pending, repeat);
    }
    for (b, o) in [
        (&mut base.payment_late, &over.payment_late),
        (&mut base.delivery_failed, &over.delivery_failed),
    ] {
        if let Some(o) = o {
            let b = b.get_or_insert_with(Default::default);
            merge_opt!(b, o, enabled, severity, pending, repeat);
        }
    }
    if let Some(o) = &over.unpaid_order {
        let b = base.unpaid_order.get_or_insert_with(Default::default);
        merge_opt!(
            b,
            o,
            enabled,
            before_deadline,
            after,
            severity,
            pending,
            repeat
        );
    }
    for (b, o) in [
        (&mut base.poll_failed, &over.poll_failed),
        (&mut base.unallocated_funds, &over.unallocated_funds),
        (&mut base.stale_balance, &over.stale_balance),
    ] {
        if let Some(o) = o {
            let b = b.get_or_insert_with(Default::default);
            merge_opt!(b, o, enabled, after, severity, pending, repeat);
        }
    }
}

const FOUR_HOURS: i64 = 4;

pub(super) fn build_rules(issues: &mut Issues<'_>, raw: &RawRules, currency: Currency) -> RuleSet {
    let repeat = Some(Duration::hours(FOUR_HOURS));
    let simple = |issues: &mut Issues<'_>, name, raw: &Option<RawSimple>, severity| {
        simple(issues, name, raw.as_ref(), severity, repeat)
    };
    RuleSet {
        low_balance: low_balance(issues, raw.low_balance.as_ref(), currency, repeat),
        runway: runway(issues, raw.runway.as_ref()),
        expiring: expiring(issues, raw.expiring.as_ref()),
        autorenew_at_risk: autorenew_at_risk(issues, raw.autorenew_at_risk.as_ref(), repeat),
        autorenew_failed: simple(
            issues,
            "autorenew_failed",
            &raw.autorenew_failed,
            Severity::A,
        ),
        unpaid_order: unpaid_order(issues, raw.unpaid_order.as_ref(), repeat),
        poll_failed: poll_failed(issues, raw.poll_failed.as_ref(), repeat),
        // Allocating is a minute's work once someone knows.
        unallocated_funds: lasting(
            issues,
            "unallocated_funds",
            raw.unallocated_funds.as_ref(),
            (Duration::hours(1), Severity::C, repeat),
        ),
        payment_late: simple(issues, "payment_late", &raw.payment_late, Severity::B),
        delivery_failed: delivery_failed(issues, raw.delivery_failed.as_ref(), repeat),
        calendar_expiring: simple(
            issues,
            "calendar_expiring",
            &raw.calendar_expiring,
            Severity::C,
        ),
        // A weekly reading keeps the estimate close to the portal.
        stale_balance: lasting(
            issues,
            "stale_balance",
            raw.stale_balance.as_ref(),
            (Duration::days(7), Severity::C, Some(Duration::days(1))),
        ),
    }
}

fn low_balance(
    issues: &mut Issues<'_>,
    raw: Option<&RawLowBalance>,
    currency: Currency,
    repeat: Option<Duration>,
) -> LowBalance {
    let lb = raw.cloned().unwrap_or_default();
    let mut tiers: Vec<AmountTier> = match &lb.tiers {
        // Defaults from the seed: warn at ¥3,000 (payment takes days), critical at ¥500.
        None => vec![
            AmountTier {
                below: Money::new(Decimal::from(500), currency),
                severity: Severity::A,
            },
            AmountTier {
                below: Money::new(Decimal::from(3000), currency),
                severity: Severity::B,
            },
        ],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, t)| AmountTier {
                below: money(
                    issues,
                    &format!("rules.low_balance.tiers[{i}].below"),
                    &t.below,
                    currency,
                ),
                severity: severity(
                    issues,
                    &format!("rules.low_balance.tiers[{i}].severity"),
                    &t.severity,
                ),
            })
            .collect(),
    };
    tiers.sort_by_key(|t| t.below.amount());
    let margin = match &lb.margin {
        Some(m) => money(issues, "rules.low_balance.margin", m, currency),
        None => Money::new(Decimal::from(200), currency),
    };
    LowBalance {
        enabled: lb.enabled.unwrap_or(true),
        tiers,
        margin,
        timing: timing(issues, "low_balance", &lb.pending, &lb.repeat, repeat),
    }
}

fn runway(issues: &mut Issues<'_>, raw: Option<&RawRunway>) -> Runway {
    let rw = raw.cloned().unwrap_or_default();
    let mut tiers: Vec<DaysTier> = match &rw.tiers {
        None => vec![
            DaysTier {
                below_days: Decimal::from(3),
                severity: Severity::A,
            },
            DaysTier {
                below_days: Decimal::from(7),
                severity: Severity::B,
            },
        ],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, t)| DaysTier {
                below_days: days(
                    issues,
                    &format!("rules.runway.tiers[{i}].below_days"),
                    &t.below_days,
                ),
                severity: severity(
                    issues,
                    &format!("rules.runway.tiers[{i}].severity"),
                    &t.severity,
                ),
            })
            .collect(),
    };
    tiers.sort_by_key(|t| t.below_days);
    Runway {
        enabled: rw.enabled.unwrap_or(true),
        tiers,
        margin_days: rw.margin_days.as_ref().map_or(Decimal::ONE, |m| {
            days(issues, "rules.runway.margin_days", m)
        }),
        window: duration(
            issues,
            "rules.runway.window",
            rw.window.as_ref(),
            Duration::days(7),
        ),
        timing: timing(
            issues,
            "runway",
            &rw.pending,
            &rw.repeat,
            Some(Duration::hours(24)),
        ),
    }
}

fn expiring(issues: &mut Issues<'_>, raw: Option<&RawExpiring>) -> Expiring {
    let ex = raw.cloned().unwrap_or_default();
    let mut ladder: Vec<LadderStep> = match &ex.ladder {
        None => [
            (1, Severity::A),
            (3, Severity::B),
            (7, Severity::B),
            (15, Severity::C),
            (30, Severity::C),
        ]
        .into_iter()
        .map(|(days, severity)| LadderStep { days, severity })
        .collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let days = match u32::try_from(*s.days.get_ref()) {
                    Ok(d) if d > 0 => d,
                    _ => {
                        issues.at(
                            &s.days,
                            format!("rules.expiring.ladder[{i}].days"),
                            "must be a whole number of days above zero",
                        );
                        1
                    }
                };
                LadderStep {
                    days,
                    severity: severity(
                        issues,
                        &format!("rules.expiring.ladder[{i}].severity"),
                        &s.severity,
                    ),
                }
            })
            .collect(),
    };
    ladder.sort_by_key(|s| s.days);
    ladder.dedup_by_key(|s| s.days);
    let modes = match &ex.modes {
        None => vec![RenewalMode::Manual],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.get_ref().as_str() {
                "manual" => Some(RenewalMode::Manual),
                "auto" => Some(RenewalMode::Auto),
                "expire_without_renewal" => Some(RenewalMode::ExpireWithoutRenewal),
                other => {
                    issues.at(m, format!("rules.expiring.modes[{i}]"), format!("unknown renewal mode {other:?}; use manual, auto or expire_without_renewal"));
                    None
                }
            })
            .collect(),
    };
    Expiring {
        enabled: ex.enabled.unwrap_or(true),
        ladder,
        modes,
        // The ladder is the reminder: one notice per step, not one per poll.
        timing: timing(issues, "expiring", &ex.pending, &ex.repeat, None),
    }
}

fn autorenew_at_risk(
    issues: &mut Issues<'_>,
    raw: Option<&RawAtRisk>,
    repeat: Option<Duration>,
) -> AutorenewAtRisk {
    let ar = raw.cloned().unwrap_or_default();
    AutorenewAtRisk {
        enabled: ar.enabled.unwrap_or(true),
        // Clouds deduct auto-renewals 7 to 9 days before expiry.
        within: duration(
            issues,
            "rules.autorenew_at_risk.within",
            ar.within.as_ref(),
            Duration::days(10),
        ),
        severity: opt_severity(
            issues,
            "rules.autorenew_at_risk.severity",
            ar.severity.as_ref(),
            Severity::B,
        ),
        timing: timing(issues, "autorenew_at_risk", &ar.pending, &ar.repeat, repeat),
    }
}

fn unpaid_order(
    issues: &mut Issues<'_>,
    raw: Option<&RawUnpaid>,
    repeat: Option<Duration>,
) -> UnpaidOrder {
    let up = raw.cloned().unwrap_or_default();
    UnpaidOrder {
        enabled: up.enabled.unwrap_or(true),
        before_deadline: duration(
            issues,
            "rules.unpaid_order.before_deadline",
            up.before_deadline.as_ref(),
            Duration::days(3),
        ),
        // Where the cloud gives no deadline, a day unpaid is worth a word.
        after: duration(
            issues,
            "rules.unpaid_order.after",
            up.after.as_ref(),
            Duration::days(1),
        ),
        severity: opt_severity(
            issues,
            "rules.unpaid_order.severity",
            up.severity.as_ref(),
            Severity::B,
        ),
        timing: timing(issues, "unpaid_order", &up.pending, &up.repeat, repeat),
    }
}

fn poll_failed(
    issues: &mut Issues<'_>,
    raw: Option<&RawLasting>,
    repeat: Option<Duration>,
) -> PollFailed {
    let pf = raw.cloned().unwrap_or_default();
    PollFailed {
        enabled: pf.enabled.unwrap_or(true),
        after: duration(
            issues,
            "rules.poll_failed.after",
            pf.after.as_ref(),
            Duration::minutes(30),
        ),
        severity: opt_severity(
            issues,
            "rules.poll_failed.severity",
            pf.severity.as_ref(),
            Severity::B,
        ),
        timing: timing(issues, "poll_failed", &pf.pending, &pf.repeat, repeat),
    }
}

fn delivery_failed(
    issues: &mut Issues<'_>,
    raw: Option<&RawSimple>,
    repeat: Option<Duration>,
) -> DeliveryFailed {
    let df = raw.cloned().unwrap_or_default();
    DeliveryFailed {
        enabled: df.enabled.unwrap_or(true),
        severity: df.severity.as_ref().map(|s| {
            opt_severity(
                issues,
                "rules.delivery_failed.severity",
                Some(s),
                Severity::B,
            )
        }),
        timing: timing(issues, "delivery_failed", &df.pending, &df.repeat, repeat),
    }
}

/// A rule with one severity: autorenew_failed, payment_late, calendar_expiring.
fn simple(
    issues: &mut Issues<'_>,
    name: &str,
    raw: Option<&RawSimple>,
    default: Severity,
    repeat: Option<Duration>,
) -> Simple {
    let raw = raw.cloned().unwrap_or_default();
    Simple {
        enabled: raw.enabled.unwrap_or(true),
        severity: opt_severity(
            issues,
            &format!("rules.{name}.severity"),
            raw.severity.as_ref(),
            default,
        ),
        timing: timing(issues, name, &raw.pending, &raw.repeat, repeat),
    }
}

pub(super) fn lasting(
    issues: &mut Issues<'_>,
    name: &str,
    raw: Option<&RawLasting>,
    (after, severity, repeat): (Duration, Severity, Option<Duration>),
) -> Lasting {
    let raw = raw.cloned().unwrap_or_default();
    Lasting {
        enabled: raw.enabled.unwrap_or(true),
        after: duration(
            issues,
            &format!("rules.{name}.after"),
            raw.after.as_ref(),
            after,
        ),
        severity: opt_severity(
            issues,
            &format!("rules.{name}.severity"),
            raw.severity.as_ref(),
            severity,
        ),
        timing: timing(issues, name, &raw.pending, &raw.repeat, repeat),
    }
}
