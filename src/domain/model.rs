//! What purser knows about an account: its balance, resources and orders, as one
//! poll saw them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use super::money::Money;

/// Refusal to build an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        value: String,
        max: usize,
    },
    #[error("{kind} {value:?} may contain only {allowed}")]
    BadChar {
        kind: &'static str,
        value: String,
        allowed: &'static str,
    },
}

/// purser's name for an account, chosen in config: `shop-prod`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(value: &str) -> Result<AccountId, IdError> {
        const ALLOWED: &str = "lower-case letters, digits, '-', '_' and '.'";
        if value.is_empty() {
            return Err(IdError::Empty { kind: "account id" });
        }
        if value.len() > 64 {
            return Err(IdError::TooLong {
                kind: "account id",
                value: value.into(),
                max: 64,
            });
        }
        let ok = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(IdError::BadChar {
                kind: "account id",
                value: value.into(),
                allowed: ALLOWED,
            });
        }
        Ok(AccountId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AccountId::parse(&value)
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> String {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cloud's own identifier for a resource or an order (`ins-abc123`,
/// `20241022000123`): printable, no spaces, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(value: &str) -> Result<ExternalId, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty {
                kind: "resource or order id",
            });
        }
        if value.len() > 256 {
            return Err(IdError::TooLong {
                kind: "resource or order id",
                value: value.into(),
                max: 256,
            });
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IdError::BadChar {
                kind: "resource or order id",
                value: value.into(),
                allowed: "printable characters without spaces",
            });
        }
        Ok(ExternalId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ExternalId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ExternalId::parse(&value)
    }
}

impl From<ExternalId> for String {
    fn from(id: ExternalId) -> String {
        id.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free-form labels (`env = "prod"`, `team = "core"`), used to match overrides
/// and, later, routes and silences.
pub type Labels = BTreeMap<String, String>;

/// An account as configured: which provider instance reads it and how it is labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    /// The configured provider instance (not the cloud's name: that stays in config).
    pub provider: String,
    pub site: String,
    pub labels: Labels,
}

/// The money on an account, split the way the cloud splits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// What can be spent now: the figure the cloud suspends service on.
    pub available: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cash: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Money>,
    /// Named balances kept apart from `available`, such as a per-contract balance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Bucket>,
    /// Set when `available` is estimated from a balance a person entered (a
    /// cloud with no balance API): the moment that entry was true. Usage since
    /// is subtracted; top-ups and adjustments since are not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_as_of: Option<DateTime<Utc>>,
}

impl Balance {
    pub fn available_only(available: Money) -> Balance {
        Balance {
            available,
            cash: None,
            credit: None,
            frozen: None,
            owed: None,
            buckets: Vec::new(),
            entered_as_of: None,
        }
    }

    /// Money paid in but not allocated to any contract, if the cloud keeps such.
    pub fn unallocated(&self) -> Option<Money> {
        let mut buckets = self
            .buckets
            .iter()
            .filter(|b| b.kind == BucketKind::Unallocated);
        let first = buckets.next()?.amount;
        buckets.try_fold(first, |sum, b| sum.checked_add(&b.amount).ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    pub kind: BucketKind,
    pub amount: Money,
    /// Set when a person entered it (the portal's reading time): no API
    /// reads it, so it goes stale as the account's entered balance does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketKind {
    /// Money allocated to one service contract.
    Contract,
    /// Money paid in but not yet allocated: it does not keep anything running.
    Unallocated,
    Coupon,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalMode {
    /// The cloud deducts the renewal from the balance before expiry.
    Auto,
    Manual,
    /// Set to lapse on purpose: the cloud stops reminding, and so does purser.
    ExpireWithoutRenewal,
}

impl RenewalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalMode::Auto => "auto",
            RenewalMode::Manual => "manual",
            RenewalMode::ExpireWithoutRenewal => "expire_without_renewal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Active,
    Expired,
    /// Expired and stopped; released for good unless renewed in time.
    Recovery,
    Released,
}

impl ResourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Active => "active",
            ResourceStatus::Expired => "expired",
            ResourceStatus::Recovery => "recovery",
            ResourceStatus::Released => "released",
        }
    }
}

/// A prepaid (subscription) resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub id: ExternalId,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub renewal: RenewalMode,
    pub status: ResourceStatus,
    /// How many months one renewal adds, where the cloud says (auto-renewal
    /// renews for this; one month where it does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_months: Option<u32>,
    /// The price of one renewal (for `renewal_months`), as the cloud's own
    /// price inquiry quoted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_price: Option<Money>,
    /// Why no price could be had, when one was wanted and none was quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<Unpriced>,
}

impl Resource {
    /// The months one renewal adds.
    pub fn period_months(&self) -> u32 {
        self.renewal_months.unwrap_or(1).max(1)
    }

    /// What renewing costs, as far as it is known: `renewal ¥900.00 for 1
    /// month`; `None` when it was never asked.
    pub fn price_text(&self) -> Option<String> {
        let months = self.period_months();
        let period = if months == 1 {
            "1 month".to_owned()
        } else {
            format!("{months} months")
        };
        match (&self.renewal_price, &self.unpriced) {
            (Some(p), _) => Some(format!("renewal {p} for {period}")),
            (None, Some(u)) => Some(match u.last_charge {
                Some(c) => format!(
                    "renewal price unknown, last renewal {} on {}",
                    c.amount,
                    c.at.format("%Y-%m-%d")
                ),
                None => "renewal price unknown".to_owned(),
            }),
            (None, None) => None,
        }
    }
}

/// A resource the cloud would not price: why, and what its ledger last
/// charged for renewing it, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unpriced {
    pub why: String,
    /// The cloud has no price inquiry for it (asking again will not help),
    /// rather than one that failed this time.
    #[serde(default)]
    pub lasting: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_charge: Option<Charge>,
}

/// Money the cloud's ledger shows taken for something, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Charge {
    pub amount: Money,
    pub at: DateTime<Utc>,
}

/// An order placed but not paid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Order {
    pub id: ExternalId,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    /// After this the cloud cancels the order; `None` where the cloud
    /// gives no deadline.
    #[serde(default)]
    pub pay_deadline: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Spending the cloud itself reports (a bill or cost record), preferred over
/// balance deltas for the burn rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedSpend {
    pub per_day: Money,
    /// How many days the figure averages over.
    pub over_days: u32,
}

/// Money that arrived on the account (a top-up), as the cloud records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recharge {
    pub at: DateTime<Utc>,
    pub amount: Money,
}

/// What one successful poll of one account saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub balance: Balance,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub orders: Vec<Order>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<ReportedSpend>,
    /// Top-ups the cloud recorded recently; used to keep them out of the burn rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recharges: Vec<Recharge>,
    /// What the account's snapshots before this one add up to, carried to
    /// it as it is recorded (see `forecast::carry`); `None` as a cloud
    /// answers, and on snapshots recorded before tallies were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
}

/// Sums carried from each of an account's snapshots to the next, so that
/// what was spent over any stretch is the difference of the tallies at its
/// ends, not a walk over every poll in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// When the chain of tallies this one belongs to began: the first
    /// snapshot tallied with no tallied one before it. Tallies of different
    /// chains are not comparable.
    pub chain: DateTime<Utc>,
    /// Spent since `spent_since`, as the burn rate counts it: the balance's
    /// falls, with recorded top-ups added back. In the snapshot's currency.
    #[serde(with = "rust_decimal::serde::str")]
    pub spent: Decimal,
    /// When `spent` began counting: the chain's start, or the last change
    /// of currency after it.
    pub spent_since: DateTime<Utc>,
    /// Since when money has sat unallocated without a break, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unallocated_since: Option<DateTime<Utc>>,
}

/// A balance a person read off a portal and entered, for a cloud with no
/// balance API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceEntry {
    /// The part of the account entered; `None`: its available balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<EnteredBucket>,
    pub amount: Money,
    /// When the balance was what was entered (the portal's reading time).
    pub as_of: DateTime<Utc>,
    pub entered_by: String,
    pub entered_at: DateTime<Utc>,
}

/// What kind of failure a poll met, as far as the rules and people care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The provider refused the key, its permissions or the request's clock:
    /// a person must act, and waiting will not help.
    Refused,
    /// No answer, or not in time, or throttled past the retries.
    Unreachable,
    /// The provider understood and said no.
    Rejected,
    /// An answer without the documented shape.
    Malformed,
    /// purser itself failed while reading or judging the account (a fault in
    /// purser, not in the cloud): it cannot watch the account until fixed.
    Internal,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Rejected => "rejected",
            FailureKind::Malformed => "malformed",
            FailureKind::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<FailureKind> {
        [
            FailureKind::Refused,
            FailureKind::Unreachable,
            FailureKind::Rejected,
            FailureKind::Malformed,
            FailureKind::Internal,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Why the latest poll of an account failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl fmt::Display for PollFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How reading one account has been going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollHealth {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Set while the latest attempt failed: why.
    pub last_error: Option<PollFailure>,
    pub consecutive_failures: u32,
}

impl PollHealth {
    pub fn new() -> PollHealth {
        PollHealth {
            last_success_at: None,
            last_attempt_at: None,
            last_error: None,
            consecutive_failures: 0,
        }
    }

    pub fn succeeded(&mut self, at: DateTime<Utc>) {
        self.last_success_at = Some(at);
        self.last_attempt_at = Some(at);
        self.last_error = None;
        self.consecutive_failures = 0;
    }

    pub fn failed(&mut self, at: DateTime<Utc>, error: PollFailure) {
        self.last_attempt_at = Some(at);
        self.last_error = Some(error);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }
}

impl Default for PollHealth {
    fn default() -> Self {
        PollHealth::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_checked() {
        assert!(AccountId::parse("shop-prod").is_ok());
        assert!(matches!(AccountId::parse(""), Err(IdError::Empty { .. })));
        assert!(matches!(
            AccountId::parse("Shop Prod"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            AccountId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn external_ids_refuse_spaces() {
        assert!(ExternalId::parse("ins-abc123").is_ok());
        assert!(ExternalId::parse("i abc").is_err());
        assert!(ExternalId::parse("").is_err());
    }
}

/// Which part of an account a hand entry is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnteredBucket {
    /// A service contract, by its number (`COC-2024-7891`).
    Contract(String),
    /// Money paid in and not yet allocated to a contract.
    Unallocated,
}

impl EnteredBucket {
    /// A contract by its number as the portal shows it.
    pub fn contract(number: &str) -> Result<EnteredBucket, String> {
        let n = number.trim();
        if n.is_empty() {
            return Err("give the contract's number, e.g. contract=COC-2024-7891".into());
        }
        if n.len() > 64 || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{n:?} is not a contract number: at most 64 characters, no spaces"
            ));
        }
        if n.eq_ignore_ascii_case("unallocated") {
            return Ok(EnteredBucket::Unallocated);
        }
        Ok(EnteredBucket::Contract(n.to_owned()))
    }

    pub fn kind(&self) -> BucketKind {
        match self {
            EnteredBucket::Contract(_) => BucketKind::Contract,
            EnteredBucket::Unallocated => BucketKind::Unallocated,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            EnteredBucket::Contract(n) => n,
            EnteredBucket::Unallocated => "unallocated",
        }
    }

    /// `contract COC-2024-7891`, `unallocated money`.
    pub fn describe(&self) -> String {
        match self {
            EnteredBucket::Contract(n) => format!("contract {n}"),
            EnteredBucket::Unallocated => "unallocated money".into(),
        }
    }
}

impl Balance {
    /// Lays hand-entered contract and unallocated balances over what the
    /// cloud reported: an entry replaces the part of the same name.
    pub fn with_entries(&mut self, entries: &[BalanceEntry]) {
        for e in entries {
            let Some(b) = &e.bucket else { continue };
            let entered = Bucket {
                name: b.name().to_owned(),
                kind: b.kind(),
                amount: e.amount,
                entered_as_of: Some(e.as_of),
            };
            match self
                .buckets
                .iter_mut()
                .find(|x| x.kind == entered.kind && x.name == entered.name)
            {
                Some(x) => *x = entered,
                None => self.buckets.push(entered),
            }
        }
    }
}

#[cfg(test)]
mod entered_tests {
    use super::EnteredBucket;

    #[test]
    fn a_contract_number_is_checked_and_unallocated_is_its_own_part() {
        assert_eq!(
            EnteredBucket::contract(" COC-2024-7891 "),
            Ok(EnteredBucket::Contract("COC-2024-7891".into()))
        );
        assert_eq!(
            EnteredBucket::contract("Unallocated"),
            Ok(EnteredBucket::Unallocated)
        );
        assert!(
            EnteredBucket::contract("")
                .unwrap_err()
                .contains("give the contract's number")
        );
        assert!(
            EnteredBucket::contract("COC 1")
                .unwrap_err()
                .contains("no spaces")
        );
        assert!(EnteredBucket::contract(&"x".repeat(65)).is_err());
    }
}
