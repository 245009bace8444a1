//! The seven rules. Each is a pure function of (rule settings, what is known of
//! one account, now) that says which alert conditions hold.

mod expiry;

use expiry::{autorenew_at_risk, autorenew_failed, expiring};
pub use expiry::{calendar_expiring, renews_within};

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::forecast::{self, Forecast};
use super::model::{Account, BucketKind, FailureKind, PollHealth, RenewalMode, Snapshot};
use super::money::Money;

/// Stable rule names, used in config, output and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    LowBalance,
    Runway,
    Expiring,
    AutorenewAtRisk,
    AutorenewFailed,
    UnpaidOrder,
    PollFailed,
    UnallocatedFunds,
    StaleBalance,
    PaymentLate,
    DeliveryFailed,
    /// The holiday calendar is about to run out (or has).
    CalendarExpiring,
}

impl RuleName {
    pub const ALL: [RuleName; 12] = [
        RuleName::LowBalance,
        RuleName::Runway,
        RuleName::Expiring,
        RuleName::AutorenewAtRisk,
        RuleName::AutorenewFailed,
        RuleName::UnpaidOrder,
        RuleName::PollFailed,
        RuleName::UnallocatedFunds,
        RuleName::StaleBalance,
        RuleName::PaymentLate,
        RuleName::DeliveryFailed,
        RuleName::CalendarExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleName::LowBalance => "low_balance",
            RuleName::Runway => "runway",
            RuleName::Expiring => "expiring",
            RuleName::AutorenewAtRisk => "autorenew_at_risk",
            RuleName::AutorenewFailed => "autorenew_failed",
            RuleName::UnpaidOrder => "unpaid_order",
            RuleName::PollFailed => "poll_failed",
            RuleName::UnallocatedFunds => "unallocated_funds",
            RuleName::StaleBalance => "stale_balance",
            RuleName::PaymentLate => "payment_late",
            RuleName::DeliveryFailed => "delivery_failed",
            RuleName::CalendarExpiring => "calendar_expiring",
        }
    }

    pub fn parse(name: &str) -> Option<RuleName> {
        RuleName::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severities after the support model purser's users already know:
/// A critical (2-hour response), B moderate (4 hours), C minimal (8 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    A,
    B,
    C,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::A => "A",
            Severity::B => "B",
            Severity::C => "C",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "A" | "a" => Some(Severity::A),
            "B" | "b" => Some(Severity::B),
            "C" | "c" => Some(Severity::C),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a condition must hold before it fires, and how often a firing
/// alert is repeated (`None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub pending_for: Duration,
    pub repeat_every: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountTier {
    pub below: Money,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaysTier {
    pub below_days: Decimal,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderStep {
    pub days: u32,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowBalance {
    pub enabled: bool,
    /// Most severe (lowest threshold) first.
    pub tiers: Vec<AmountTier>,
    /// Resolve only once the balance is back above the threshold by this much.
    pub margin: Money,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runway {
    pub enabled: bool,
    /// Most severe (fewest days) first.
    pub tiers: Vec<DaysTier>,
    pub margin_days: Decimal,
    /// The span of snapshots the burn rate is averaged over.
    pub window: Duration,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub enabled: bool,
    /// Fewest days (most severe) first.
    pub ladder: Vec<LadderStep>,
    /// Which renewal modes get reminders; auto-renewing resources are covered by
    /// `autorenew_at_risk` instead.
    pub modes: Vec<RenewalMode>,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutorenewAtRisk {
    pub enabled: bool,
    pub within: Duration,
    pub severity: Severity,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simple {
    pub enabled: bool,
    pub severity: Severity,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidOrder {
    pub enabled: bool,
    pub before_deadline: Duration,
    /// For an order with no deadline: how long it may wait unpaid.
    pub after: Duration,
    pub severity: Severity,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollFailed {
    pub enabled: bool,
    /// How long an account may go unread before purser says it is blind.
    pub after: Duration,
    pub severity: Severity,
    pub timing: Timing,
}

/// A condition that must hold for `after` before it is worth an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lasting {
    pub enabled: bool,
    pub after: Duration,
    pub severity: Severity,
    pub timing: Timing,
}

/// The settings of every rule, as they apply to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub low_balance: LowBalance,
    pub runway: Runway,
    pub expiring: Expiring,
    pub autorenew_at_risk: AutorenewAtRisk,
    pub autorenew_failed: Simple,
    pub unpaid_order: UnpaidOrder,
    pub poll_failed: PollFailed,
    /// Money paid in but left unallocated to a contract keeps nothing running.
    pub unallocated_funds: Lasting,
    /// A balance entered by hand this long ago is no longer trusted.
    pub stale_balance: Lasting,
    /// A top-up approved and paid by a person that the cloud has not shown
    /// arriving within the time its payment method takes.
    pub payment_late: Simple,
    /// Notices about the account an output never took, after every attempt.
    pub delivery_failed: DeliveryFailed,
    /// purser's own: the holiday file is about to run out.
    pub calendar_expiring: Simple,
}

/// `delivery_failed`: as severe as the worst notice lost, unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailed {
    pub enabled: bool,
    pub severity: Option<Severity>,
    pub timing: Timing,
}

impl RuleSet {
    pub fn timing(&self, rule: RuleName) -> &Timing {
        match rule {
            RuleName::LowBalance => &self.low_balance.timing,
            RuleName::Runway => &self.runway.timing,
            RuleName::Expiring => &self.expiring.timing,
            RuleName::AutorenewAtRisk => &self.autorenew_at_risk.timing,
            RuleName::AutorenewFailed => &self.autorenew_failed.timing,
            RuleName::UnpaidOrder => &self.unpaid_order.timing,
            RuleName::PollFailed => &self.poll_failed.timing,
            RuleName::UnallocatedFunds => &self.unallocated_funds.timing,
            RuleName::StaleBalance => &self.stale_balance.timing,
            RuleName::PaymentLate => &self.payment_late.timing,
            RuleName::DeliveryFailed => &self.delivery_failed.timing,
            RuleName::CalendarExpiring => &self.calendar_expiring.timing,
        }
    }
}

/// Identifies an alert condition; its fingerprint is derived from this alone,
/// so it stays the same when amounts or summaries change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AlertKey {
    pub rule: RuleName,
    pub account: String,
    /// The resource or order the alert is about; empty for account-wide alerts.
    pub resource: String,
    /// Which threshold or reminder step; empty for untiered rules.
    pub tier: String,
}

impl AlertKey {
    /// The value of label `name` for an alert with this key on `account`:
    /// what silences and routes match on.
    pub fn label<'a>(
        &'a self,
        account: &'a Account,
        severity: &'a str,
        name: &str,
    ) -> Option<&'a str> {
        match name {
            "account" => Some(account.id.as_str()),
            "rule" => Some(self.rule.as_str()),
            "provider" => Some(account.provider.as_str()),
            "site" => Some(account.site.as_str()),
            "severity" => Some(severity),
            "resource" => Some(self.resource.as_str()).filter(|r| !r.is_empty()),
            other => account.labels.get(other).map(String::as_str),
        }
    }

    /// A stable fingerprint: the first 16 hex digits of SHA-256 over the key.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.rule.as_str(),
            &self.account,
            &self.resource,
            &self.tier,
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..8])
    }

    /// Alerts of one group are tiers of the same condition on the same thing.
    pub fn same_group(&self, other: &AlertKey) -> bool {
        self.rule == other.rule && self.account == other.account && self.resource == other.resource
    }
}

/// Whether a condition holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Holds, and is the most severe tier of its group that holds: fire it.
    Breach,
    /// Keep whatever state the alert has, but do not start it and do not repeat it:
    /// a less severe tier while a more severe one holds, or a value inside the
    /// hysteresis margin.
    Hold,
}

/// One condition found to hold (or to be held) for an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub key: AlertKey,
    pub severity: Severity,
    pub level: Level,
    /// Orders tiers inside a group: higher is more severe.
    pub rank: u32,
    pub summary: String,
}

/// Everything the rules may look at for one account.
pub struct AccountState<'a> {
    pub account: &'a Account,
    /// Good snapshots, oldest first; the last is what the rules judge.
    pub history: &'a [Snapshot],
    pub health: &'a PollHealth,
    /// Top-ups approved and waiting for the money to show.
    pub payments: &'a [PendingPayment],
    /// Notices about the account that an output never took.
    pub undelivered: &'a [Undelivered],
}

/// A notice an output never took, after every attempt (kept for a person to
/// resend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub output: String,
    /// The alert the notice was about.
    pub rule: RuleName,
    pub severity: Severity,
    /// What the output said the last time.
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

/// An approved top-up whose money has not been seen yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPayment {
    /// The request, as people name it (`R12`).
    pub request: String,
    pub amount: Money,
    /// The method, as people read it (`Alipay`, `wire transfer`).
    pub method: String,
    /// The reference the payer was asked to quote.
    pub reference: String,
    /// Who owns the task: the person who asked for the top-up, named in
    /// every reminder.
    pub owner: String,
    pub approved_at: DateTime<Utc>,
    /// When the method's money shows at the latest: half an hour online,
    /// days for a wire.
    pub due: DateTime<Utc>,
}

/// What evaluation of one account produced: the conditions, and the forecast
/// it was based on (for display).
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub forecast: Option<Forecast>,
}

pub fn evaluate(rules: &RuleSet, state: &AccountState<'_>, now: DateTime<Utc>) -> Evaluation {
    let mut out = Evaluation::default();
    let account = state.account.id.as_str();
    if rules.poll_failed.enabled {
        poll_failed(
            &rules.poll_failed,
            account,
            state.health,
            now,
            &mut out.findings,
        );
    }
    if rules.delivery_failed.enabled {
        delivery_failed(
            &rules.delivery_failed,
            account,
            state.undelivered,
            &mut out.findings,
        );
    }
    // Needs no snapshot: money that has not arrived is late whatever the cloud says.
    if rules.payment_late.enabled {
        payment_late(
            &rules.payment_late,
            account,
            state.payments,
            now,
            &mut out.findings,
        );
    }
    let Some(latest) = state.history.last() else {
        return out;
    };
    out.forecast = forecast::forecast(state.history, rules.runway.window, now);
    if rules.low_balance.enabled {
        low_balance(&rules.low_balance, account, latest, &mut out.findings);
    }
    if rules.runway.enabled
        && let Some(f) = &out.forecast
    {
        runway(&rules.runway, account, f, &mut out.findings);
    }
    if rules.expiring.enabled {
        expiring(&rules.expiring, account, latest, now, &mut out.findings);
    }
    if rules.autorenew_at_risk.enabled {
        autorenew_at_risk(
            &rules.autorenew_at_risk,
            account,
            latest,
            now,
            &mut out.findings,
        );
    }
    if rules.autorenew_failed.enabled {
        autorenew_failed(
            &rules.autorenew_failed,
            account,
            latest,
            now,
            &mut out.findings,
        );
    }
    if rules.unpaid_order.enabled {
        unpaid_order(&rules.unpaid_order, account, latest, now, &mut out.findings);
    }
    if rules.unallocated_funds.enabled {
        unallocated_funds(
            &rules.unallocated_funds,
            account,
            state.history,
            now,
            &mut out.findings,
        );
    }
    if rules.stale_balance.enabled {
        stale_balance(
            &rules.stale_balance,
            account,
            latest,
            now,
            &mut out.findings,
        );
    }
    out
}

fn key(rule: RuleName, account: &str, resource: &str, tier: String) -> AlertKey {
    AlertKey {
        rule,
        account: account.to_owned(),
        resource: resource.to_owned(),
        tier,
    }
}

/// Marks every tier of a group but the most severe breached one as `Hold`.
/// `tiers` must be ordered most severe first; each entry says whether the tier
/// is breached (`Some(true)`), inside its margin (`Some(false)`), or clear (`None`).
fn tiered(
    tiers: impl Iterator<Item = (AlertKey, Severity, Option<bool>, String)>,
    out: &mut Vec<Finding>,
) {
    let mut breach_taken = false;
    let tiers: Vec<_> = tiers.collect();
    let n = tiers.len() as u32;
    for (i, (key, severity, state, summary)) in tiers.into_iter().enumerate() {
        let Some(breached) = state else { continue };
        let level = if breached && !breach_taken {
            breach_taken = true;
            Level::Breach
        } else {
            Level::Hold
        };
        out.push(Finding {
            key,
            severity,
            level,
            rank: n - i as u32,
            summary,
        });
    }
}

/// The account's balance against the tiers, and each service contract's
/// balance too: a contract that runs dry stops its service whatever the
/// account holds.
fn low_balance(rule: &LowBalance, account: &str, snap: &Snapshot, out: &mut Vec<Finding>) {
    low_balance_of(rule, account, "", &snap.balance.available, out);
    for b in &snap.balance.buckets {
        if b.kind == BucketKind::Contract {
            low_balance_of(rule, account, &b.name, &b.amount, out);
        }
    }
}

fn low_balance_of(
    rule: &LowBalance,
    account: &str,
    contract: &str,
    available: &Money,
    out: &mut Vec<Finding>,
) {
    let tiers = rule.tiers.iter().filter_map(|tier| {
        // A threshold in another currency never matches; config validation
        // refuses that combination, so this is only a guard.
        let below = available.checked_cmp(&tier.below).ok()?.is_lt();
        let release = tier.below.checked_add(&rule.margin).ok()?;
        let in_margin = available.checked_cmp(&release).ok()?.is_lt();
        let state = if below {
            Some(true)
        } else if in_margin {
            Some(false)
        } else {
            None
        };
        let summary = if contract.is_empty() {
            format!("available balance {available} is below {}", tier.below)
        } else {
            format!(
                "contract {contract} balance {available} is below {}; its service stops when it runs out",
                tier.below
            )
        };
        Some((
            key(
                RuleName::LowBalance,
                account,
                contract,
                tier.below.amount_string(),
            ),
            tier.severity,
            state,
            summary,
        ))
    });
    tiered(tiers, out);
}

fn runway(rule: &Runway, account: &str, f: &Forecast, out: &mut Vec<Finding>) {
    let Some(days) = f.runway_days else { return };
    let tiers = rule.tiers.iter().map(|tier| {
        let state = if days < tier.below_days {
            Some(true)
        } else if days < tier.below_days + rule.margin_days {
            Some(false)
        } else {
            None
        };
        let summary = format!(
            "runway {days} days at {}/day, under {} days",
            f.burn.per_day, tier.below_days
        );
        (
            key(
                RuleName::Runway,
                account,
                "",
                format!("{}d", tier.below_days),
            ),
            tier.severity,
            state,
            summary,
        )
    });
    tiered(tiers, out);
}

/// The account name purser's own alerts (about itself, not a cloud
/// account) are kept under.
pub const SELF: &str = "purser";

/// How close to a year's end a holiday calendar without the next year is
/// worth a word: the next year's schedule is published about then.
pub const CALENDAR_NOTICE_DAYS: i64 = 30;

fn unpaid_order(
    rule: &UnpaidOrder,
    account: &str,
    snap: &Snapshot,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    for o in &snap.orders {
        let when = match o.pay_deadline {
            Some(deadline) => {
                if deadline - now > rule.before_deadline {
                    continue;
                }
                let hours = (deadline - now).num_hours();
                if hours >= 0 {
                    format!(
                        "must be paid within {hours} hours (by {})",
                        deadline.format("%Y-%m-%d %H:%M UTC")
                    )
                } else {
                    format!("passed its payment deadline {} hours ago", -hours)
                }
            }
            // No deadline to count down to: its age is what there is.
            None => {
                let waited = now - o.created_at;
                if waited < rule.after {
                    continue;
                }
                format!(
                    "has waited unpaid for {} (since {}); the cloud gives no payment deadline, and may cancel it",
                    age(waited),
                    o.created_at.format("%Y-%m-%d %H:%M UTC")
                )
            }
        };
        let what = if o.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.description)
        };
        out.push(Finding {
            key: key(RuleName::UnpaidOrder, account, o.id.as_str(), String::new()),
            severity: rule.severity,
            level: Level::Breach,
            rank: 1,
            summary: format!("order {}{what} for {} {when}", o.id, o.amount),
        });
    }
}

/// `3 days`, `5 hours`: how long, to the unit that reads well.
fn age(d: Duration) -> String {
    match (d.num_days(), d.num_hours()) {
        (1, _) => "1 day".into(),
        (days, _) if days > 1 => format!("{days} days"),
        (_, 1) => "1 hour".into(),
        (_, hours) => format!("{hours} hours"),
    }
}

/// Unallocated money, once it has sat unallocated for `after`: allocation
/// is a manual step after a top-up, and until it is done the money protects
/// nothing.
fn unallocated_funds(
    rule: &Lasting,
    account: &str,
    history: &[Snapshot],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let Some(amount) = history
        .last()
        .and_then(|s| s.balance.unallocated())
        .filter(|m| m.is_positive())
    else {
        return;
    };
    let since = forecast::unallocated_since(history).unwrap_or(now);
    if now - since < rule.after {
        return;
    }
    out.push(Finding {
        key: key(RuleName::UnallocatedFunds, account, "", String::new()),
        severity: rule.severity,
        level: Level::Breach,
        rank: 1,
        summary: format!(
            "{amount} paid in is not allocated to any contract (since {}); unallocated money \
             does not prevent suspension: allocate it to the contract that needs it",
            since.format("%Y-%m-%d %H:%M UTC")
        ),
    });
}

/// Notices an output never took: one alert per output, as severe as the
/// worst notice lost. It goes to every other output (see routing).
fn delivery_failed(
    rule: &DeliveryFailed,
    account: &str,
    undelivered: &[Undelivered],
    out: &mut Vec<Finding>,
) {
    let mut outputs: Vec<&str> = undelivered.iter().map(|u| u.output.as_str()).collect();
    outputs.sort_unstable();
    outputs.dedup();
    for output in outputs {
        let lost: Vec<&Undelivered> = undelivered.iter().filter(|u| u.output == output).collect();
        let Some(last) = lost.iter().max_by_key(|u| u.failed_at) else {
            continue;
        };
        let worst = lost.iter().map(|u| u.severity).min().unwrap_or(Severity::B);
        out.push(Finding {
            key: key(RuleName::DeliveryFailed, account, output, String::new()),
            severity: rule.severity.unwrap_or(worst),
            level: Level::Breach,
            rank: 1,
            summary: format!(
                "{} notice(s) about this account never reached {output} (the last, {}, failed with: {}); \
                 they are kept: see `purser outbox list --failed`, and resend with `purser outbox retry --all` once {output} works",
                lost.len(),
                last.rule,
                last.error
            ),
        });
    }
}

/// A top-up past the time its method takes to arrive: the payment may have
/// failed, gone to the wrong account, or lack the reference.
fn payment_late(
    rule: &Simple,
    account: &str,
    payments: &[PendingPayment],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    for p in payments.iter().filter(|p| now >= p.due) {
        out.push(Finding {
            key: key(RuleName::PaymentLate, account, &p.request, String::new()),
            severity: rule.severity,
            level: Level::Breach,
            rank: 1,
            summary: format!(
                "{}: {} by {} approved at {} has not arrived by {}; {}, check the payment went through to this account, quoting {}",
                p.request,
                p.amount,
                p.method,
                p.approved_at.format("%Y-%m-%d %H:%M UTC"),
                p.due.format("%Y-%m-%d %H:%M UTC"),
                p.owner,
                p.reference
            ),
        });
    }
}

/// A balance estimated from a person's entry, once the entry is `after` old.
fn stale_balance(
    rule: &Lasting,
    account: &str,
    snap: &Snapshot,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    for b in &snap.balance.buckets {
        let Some(as_of) = b.entered_as_of.filter(|at| now - *at >= rule.after) else {
            continue;
        };
        let what = match b.kind {
            BucketKind::Contract => format!("contract {}", b.name),
            BucketKind::Unallocated => "the unallocated money".to_owned(),
            _ => b.name.clone(),
        };
        out.push(Finding {
            key: key(RuleName::StaleBalance, account, &b.name, String::new()),
            severity: rule.severity,
            level: Level::Breach,
            rank: 1,
            summary: format!(
                "{what} was last entered {} days ago (as of {}), at {}; no API reads it: enter the portal's figure again",
                (now - as_of + Duration::hours(12)).num_days(),
                as_of.format("%Y-%m-%d %H:%M UTC"),
                b.amount
            ),
        });
    }
    let Some(as_of) = snap.balance.entered_as_of else {
        return;
    };
    if now - as_of < rule.after {
        return;
    }
    out.push(Finding {
        key: key(RuleName::StaleBalance, account, "", String::new()),
        severity: rule.severity,
        level: Level::Breach,
        rank: 1,
        summary: format!(
            "the balance was last entered {} days ago (as of {}); purser subtracts usage since, \
             but cannot see top-ups or adjustments: enter the portal's balance again",
            // Nearest whole day: "9 days" whether read a second early or late.
            (now - as_of + Duration::hours(12)).num_days(),
            as_of.format("%Y-%m-%d %H:%M UTC")
        ),
    });
}

fn poll_failed(
    rule: &PollFailed,
    account: &str,
    health: &PollHealth,
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let Some(error) = &health.last_error else {
        return;
    };
    // A refused key will not mend itself: say so at once, not after the grace
    // period. Never read at all: purser knows nothing, so it is blind now.
    let refused = error.kind == FailureKind::Refused;
    let internal = error.kind == FailureKind::Internal;
    let blind_for = health.last_success_at.map(|t| now - t);
    if !refused && !internal && blind_for.is_some_and(|d| d < rule.after) {
        return;
    }
    let since = match health.last_success_at {
        Some(t) => format!(
            "not read since {} ({} minutes)",
            t.format("%Y-%m-%d %H:%M UTC"),
            (now - t).num_minutes()
        ),
        None => "never read successfully".to_owned(),
    };
    out.push(Finding {
        key: key(RuleName::PollFailed, account, "", String::new()),
        severity: rule.severity,
        level: Level::Breach,
        rank: 1,
        summary: if internal {
            format!(
                "purser failed while judging this account ({since}): {error}. \
                 Its alerts cannot be trusted until this is fixed; the log has the details"
            )
        } else if refused {
            format!(
                "the provider refuses purser's key for this account ({since}): {error}. \
                 Waiting will not help: fix the key or its permissions"
            )
        } else {
            format!(
                "purser is blind to this account: {since}; failed attempts: {}; last error: {error}",
                health.consecutive_failures
            )
        },
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::model::{
        Balance, Bucket, Charge, ExternalId, Labels, Order, PollFailure, ReportedSpend, Resource,
        ResourceStatus, Unpriced,
    };
    use crate::domain::money::Currency;
    use chrono::TimeZone;
    use std::str::FromStr;

    pub fn cny(s: &str) -> Money {
        Money::parse(s, Currency::Cny).unwrap()
    }

    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    }

    fn timing(repeat: Option<i64>) -> Timing {
        Timing {
            pending_for: Duration::zero(),
            repeat_every: repeat.map(Duration::hours),
        }
    }

    pub fn rules() -> RuleSet {
        RuleSet {
            low_balance: LowBalance {
                enabled: true,
                tiers: vec![
                    AmountTier {
                        below: cny("500"),
                        severity: Severity::A,
                    },
                    AmountTier {
                        below: cny("3000"),
                        severity: Severity::B,
                    },
                ],
                margin: cny("200"),
                timing: timing(Some(4)),
            },
            runway: Runway {
                enabled: true,
                tiers: vec![
                    DaysTier {
                        below_days: Decimal::from(3),
                        severity: Severity::A,
                    },
                    DaysTier {
                        below_days: Decimal::from(7),
                        severity: Severity::B,
                    },
                ],
                margin_days: Decimal::ONE,
                window: Duration::days(7),
                timing: timing(Some(24)),
            },
            expiring: Expiring {
                enabled: true,
                ladder: [1, 3, 7, 15, 30]
                    .map(|days| LadderStep {
                        days,
                        severity: Severity::C,
                    })
                    .to_vec(),
                modes: vec![RenewalMode::Manual],
                timing: timing(None),
            },
            autorenew_at_risk: AutorenewAtRisk {
                enabled: true,
                within: Duration::days(10),
                severity: Severity::B,
                timing: timing(Some(4)),
            },
            autorenew_failed: Simple {
                enabled: true,
                severity: Severity::A,
                timing: timing(Some(4)),
            },
            unpaid_order: UnpaidOrder {
                enabled: true,
                before_deadline: Duration::days(3),
                after: Duration::days(1),
                severity: Severity::B,
                timing: timing(Some(4)),
            },
            poll_failed: PollFailed {
                enabled: true,
                after: Duration::minutes(30),
                severity: Severity::B,
                timing: timing(Some(4)),
            },
            unallocated_funds: Lasting {
                enabled: true,
                after: Duration::hours(1),
                severity: Severity::C,
                timing: timing(Some(4)),
            },
            delivery_failed: DeliveryFailed {
                enabled: true,
                severity: None,
                timing: timing(Some(4)),
            },
            calendar_expiring: Simple {
                enabled: true,
                severity: Severity::C,
                timing: timing(None),
            },
            stale_balance: Lasting {
                enabled: true,
                after: Duration::days(7),
                severity: Severity::C,
                timing: timing(Some(24)),
            },
            payment_late: Simple {
                enabled: true,
                severity: Severity::B,
                timing: timing(Some(4)),
            },
        }
    }

    pub fn account() -> Account {
        Account {
            id: crate::domain::model::AccountId::parse("acme").unwrap(),
            provider: "sim".into(),
            site: "cn".into(),
            labels: Labels::new(),
        }
    }

    pub fn snapshot(available: &str) -> Snapshot {
        Snapshot {
            taken_at: now(),
            balance: Balance::available_only(cny(available)),
            resources: vec![],
            orders: vec![],
            spend: None,
            recharges: vec![],
            tally: None,
        }
    }

    fn auto(id: &str, days: i64, price: &str) -> Resource {
        Resource {
            id: ExternalId::parse(id).unwrap(),
            product: "cvm".into(),
            region: None,
            name: None,
            expires_at: now() + Duration::days(days),
            renewal: RenewalMode::Auto,
            status: ResourceStatus::Active,
            renewal_price: Some(cny(price)),
            renewal_months: None,
            unpriced: None,
        }
    }

    fn run(snap: Snapshot, health: &PollHealth) -> Vec<Finding> {
        let account = account();
        let history = [snap];
        evaluate(
            &rules(),
            &AccountState {
                account: &account,
                history: &history,
                health,
                payments: &[],
                undelivered: &[],
            },
            now(),
        )
        .findings
    }

    fn breaches(findings: &[Finding], rule: RuleName) -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.key.rule == rule && f.level == Level::Breach)
            .map(|f| format!("{}:{}", f.key.resource, f.key.tier))
            .collect()
    }

    #[test]
    fn only_the_worst_balance_tier_breaches() {
        let f = run(snapshot("400"), &PollHealth::new());
        assert_eq!(breaches(&f, RuleName::LowBalance), [":500.00"]);
        let held: Vec<_> = f
            .iter()
            .filter(|f| f.level == Level::Hold)
            .map(|f| f.key.tier.clone())
            .collect();
        assert_eq!(held, ["3000.00"]);
        // Inside the margin above the upper tier: held, not breached.
        let f = run(snapshot("3100"), &PollHealth::new());
        assert!(breaches(&f, RuleName::LowBalance).is_empty());
        assert_eq!(
            f.iter()
                .filter(|f| f.key.rule == RuleName::LowBalance)
                .count(),
            1
        );
        assert!(run(snapshot("3200"), &PollHealth::new()).is_empty());
    }

    #[test]
    fn autorenewals_at_risk_in_the_order_the_cloud_deducts_them() {
        // Each fits the balance, but not both: the later one is at risk,
        // and says what the earlier one takes.
        let mut s = snapshot("5000");
        s.resources = vec![
            auto("b", 8, "3000"),
            auto("a", 3, "3000"),
            auto("later", 40, "9000"),
        ];
        let f = run(s, &PollHealth::new());
        assert_eq!(breaches(&f, RuleName::AutorenewAtRisk), ["b:"]);
        let b = f.iter().find(|f| f.key.resource == "b").unwrap();
        assert!(
            b.summary.contains("for ¥3,000.00")
                && b.summary.contains("take ¥3,000.00 and leave ¥2,000.00"),
            "{}",
            b.summary
        );
        let mut s = snapshot("7000");
        s.resources = vec![auto("a", 3, "3000"), auto("b", 8, "3000")];
        assert!(breaches(&run(s, &PollHealth::new()), RuleName::AutorenewAtRisk).is_empty());
        // One beyond the balance fails and takes nothing: the cheaper one
        // after it is still covered.
        let mut s = snapshot("5000");
        s.resources = vec![auto("big", 3, "5000.01"), auto("small", 4, "4000")];
        assert_eq!(
            breaches(&run(s, &PollHealth::new()), RuleName::AutorenewAtRisk),
            ["big:"]
        );
    }

    #[test]
    fn an_unpriced_autorenewal_is_never_skipped() {
        let mut s = snapshot("5000");
        let mut unknown = auto("unknown", 3, "1");
        unknown.renewal_price = None;
        unknown.unpriced = Some(Unpriced {
            why: "the cloud has no price inquiry for cdb".into(),
            lasting: true,
            last_charge: None,
        });
        let mut charged = auto("charged", 4, "1");
        charged.renewal_price = None;
        charged.unpriced = Some(Unpriced {
            why: "the price inquiry failed: throttled".into(),
            lasting: false,
            last_charge: Some(Charge {
                amount: cny("6000"),
                at: "2026-06-01T00:00:00Z".parse().unwrap(),
            }),
        });
        let mut never = auto("never", 5, "1");
        never.renewal_price = None;
        s.resources = vec![unknown, charged, never];
        let f = run(s, &PollHealth::new());
        assert_eq!(
            breaches(&f, RuleName::AutorenewAtRisk),
            ["unknown:", "charged:", "never:"]
        );
        let text = |id: &str| {
            f.iter()
                .find(|f| f.key.resource == id)
                .unwrap()
                .summary
                .clone()
        };
        assert!(
            text("unknown").contains("price is unknown (the cloud has no price inquiry for cdb)")
        );
        assert!(
            text("unknown")
                .contains("cannot tell whether the available balance ¥5,000.00 covers it")
        );
        assert!(
            text("charged").contains("last renewal cost ¥6,000.00 on 2026-06-01"),
            "{}",
            text("charged")
        );
        assert!(text("never").contains("the cloud gave no price"));
    }

    #[test]
    fn an_expiring_resource_breaches_its_nearest_step_and_holds_the_ones_beyond() {
        let mut s = snapshot("90000");
        let manual = |id: &str, hours: i64| Resource {
            renewal: RenewalMode::Manual,
            expires_at: now() + Duration::hours(hours),
            ..auto(id, 0, "100")
        };
        s.resources = vec![
            manual("today", 12),
            manual("week", 24 * 5),
            manual("month", 24 * 30),
            manual("later", 24 * 31),
            Resource {
                status: ResourceStatus::Released,
                ..manual("released", 12)
            },
            auto("renews", 2, "100"),
        ];
        let f = run(s, &PollHealth::new());
        assert_eq!(
            breaches(&f, RuleName::Expiring),
            ["today:1d", "week:7d", "month:30d"]
        );
        let mut held: Vec<String> = f
            .iter()
            .filter(|f| f.key.rule == RuleName::Expiring && f.level == Level::Hold)
            .map(|f| format!("{}:{}", f.key.resource, f.key.tier))
            .collect();
        held.sort();
        assert_eq!(
            held,
            [
                "today:15d",
                "today:30d",
                "today:3d",
                "today:7d",
                "week:15d",
                "week:30d"
            ]
        );
        let today = f
            .iter()
            .find(|f| f.key.resource == "today" && f.level == Level::Breach)
            .unwrap();
        assert!(
            today.summary.contains("expires in 0 days")
                && today.summary.contains("renewal ¥100.00"),
            "{}",
            today.summary
        );
    }

    #[test]
    fn an_auto_renewal_past_expiry_has_failed() {
        let mut s = snapshot("90000");
        let mut r = auto("gone", -1, "100");
        s.resources = vec![r.clone()];
        assert_eq!(
            breaches(
                &run(s.clone(), &PollHealth::new()),
                RuleName::AutorenewFailed
            ),
            ["gone:"]
        );
        r.status = ResourceStatus::Recovery;
        r.expires_at = now() + Duration::days(1);
        s.resources = vec![r];
        assert_eq!(
            breaches(&run(s, &PollHealth::new()), RuleName::AutorenewFailed),
            ["gone:"]
        );
    }

    #[test]
    fn orders_near_their_deadline() {
        let mut s = snapshot("90000");
        let order = |id: &str, hours: i64| Order {
            id: ExternalId::parse(id).unwrap(),
            amount: cny("100"),
            created_at: now() - Duration::days(5),
            pay_deadline: Some(now() + Duration::hours(hours)),
            description: String::new(),
        };
        s.orders = vec![order("soon", 47), order("later", 24 * 5)];
        assert_eq!(
            breaches(&run(s, &PollHealth::new()), RuleName::UnpaidOrder),
            ["soon:"]
        );
    }

    #[test]
    fn an_order_with_no_deadline_alerts_on_its_age_and_says_so() {
        let mut s = snapshot("90000");
        let order = |id: &str, hours: i64| Order {
            id: ExternalId::parse(id).unwrap(),
            amount: cny("170"),
            created_at: now() - Duration::hours(hours),
            pay_deadline: None,
            description: "renew p_cvm".into(),
        };
        s.orders = vec![order("fresh", 5), order("old", 24 * 3 + 2)];
        let f = run(s, &PollHealth::new());
        assert_eq!(breaches(&f, RuleName::UnpaidOrder), ["old:"]);
        let old = f.iter().find(|f| f.key.resource == "old").unwrap();
        assert!(
            old.summary.contains("has waited unpaid for 3 days")
                && old.summary.contains("the cloud gives no payment deadline"),
            "{}",
            old.summary
        );
    }

    #[test]
    fn a_holiday_calendar_running_out_is_said_from_thirty_days_before() {
        use chrono_tz::Asia::Shanghai;
        let rule = Simple {
            enabled: true,
            severity: Severity::C,
            timing: timing(None),
        };
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let file = "calendars/cn-2026.toml";
        // 2 December in Beijing: 30 days before 2027 begins there.
        assert!(
            calendar_expiring(&rule, &[2026], file, Shanghai, at("2026-11-30T15:00:00Z")).is_none()
        );
        let f =
            calendar_expiring(&rule, &[2026], file, Shanghai, at("2026-12-02T16:00:00Z")).unwrap();
        assert_eq!(f.key.account, SELF);
        assert_eq!(f.key.rule, RuleName::CalendarExpiring);
        assert_eq!(f.severity, Severity::C);
        assert!(
            f.summary
                .contains("calendars/cn-2026.toml ends with 2026, in 29 days: add 2027's holidays"),
            "{}",
            f.summary
        );
        // The next year covered: nothing to say.
        assert!(
            calendar_expiring(
                &rule,
                &[2026, 2027],
                file,
                Shanghai,
                at("2026-12-20T00:00:00Z")
            )
            .is_none()
        );
        // Past it: working hours already count holidays as working days.
        let f =
            calendar_expiring(&rule, &[2026], file, Shanghai, at("2027-01-05T00:00:00Z")).unwrap();
        assert!(f.summary.contains("covers 2026, not 2027"), "{}", f.summary);
        // No holiday file, or the rule off: nothing.
        assert!(
            calendar_expiring(&rule, &[], file, Shanghai, at("2027-01-05T00:00:00Z")).is_none()
        );
        let off = Simple {
            enabled: false,
            ..rule
        };
        assert!(
            calendar_expiring(&off, &[2026], file, Shanghai, at("2027-01-05T00:00:00Z")).is_none()
        );
    }

    #[test]
    fn runway_from_reported_spend() {
        let mut s = snapshot("1000");
        s.spend = Some(ReportedSpend {
            per_day: cny("400"),
            over_days: 7,
        });
        let f = run(s, &PollHealth::new());
        assert_eq!(breaches(&f, RuleName::Runway), [":3d"]);
        assert!(f.iter().any(|f| f.summary.contains("runway 2.5 days")));
    }

    #[test]
    fn blindness_has_a_grace_period_once_read() {
        let mut h = PollHealth::new();
        h.succeeded(now() - Duration::minutes(20));
        h.failed(now(), failure(FailureKind::Unreachable, "timeout"));
        assert!(breaches(&run(snapshot("90000"), &h), RuleName::PollFailed).is_empty());
        h.last_success_at = Some(now() - Duration::minutes(31));
        assert_eq!(
            breaches(&run(snapshot("90000"), &h), RuleName::PollFailed),
            [":"]
        );
        // Never read at all: blind now.
        let mut never = PollHealth::new();
        never.failed(
            now(),
            failure(FailureKind::Unreachable, "connection refused"),
        );
        let account = account();
        let f = evaluate(
            &rules(),
            &AccountState {
                account: &account,
                history: &[],
                health: &never,
                payments: &[],
                undelivered: &[],
            },
            now(),
        )
        .findings;
        assert_eq!(breaches(&f, RuleName::PollFailed), [":"]);
    }

    fn with_buckets(
        available: &str,
        at: DateTime<Utc>,
        buckets: &[(&str, BucketKind, &str)],
    ) -> Snapshot {
        let mut s = snapshot(available);
        s.taken_at = at;
        s.balance.buckets = buckets
            .iter()
            .map(|(name, kind, amount)| Bucket {
                name: (*name).into(),
                kind: *kind,
                amount: cny(amount),
                entered_as_of: None,
            })
            .collect();
        s
    }

    #[test]
    fn a_top_up_not_seen_by_its_methods_pace_is_late() {
        let account = account();
        let pending = PendingPayment {
            request: "R4".into(),
            amount: Money::parse("2,000", crate::domain::money::Currency::Cny).unwrap(),
            method: "Alipay".into(),
            reference: "purser-r4-0123456789abcdef".into(),
            owner: "rex".into(),
            approved_at: now() - Duration::minutes(45),
            due: now() - Duration::minutes(15),
        };
        let judge = |p: &PendingPayment| {
            evaluate(
                &rules(),
                &AccountState {
                    account: &account,
                    history: &[],
                    health: &PollHealth::new(),
                    payments: std::slice::from_ref(p),
                    undelivered: &[],
                },
                now(),
            )
            .findings
        };
        let f = judge(&pending);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key.rule, RuleName::PaymentLate);
        assert_eq!(f[0].key.resource, "R4");
        assert_eq!(f[0].severity, Severity::B);
        assert!(
            f[0].summary.contains(
                "; rex, check the payment went through to this account, quoting purser-r4-0123456789abcdef"
            ),
            "{}",
            f[0].summary
        );
        // Not yet due: a wire still has days.
        let wire = PendingPayment {
            due: now() + Duration::days(4),
            ..pending
        };
        assert!(judge(&wire).is_empty());
    }

    fn judge(history: &[Snapshot]) -> Vec<Finding> {
        let account = account();
        evaluate(
            &rules(),
            &AccountState {
                account: &account,
                history,
                health: &PollHealth::new(),
                payments: &[],
                undelivered: &[],
            },
            now(),
        )
        .findings
    }

    #[test]
    fn a_low_contract_balance_alerts_on_its_own() {
        // The account is rich; the contract is not.
        let s = with_buckets(
            "90000",
            now(),
            &[
                ("COC-2024-7891", BucketKind::Contract, "400"),
                ("SecOps-1", BucketKind::Contract, "20000"),
            ],
        );
        let f = judge(&[s]);
        assert_eq!(breaches(&f, RuleName::LowBalance), ["COC-2024-7891:500.00"]);
        let summary = &f
            .iter()
            .find(|f| f.level == Level::Breach && f.key.rule == RuleName::LowBalance)
            .unwrap()
            .summary;
        assert!(summary.contains("contract COC-2024-7891"), "{summary}");
    }

    #[test]
    fn unallocated_money_alerts_once_it_has_sat_for_an_hour() {
        let unalloc = |at: DateTime<Utc>, amount: &str| {
            with_buckets(
                "90000",
                at,
                &[
                    ("COC-2024-7891", BucketKind::Contract, "9000"),
                    ("unallocated", BucketKind::Unallocated, amount),
                ],
            )
        };
        // Paid in 40 minutes ago: allocation may well be under way.
        let recent = [
            unalloc(now() - Duration::hours(2), "0"),
            unalloc(now() - Duration::minutes(40), "5000"),
            unalloc(now(), "5000"),
        ];
        assert!(breaches(&judge(&recent), RuleName::UnallocatedFunds).is_empty());
        // Still there after 70 minutes: say so.
        let lasting = [
            unalloc(now() - Duration::hours(2), "0"),
            unalloc(now() - Duration::minutes(70), "5000"),
            unalloc(now(), "5000"),
        ];
        let f = judge(&lasting);
        assert_eq!(breaches(&f, RuleName::UnallocatedFunds), [":"]);
        let summary = &f
            .iter()
            .find(|f| f.key.rule == RuleName::UnallocatedFunds)
            .unwrap()
            .summary;
        assert!(
            summary.contains("¥5,000.00") && summary.contains("suspension"),
            "{summary}"
        );
        // Allocated: nothing left to say.
        let allocated = [
            unalloc(now() - Duration::hours(3), "5000"),
            unalloc(now(), "0"),
        ];
        assert!(breaches(&judge(&allocated), RuleName::UnallocatedFunds).is_empty());
    }

    #[test]
    fn a_hand_entered_balance_goes_stale_after_a_week() {
        let mut s = snapshot("9000");
        s.balance.entered_as_of = Some(now() - Duration::days(6));
        assert!(breaches(&judge(std::slice::from_ref(&s)), RuleName::StaleBalance).is_empty());
        s.balance.entered_as_of = Some(now() - Duration::days(8));
        let f = judge(&[s]);
        assert_eq!(breaches(&f, RuleName::StaleBalance), [":"]);
        // A balance read from an API never goes stale this way.
        assert!(breaches(&judge(&[snapshot("9000")]), RuleName::StaleBalance).is_empty());
    }

    fn failure(kind: FailureKind, message: &str) -> PollFailure {
        PollFailure {
            kind,
            message: message.into(),
        }
    }

    #[test]
    fn a_refused_key_alerts_at_once_and_says_why() {
        let mut h = PollHealth::new();
        h.succeeded(now() - Duration::minutes(5));
        h.failed(
            now(),
            failure(
                FailureKind::Refused,
                "UnauthorizedOperation: not authorized; the key needs the permission \
                 billing:DescribeAccountBalance for DescribeAccountBalance",
            ),
        );
        let f = run(snapshot("90000"), &h);
        assert_eq!(breaches(&f, RuleName::PollFailed), [":"]);
        let summary = &f
            .iter()
            .find(|f| f.key.rule == RuleName::PollFailed)
            .unwrap()
            .summary;
        assert!(summary.contains("refuses purser's key"), "{summary}");
        assert!(
            summary.contains("billing:DescribeAccountBalance"),
            "{summary}"
        );
        // The same age with any other failure is still within the grace period.
        h.failed(now(), failure(FailureKind::Malformed, "not JSON"));
        assert!(breaches(&run(snapshot("90000"), &h), RuleName::PollFailed).is_empty());
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let k = |tier: &str| AlertKey {
            rule: RuleName::LowBalance,
            account: "acme".into(),
            resource: String::new(),
            tier: tier.into(),
        };
        assert_eq!(k("500.00").fingerprint(), k("500.00").fingerprint());
        assert_ne!(k("500.00").fingerprint(), k("3000.00").fingerprint());
        // Fields are separated, so shifting text between them changes the print.
        let a = AlertKey {
            rule: RuleName::Expiring,
            account: "ab".into(),
            resource: "c".into(),
            tier: String::new(),
        };
        let b = AlertKey {
            rule: RuleName::Expiring,
            account: "a".into(),
            resource: "bc".into(),
            tier: String::new(),
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(Decimal::from_str("1").unwrap(), Decimal::ONE);
    }
}
