//! The rules about time running out: resources expiring, auto-renewals at
//! risk or failed, and purser's own holiday calendar.

use chrono::{DateTime, Duration, Utc};

use super::{
    AutorenewAtRisk, CALENDAR_NOTICE_DAYS, Expiring, Finding, Level, RuleName, SELF, Simple, key,
    tiered,
};
use crate::domain::model::{Charge, RenewalMode, Resource, ResourceStatus, Snapshot};
use crate::domain::money::Money;

/// Whole days left, rounded down; negative once past.
fn days_left(until: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (until - now).num_seconds().div_euclid(86_400)
}

fn describe(r: &Resource) -> String {
    match &r.name {
        Some(name) => format!("{} {} ({name})", r.product, r.id),
        None => format!("{} {}", r.product, r.id),
    }
}

pub(super) fn expiring(
    rule: &Expiring,
    account: &str,
    snap: &Snapshot,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    for r in &snap.resources {
        if !rule.modes.contains(&r.renewal) || r.status == ResourceStatus::Released {
            continue;
        }
        let reached = |days: u32| r.expires_at - now <= Duration::days(i64::from(days));
        // Most resources are far from every step: nothing to say about them,
        // so nothing to format.
        if !rule.ladder.iter().any(|step| reached(step.days)) {
            continue;
        }
        let left = days_left(r.expires_at, now);
        let when = if r.expires_at <= now {
            format!(
                "expired {} days ago, now {}",
                (now - r.expires_at).num_days(),
                r.status.as_str()
            )
        } else {
            format!(
                "expires in {left} days ({})",
                r.expires_at.format("%Y-%m-%d %H:%M UTC")
            )
        };
        let mut summary = format!("{} ({} renewal) {when}", describe(r), r.renewal.as_str());
        if let Some(price) = r.price_text() {
            summary.push_str(&format!("; {price}"));
        }
        let tiers = rule.ladder.iter().map(|step| {
            (
                key(
                    RuleName::Expiring,
                    account,
                    r.id.as_str(),
                    format!("{}d", step.days),
                ),
                step.severity,
                reached(step.days).then_some(true),
                summary.clone(),
            )
        });
        tiered(tiers, out);
    }
}

/// `calendar_expiring`: from 30 days before the last year the holiday file
/// covers ends (and once it has), working hours would count the coming
/// holidays as working days. `covers` is empty without a holiday file.
pub fn calendar_expiring(
    rule: &Simple,
    covers: &[i32],
    file: &str,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<Finding> {
    use chrono::{Datelike, TimeZone};
    let last = *covers.iter().max()?;
    if !rule.enabled {
        return None;
    }
    let local = now.with_timezone(&zone);
    let year = local.year();
    let ends = zone
        .with_ymd_and_hms(last.checked_add(1)?, 1, 1, 0, 0, 0)
        .earliest()?
        .with_timezone(&Utc);
    let summary = if !covers.contains(&year) {
        format!(
            "the holiday calendar {file} covers {}, not {year}: response clocks count {year}'s holidays as working days; \
             add {year} to it (the State Council's General Office publishes each year's schedule, usually in November)",
            covers
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if ends - now <= Duration::days(CALENDAR_NOTICE_DAYS) {
        let next = last + 1;
        format!(
            "the holiday calendar {file} ends with {last}, in {} days: add {next}'s holidays and make-up working days \
             (the State Council's General Office publishes them, usually in November), or response clocks will count them as working days",
            (ends - now).num_days()
        )
    } else {
        return None;
    };
    Some(Finding {
        key: key(RuleName::CalendarExpiring, SELF, file, String::new()),
        severity: rule.severity,
        level: Level::Breach,
        rank: 1,
        summary,
    })
}

/// Whether `r` auto-renews within `within` of `now`: a renewal the cloud
/// will deduct soon, so its price matters now.
pub fn renews_within(r: &Resource, within: Duration, now: DateTime<Utc>) -> bool {
    r.renewal == RenewalMode::Auto
        && r.status == ResourceStatus::Active
        && r.expires_at > now
        && r.expires_at - now <= within
}

/// What one due renewal will cost, as far as purser can tell.
enum Cost {
    /// The cloud's own quote.
    Quoted(Money),
    /// No quote; the ledger's last renewal charge stands in for it.
    LastCharged(Charge),
    Unknown,
}

pub(super) fn autorenew_at_risk(
    rule: &AutorenewAtRisk,
    account: &str,
    snap: &Snapshot,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let available = &snap.balance.available;
    let mut due: Vec<&Resource> = snap
        .resources
        .iter()
        .filter(|r| renews_within(r, rule.within, now))
        .collect();
    // The cloud deducts renewals in the order they fall due, each only if
    // what is left covers it: an earlier one that fails takes nothing.
    due.sort_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)));
    let mut left = *available;
    for r in due {
        let cost = match (
            r.renewal_price,
            r.unpriced.as_ref().and_then(|u| u.last_charge),
        ) {
            (Some(p), _) => Cost::Quoted(p),
            (None, Some(c)) => Cost::LastCharged(c),
            (None, None) => Cost::Unknown,
        };
        let renews = format!(
            "{} auto-renews in {} days",
            describe(r),
            days_left(r.expires_at, now)
        );
        let why = r
            .unpriced
            .as_ref()
            .map_or("the cloud gave no price", |u| u.why.as_str());
        let price = match cost {
            Cost::Quoted(p) => p,
            Cost::LastCharged(c) => c.amount,
            Cost::Unknown => {
                out.push(at_risk(rule, account, r, format!(
                    "{renews}, but its renewal price is unknown ({why}) and no earlier renewal charge was found: \
                     purser cannot tell whether the available balance {available} covers it; check the price in the console"
                )));
                continue;
            }
        };
        let covered = left.checked_cmp(&price).is_ok_and(|o| o.is_ge());
        if covered {
            left = left.checked_sub(&price).unwrap_or(left);
            continue;
        }
        let mut summary = match cost {
            Cost::LastCharged(c) => format!(
                "{renews}; its renewal price is unknown ({why}), but its last renewal cost {price} on {}, \
                 and the available balance is {available}",
                c.at.format("%Y-%m-%d")
            ),
            _ => format!("{renews} for {price}, but the available balance is {available}"),
        };
        if left != *available {
            summary.push_str(&format!(
                ", of which renewals falling due before it take {} and leave {left}",
                available.checked_sub(&left).unwrap_or(*available)
            ));
        }
        out.push(at_risk(rule, account, r, summary));
    }
}

fn at_risk(rule: &AutorenewAtRisk, account: &str, r: &Resource, summary: String) -> Finding {
    Finding {
        key: key(
            RuleName::AutorenewAtRisk,
            account,
            r.id.as_str(),
            String::new(),
        ),
        severity: rule.severity,
        level: Level::Breach,
        rank: 1,
        summary,
    }
}

pub(super) fn autorenew_failed(
    rule: &Simple,
    account: &str,
    snap: &Snapshot,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    for r in &snap.resources {
        if r.renewal != RenewalMode::Auto {
            continue;
        }
        let failed = matches!(r.status, ResourceStatus::Expired | ResourceStatus::Recovery)
            || (r.status == ResourceStatus::Active && r.expires_at <= now);
        if !failed {
            continue;
        }
        let summary = format!(
            "{} was set to auto-renew but is {} since {}: renewal failed, renew it before it is released",
            describe(r),
            match r.status {
                ResourceStatus::Recovery => "in recovery",
                ResourceStatus::Expired => "expired",
                _ => "past expiry",
            },
            r.expires_at.format("%Y-%m-%d %H:%M UTC")
        );
        out.push(Finding {
            key: key(
                RuleName::AutorenewFailed,
                account,
                r.id.as_str(),
                String::new(),
            ),
            severity: rule.severity,
            level: Level::Breach,
            rank: 1,
            summary,
        });
    }
}
