//! Runway: how many days the available balance lasts at the current burn rate.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{BalanceEntry, Snapshot, Tally};
use super::money::{Money, MoneyError};

/// Where a burn rate came from, so output can say how much to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurnSource {
    /// The cloud's own spend records.
    Reported,
    /// Falls of the balance between polls, with known top-ups added back.
    BalanceDeltas,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnRate {
    pub per_day: Money,
    pub source: BurnSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    pub burn: BurnRate,
    /// Days until the available balance reaches zero; `None` when nothing is being spent.
    pub runway_days: Option<Decimal>,
}

/// Observations shorter than this say more about polling noise than about spending.
const MIN_OBSERVED: i64 = 3600;

/// Burn rate from the snapshots of one account (oldest first) over `window`
/// ending at `now`. The cloud's own spend figure in the newest snapshot wins;
/// otherwise the balance's falls are summed, with recorded top-ups added back so
/// that a top-up never makes spending look negative, and rises that no record
/// explains are counted as zero spend.
///
/// When the first snapshot in the window and the newest carry tallies of one
/// chain, the sum is the difference of the two, and the snapshots between
/// them need not be given; otherwise it is walked, and they must be.
pub fn burn_rate(history: &[Snapshot], window: Duration, now: DateTime<Utc>) -> Option<BurnRate> {
    let latest = history.last()?;
    if let Some(spend) = &latest.spend {
        return Some(BurnRate {
            per_day: spend.per_day,
            source: BurnSource::Reported,
        });
    }
    let since = now - window;
    let start = history.partition_point(|s| s.taken_at < since);
    let points = history.get(start..)?;
    let (first, last) = (points.first()?, points.last()?);
    let observed = (last.taken_at - first.taken_at).num_seconds();
    if observed < MIN_OBSERVED {
        return None;
    }
    let currency = last.balance.available.currency();
    let spent = match (&first.tally, &last.tally) {
        (Some(a), Some(b)) if a.chain == b.chain => {
            // A change of currency inside the window leaves no rate, as
            // the walk below finds.
            if b.spent_since > first.taken_at {
                return None;
            }
            b.spent.checked_sub(a.spent)?
        }
        _ => {
            let mut spent = Decimal::ZERO;
            for pair in points.windows(2) {
                spent = spent.checked_add(fall(&pair[0], &pair[1])?)?;
            }
            spent
        }
    };
    let per_day = spent
        .checked_mul(Decimal::from(86_400))?
        .checked_div(Decimal::from(observed))?;
    Some(BurnRate {
        per_day: Money::new(per_day, currency).round_to_minor(),
        source: BurnSource::BalanceDeltas,
    })
}

/// What was spent between two consecutive snapshots: the balance's fall
/// with the top-ups recorded between them added back, or nothing when it
/// rose. `None` when their currencies differ (or a sum would overflow).
fn fall(prev: &Snapshot, cur: &Snapshot) -> Option<Decimal> {
    let currency = cur.balance.available.currency();
    if prev.balance.available.currency() != currency {
        return None;
    }
    // Amounts are bounded where they come in; checked all the same, so
    // that no figure from outside can panic an evaluation.
    let recharged = cur
        .recharges
        .iter()
        .filter(|r| r.at > prev.taken_at && r.at <= cur.taken_at && r.amount.currency() == currency)
        .try_fold(Decimal::ZERO, |sum, r| sum.checked_add(r.amount.amount()))?;
    let fall = prev
        .balance
        .available
        .amount()
        .checked_sub(cur.balance.available.amount())?
        .checked_add(recharged)?;
    Some(fall.max(Decimal::ZERO))
}

fn unallocated(s: &Snapshot) -> bool {
    s.balance.unallocated().is_some_and(|m| m.is_positive())
}

/// The tally of `cur`, carried from `prev`: the account's newest snapshot
/// before it, with that one's own tally. Without a tallied one before it, a
/// chain begins at `cur`. A change of currency, or a sum too large to hold,
/// starts `spent` again. `None` for a snapshot older than `prev` (recorded
/// out of time order): it is left out of the sums, which the next snapshot
/// carries on from `prev`.
pub fn carry(prev: Option<&Snapshot>, cur: &Snapshot) -> Option<Tally> {
    let held = unallocated(cur);
    if prev.is_some_and(|p| p.taken_at > cur.taken_at) {
        return None;
    }
    let Some((prev, tally)) = prev.and_then(|p| Some((p, p.tally.as_ref()?))) else {
        return Some(Tally {
            chain: cur.taken_at,
            spent: Decimal::ZERO,
            spent_since: cur.taken_at,
            unallocated_since: held.then_some(cur.taken_at),
        });
    };
    let (spent, spent_since) = match fall(prev, cur).and_then(|f| tally.spent.checked_add(f)) {
        Some(spent) => (spent, tally.spent_since),
        None => (Decimal::ZERO, cur.taken_at),
    };
    Some(Tally {
        chain: tally.chain,
        spent,
        spent_since,
        unallocated_since: held.then(|| tally.unallocated_since.unwrap_or(cur.taken_at)),
    })
}

/// Since when money has sat unallocated without a break in `history`
/// (oldest first), counting from its first snapshot; `None` when the newest
/// holds none. The newest snapshot's tally answers when it is of one chain
/// with the first; otherwise the snapshots are walked.
pub fn unallocated_since(history: &[Snapshot]) -> Option<DateTime<Utc>> {
    let (first, last) = (history.first()?, history.last()?);
    if !unallocated(last) {
        return None;
    }
    match (&first.tally, &last.tally) {
        (Some(a), Some(b)) if a.chain == b.chain => {
            b.unallocated_since.map(|since| since.max(first.taken_at))
        }
        _ => history
            .iter()
            .rev()
            .take_while(|s| unallocated(s))
            .last()
            .map(|s| s.taken_at),
    }
}

/// Days of runway at `burn` for `available`: zero when the money is already gone,
/// `None` when nothing is being spent.
pub fn runway_days(available: &Money, burn: &BurnRate) -> Option<Decimal> {
    if available.currency() != burn.per_day.currency() {
        return None;
    }
    if available.amount() <= Decimal::ZERO {
        return Some(Decimal::ZERO);
    }
    if burn.per_day.amount() <= Decimal::ZERO {
        return None;
    }
    Some(
        available
            .amount()
            .checked_div(burn.per_day.amount())?
            .round_dp(1),
    )
}

/// What chat answers about the whole fleet need of one account, kept up to
/// date at each evaluation so that they read one row per account instead of
/// each account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// When the latest good snapshot was taken.
    pub taken_at: DateTime<Utc>,
    pub available: Money,
    pub forecast: Option<Forecast>,
}

impl AccountView {
    /// The view of an account's history (oldest first) at `now`; none before
    /// its first good snapshot.
    pub fn of(history: &[Snapshot], window: Duration, now: DateTime<Utc>) -> Option<AccountView> {
        let latest = history.last()?;
        Some(AccountView {
            taken_at: latest.taken_at,
            available: latest.balance.available,
            forecast: forecast(history, window, now),
        })
    }
}

pub fn forecast(history: &[Snapshot], window: Duration, now: DateTime<Utc>) -> Option<Forecast> {
    let burn = burn_rate(history, window, now)?;
    let latest = history.last()?;
    let runway_days = runway_days(&latest.balance.available, &burn);
    Some(Forecast { burn, runway_days })
}

/// The balance now, from one a person entered and the daily costs the cloud
/// reported since: the entry minus what was spent after it. The day of the
/// entry counts for the part of it that was left (costs are daily totals);
/// days before it not at all. Days are UTC dates, as the usage records give them.
pub fn estimate_from_entry(
    entry: &BalanceEntry,
    daily_costs: &[(NaiveDate, Money)],
    now: DateTime<Utc>,
) -> Result<Money, MoneyError> {
    let day_ms = Decimal::from(86_400_000i64);
    let mut spent = Money::zero(entry.amount.currency());
    for (day, cost) in daily_costs {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let end = start + Duration::days(1);
        // The share of the day after the entry and before now.
        let from = start.max(entry.as_of);
        let to = end.min(now);
        if to <= from {
            continue;
        }
        let covered = Decimal::from((to - from).num_milliseconds());
        let elapsed = Decimal::from((end.min(now) - start).num_milliseconds());
        // A day still under way reports what was spent so far: count its spent
        // part pro rata over the time that has passed.
        let share = if elapsed.is_zero() {
            Decimal::ZERO
        } else {
            covered / elapsed.min(day_ms)
        };
        spent = spent.checked_add(&cost.checked_mul(share)?)?;
    }
    Ok(entry.amount.checked_sub(&spent)?.round_to_minor())
}

/// One account's balance history and its forecast to zero: the data of a
/// runway chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunwayChart {
    pub account: String,
    /// Available balance over the runway window, oldest first.
    pub history: Vec<(DateTime<Utc>, Money)>,
    /// Days until zero at the current burn; `None` when nothing is spent.
    pub runway_days: Option<Decimal>,
}

/// The chart of `account` from its snapshots over the runway `window`;
/// none without any.
pub fn runway_chart(
    account: &str,
    window: Duration,
    history: &[Snapshot],
    now: DateTime<Utc>,
) -> Option<RunwayChart> {
    if history.is_empty() {
        return None;
    }
    let f = forecast(history, window, now);
    Some(RunwayChart {
        account: account.to_owned(),
        history: history
            .iter()
            .map(|s| (s.taken_at, s.balance.available))
            .collect(),
        runway_days: f.and_then(|f| f.runway_days),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Balance, Recharge, ReportedSpend};
    use crate::domain::money::Currency;
    use chrono::TimeZone;
    use std::str::FromStr;

    fn cny(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), Currency::Cny)
    }

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(hours)
    }

    fn snap(hours: i64, available: &str) -> Snapshot {
        Snapshot {
            taken_at: t(hours),
            balance: Balance::available_only(cny(available)),
            resources: vec![],
            orders: vec![],
            spend: None,
            recharges: vec![],
            tally: None,
        }
    }

    /// One poll of a made-up history: hours since the one before, the
    /// balance's change in fen, a top-up in fen within the gap, a switch
    /// of currency, unallocated money in fen.
    type Step = (i64, i64, Option<i64>, bool, Option<i64>);

    fn made_up(steps: &[Step]) -> Vec<Snapshot> {
        let (mut at, mut fen, mut currency) = (0i64, 1_000_000i64, Currency::Cny);
        let money = |fen: i64, c| Money::new(Decimal::new(fen, 2), c);
        steps
            .iter()
            .map(|&(gap, change, topup, switch, unallocated)| {
                at += gap;
                fen += change;
                if switch {
                    currency = match currency {
                        Currency::Cny => Currency::Usd,
                        Currency::Usd => Currency::Cny,
                    };
                }
                let mut s = snap(0, "0");
                s.taken_at = t(at) - Duration::minutes(7);
                s.balance = Balance::available_only(money(fen, currency));
                if let Some(u) = unallocated {
                    s.balance.buckets.push(crate::domain::model::Bucket {
                        name: "unallocated".into(),
                        kind: crate::domain::model::BucketKind::Unallocated,
                        amount: money(u, currency),
                        entered_as_of: None,
                    });
                }
                if let Some(topup) = topup {
                    fen += topup;
                    s.balance.available = money(fen, currency);
                    s.recharges.push(Recharge {
                        at: s.taken_at - Duration::minutes(30),
                        amount: money(topup, currency),
                    });
                }
                s
            })
            .collect()
    }

    /// What a store may hand judging of a tallied history: from the
    /// window's start (or the newest), only the first two and the newest
    /// when the first carries a tally.
    fn as_read(tallied: &[Snapshot], since: DateTime<Utc>) -> Vec<Snapshot> {
        let Some(newest) = tallied.last() else {
            return Vec::new();
        };
        let cut = since.min(newest.taken_at);
        let window: Vec<Snapshot> = tallied
            .iter()
            .filter(|s| s.taken_at >= cut)
            .cloned()
            .collect();
        match window.first() {
            Some(first) if first.tally.is_some() && window.len() > 3 => {
                vec![first.clone(), window[1].clone(), newest.clone()]
            }
            _ => window,
        }
    }

    proptest::proptest! {
        #[test]
        fn tallies_give_what_walking_every_poll_gives(
            steps in proptest::collection::vec(
                (
                    1i64..6,
                    -90_000i64..20_000,
                    proptest::option::weighted(0.1, 1i64..500_000),
                    proptest::bool::weighted(0.03),
                    proptest::option::weighted(0.9, 0i64..50_000),
                ),
                1..80,
            ),
            untallied in 0usize..20,
            window_hours in 1i64..200,
        ) {
            let plain = made_up(&steps);
            // The first `untallied` were recorded before tallies were kept.
            let mut tallied = plain.clone();
            for i in untallied.min(tallied.len())..tallied.len() {
                let prev = i.checked_sub(1).map(|p| tallied[p].clone());
                tallied[i].tally = carry(prev.as_ref(), &tallied[i]);
            }
            let now = plain.last().unwrap().taken_at;
            let window = Duration::hours(window_hours);
            let read = as_read(&tallied, now - window);
            let walked = as_read(&plain, now - window);
            proptest::prop_assert_eq!(burn_rate(&read, window, now), burn_rate(&walked, window, now));
            proptest::prop_assert_eq!(burn_rate(&tallied, window, now), burn_rate(&plain, window, now));
            proptest::prop_assert_eq!(unallocated_since(&read), unallocated_since(&walked));
        }
    }

    #[test]
    fn a_snapshot_older_than_the_one_before_carries_no_tally() {
        let a = snap(5, "100");
        let a = Snapshot {
            tally: carry(None, &a),
            ..a
        };
        assert!(carry(Some(&a), &snap(4, "90")).is_none());
        let b = carry(Some(&a), &snap(6, "90")).unwrap();
        assert_eq!((b.chain, b.spent), (t(5), Decimal::from(10)));
    }

    #[test]
    fn burn_from_balance_falls() {
        let h = vec![snap(0, "1000"), snap(12, "950"), snap(24, "900")];
        let b = burn_rate(&h, Duration::days(7), t(24)).unwrap();
        assert_eq!(b.per_day, cny("100"));
        assert_eq!(b.source, BurnSource::BalanceDeltas);
        assert_eq!(runway_days(&cny("900"), &b), Some(Decimal::from(9)));
    }

    #[test]
    fn a_top_up_does_not_make_burn_negative() {
        // 100 a day spent; a 5,000 top-up arrives at hour 12.
        let mut mid = snap(12, "5950");
        mid.recharges.push(Recharge {
            at: t(11),
            amount: cny("5000"),
        });
        let h = vec![snap(0, "1000"), mid, snap(24, "5900")];
        let b = burn_rate(&h, Duration::days(7), t(24)).unwrap();
        assert_eq!(b.per_day, cny("100"));
    }

    #[test]
    fn an_unexplained_rise_counts_as_no_spend() {
        let h = vec![snap(0, "1000"), snap(12, "6000"), snap(24, "5950")];
        let b = burn_rate(&h, Duration::days(7), t(24)).unwrap();
        assert_eq!(b.per_day, cny("50"));
        assert!(b.per_day.amount() >= Decimal::ZERO);
    }

    #[test]
    fn reported_spend_wins() {
        let mut last = snap(24, "900");
        last.spend = Some(ReportedSpend {
            per_day: cny("42"),
            over_days: 7,
        });
        let h = vec![snap(0, "1000"), last];
        let b = burn_rate(&h, Duration::days(7), t(24)).unwrap();
        assert_eq!(
            b,
            BurnRate {
                per_day: cny("42"),
                source: BurnSource::Reported
            }
        );
    }

    #[test]
    fn too_little_history_gives_no_rate() {
        assert_eq!(burn_rate(&[snap(0, "1000")], Duration::days(7), t(0)), None);
        assert_eq!(burn_rate(&[], Duration::days(7), t(0)), None);
        let h = vec![snap(0, "1000"), snap(0, "999")];
        assert_eq!(burn_rate(&h, Duration::days(7), t(0)), None);
    }

    #[test]
    fn only_the_window_counts() {
        // A big fall 10 days ago is outside a 7-day window.
        let h = vec![
            snap(-240, "10000"),
            snap(-200, "1000"),
            snap(0, "990"),
            snap(24, "980"),
        ];
        let b = burn_rate(&h, Duration::days(7), t(24)).unwrap();
        assert_eq!(b.per_day, cny("10"));
    }

    #[test]
    fn runway_edges() {
        let b = BurnRate {
            per_day: cny("100"),
            source: BurnSource::Reported,
        };
        assert_eq!(runway_days(&cny("-5"), &b), Some(Decimal::ZERO));
        assert_eq!(
            runway_days(&cny("250"), &b),
            Some(Decimal::from_str("2.5").unwrap())
        );
        let none = BurnRate {
            per_day: cny("0"),
            source: BurnSource::Reported,
        };
        assert_eq!(runway_days(&cny("250"), &none), None);
    }

    #[test]
    fn an_entered_balance_loses_what_was_spent_after_it() {
        let cny = |v: &str| Money::new(Decimal::from_str(v).unwrap(), Currency::Cny);
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let entry = BalanceEntry {
            bucket: None,
            amount: cny("1000"),
            // A quarter into the 21st.
            as_of: Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap(),
            entered_by: "ops".into(),
            entered_at: Utc.with_ymd_and_hms(2026, 11, 21, 7, 0, 0).unwrap(),
        };
        // Six hours into the 23rd, which has cost 10 so far.
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
        let costs = [
            (day(20), cny("100")),
            (day(21), cny("100")),
            (day(22), cny("100")),
            (day(23), cny("10")),
        ];
        // 1000 − 75 (the last three quarters of the 21st) − 100 − 10.
        assert_eq!(
            estimate_from_entry(&entry, &costs, now)
                .unwrap()
                .amount_string(),
            "815.00"
        );
        // An entry made now, with nothing spent since, stands as it is.
        let fresh = BalanceEntry {
            as_of: now,
            ..entry.clone()
        };
        assert_eq!(
            estimate_from_entry(&fresh, &costs, now)
                .unwrap()
                .amount_string(),
            "1000.00"
        );
        // Costs in another currency are refused, not mixed.
        let usd = [(day(22), Money::new(Decimal::ONE, Currency::Usd))];
        assert!(estimate_from_entry(&entry, &usd, now).is_err());
    }
}
