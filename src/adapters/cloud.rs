//! What every cloud adapter shares: one HTTP client, per-API rate limits, the
//! retry policy, reading money out of JSON exactly, and keeping secrets out of
//! error messages. The adapters only build requests and classify answers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::debug;

use super::pace::Pacer;
use crate::domain::money::{Currency, Money};
use crate::ports::{Clock, ProviderError};

/// One answer, as far as classification needs it.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<StdDuration>,
    pub body: Vec<u8>,
}

/// What went wrong with one call, as an adapter classified the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The key is wrong, disabled or lacks a permission. Never retried: some
    /// clouds lock a key after a few failed signatures.
    Auth {
        code: String,
        message: String,
    },
    /// The key is valid but not allowed this action: a permission is missing.
    Denied {
        code: String,
        message: String,
    },
    /// The request's timestamp was refused: this machine's clock is off.
    ClockSkew {
        code: String,
        allowed: &'static str,
    },
    Throttled {
        retry_after: Option<StdDuration>,
    },
    /// Worth another try: a 5xx, an internal error, a dropped connection.
    Transient(String),
    /// No answer in time; retried like a transient failure.
    TimedOut(StdDuration),
    /// The cloud understood and said no (insufficient balance, bad parameter).
    Business {
        code: String,
        message: String,
    },
    /// An answer that does not have the documented shape.
    Malformed(String),
}

impl Failure {
    fn into_error(self, call: &Call<'_>) -> ProviderError {
        match self {
            Failure::Auth { code, message } => ProviderError::Unauthorized(format!(
                "{code}: {message}; check the key id and secret"
            )),
            Failure::Denied { code, message } => ProviderError::Unauthorized(format!(
                "{code}: {message}; the key needs the permission {} for {}",
                call.permission, call.action
            )),
            Failure::ClockSkew { code, allowed } => ProviderError::Unauthorized(format!(
                "{code}: the request's timestamp was refused; this machine's clock is more than \
                 {allowed} off the provider's. Check that NTP is running"
            )),
            Failure::Throttled { retry_after } => ProviderError::RateLimited { retry_after },
            Failure::Transient(m) => ProviderError::Transport(m),
            Failure::TimedOut(d) => ProviderError::Timeout(d),
            Failure::Business { code, message } => ProviderError::Rejected { code, message },
            Failure::Malformed(m) => ProviderError::Malformed(m),
        }
    }
}

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base: StdDuration,
    pub cap: StdDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: StdDuration::from_millis(500),
            cap: StdDuration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1 for the first retry): exponential, capped,
    /// with "equal jitter" — half fixed, half spread by `seed` — so that many
    /// accounts throttled together do not come back together.
    pub fn delay(&self, n: u32, seed: u64) -> StdDuration {
        let chrono =
            |d: StdDuration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        crate::domain::backoff::Backoff {
            first: chrono(self.base),
            cap: chrono(self.cap),
        }
        .jittered(n, seed)
        .to_std()
        .unwrap_or(self.cap)
    }
}

/// Spend the cloud recorded over the last `days` (one total, or each ledger
/// row), as a daily figure. Amounts may come signed either way (a deduction is
/// negative in some ledgers).
pub fn reported_spend(
    amounts: impl IntoIterator<Item = Money>,
    currency: Currency,
    days: i64,
) -> Result<crate::domain::model::ReportedSpend, String> {
    let total = amounts
        .into_iter()
        .try_fold(Money::zero(currency), |sum, m| {
            sum.checked_add(&Money::new(m.amount().abs(), m.currency()))
        })
        .map_err(|e| e.to_string())?;
    let days = days.max(1);
    Ok(crate::domain::model::ReportedSpend {
        per_day: Money::new(total.amount() / Decimal::from(days), currency).round_to_minor(),
        over_days: u32::try_from(days).unwrap_or(u32::MAX),
    })
}

/// A failed change as the executor sees it: refused by the cloud (nothing
/// happened), sent without a usable answer (it may have happened), or not
/// sent at all.
pub fn action_error(e: ProviderError) -> crate::ports::ActionError {
    use crate::ports::ActionError;
    match e {
        ProviderError::Rejected { code, message } => ActionError::Refused { code, message },
        ProviderError::Transport(m) => ActionError::Unknown(m),
        ProviderError::Timeout(d) => ActionError::Unknown(format!("no answer within {d:?}")),
        ProviderError::Malformed(m) => {
            ActionError::Unknown(format!("an answer not understood: {m}"))
        }
        e @ (ProviderError::Unauthorized(_) | ProviderError::RateLimited { .. }) => {
            ActionError::NotSent(e)
        }
    }
}

/// Identifiers in a JSON array, whether the cloud wrote them as strings or
/// as bare numbers (order ids come both ways).
pub fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(text).collect())
        .unwrap_or_default()
}

/// One identifier written as a string or a bare number.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A call that went through: its result, and the cloud's request id where
/// the answer carries one (`RequestId`).
pub fn answered(v: &Value, result: Value) -> crate::ports::CallAnswer {
    crate::ports::CallAnswer {
        request_id: v["RequestId"].as_str().map(str::to_owned),
        code: "OK".into(),
        result,
        effects: Vec::new(),
    }
}

/// A call's success where the cloud gave no request id to quote.
pub fn done(result: Value) -> crate::ports::CallAnswer {
    answered(&Value::Null, result)
}

/// Whether an expiry moved from `before` to `after` by `months` months, as
/// clouds count them (the same day of the month, or the month's last day
/// when it has fewer).
pub fn moved_by_months(before: DateTime<Utc>, after: DateTime<Utc>, months: u32) -> bool {
    before
        .checked_add_months(chrono::Months::new(months))
        .is_some_and(|expected| (after - expected).num_hours().abs() <= 72)
}

/// A recorded call this adapter does not know (a newer version wrote it).
/// A renewal period as the clouds write it (`1` `"m"`, `1` `"Y"`,
/// `"Month"`) in months; `None` when the cloud does not say.
pub fn period_months(n: Option<u64>, unit: Option<&str>) -> Result<Option<u32>, String> {
    let (Some(n), Some(unit)) = (n, unit.filter(|u| !u.is_empty())) else {
        return Ok(None);
    };
    let per = match unit {
        "m" | "M" | "Month" | "month" => 1,
        "y" | "Y" | "Year" | "year" => 12,
        other => return Err(format!("unknown renewal period unit {other:?}")),
    };
    match u32::try_from(n).ok().and_then(|n| n.checked_mul(per)) {
        Some(0) => Ok(None),
        Some(m) if m <= 120 => Ok(Some(m)),
        _ => Err(format!("renewal period {n} {unit} is beyond ten years")),
    }
}

pub fn no_such_call(name: &str) -> crate::ports::ActionError {
    crate::ports::ActionError::NotSent(ProviderError::Malformed(format!("no such call {name}")))
}

/// `n` requests a second, as a quota (0 reads as 1).
pub const fn per_second(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// Requests per second per API action; an action not listed gets `default`.
#[derive(Debug, Clone)]
pub struct RateTable {
    pub default: NonZeroU32,
    pub per_action: HashMap<&'static str, NonZeroU32>,
}

impl RateTable {
    pub fn uniform(rps: NonZeroU32) -> RateTable {
        RateTable {
            default: rps,
            per_action: HashMap::new(),
        }
    }

    fn rate(&self, action: &str) -> NonZeroU32 {
        self.per_action.get(action).copied().unwrap_or(self.default)
    }
}

/// One call as pacing and error messages see it.
pub struct Call<'a> {
    /// The key whose quota the call spends.
    pub key_id: &'a str,
    /// The API action, as the cloud counts its rate limits.
    pub action: &'a str,
    /// What the key must be allowed, named when the cloud refuses.
    pub permission: &'a str,
}

/// The HTTP side shared by one provider's accounts.
pub struct Http {
    client: reqwest::Client,
    rates: RateTable,
    /// One pacer per (key id, action): the clouds count requests per API per
    /// account, so 10,000 accounts do not queue behind one another.
    pacers: Mutex<HashMap<(String, String), Arc<Pacer>>>,
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    /// Per-request bound; the poller's timeout bounds the whole poll.
    pub request_timeout: StdDuration,
    calls: AtomicU64,
}

impl Http {
    pub fn new(rates: RateTable, clock: Arc<dyn Clock>) -> Http {
        Http {
            client: reqwest::Client::builder()
                .user_agent(concat!("purser/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            rates,
            pacers: Mutex::new(HashMap::new()),
            retry: RetryPolicy::default(),
            clock,
            request_timeout: StdDuration::from_secs(15),
            calls: AtomicU64::new(0),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A value unique to this process and call, for nonces and jitter seeds.
    pub fn unique(&self) -> u64 {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let digest = Sha256::digest(
            format!("{}:{n}:{:?}", std::process::id(), std::time::Instant::now()).as_bytes(),
        );
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn pacer(&self, key_id: &str, action: &str) -> Arc<Pacer> {
        let mut map = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((key_id.to_owned(), action.to_owned()))
            .or_insert_with(|| Arc::new(Pacer::new(self.rates.rate(action))))
            .clone()
    }

    /// Sends the request `build` makes (signed afresh for each attempt) and
    /// classifies the answer, retrying what is worth retrying. `secrets` are
    /// scrubbed from any message that leaves here.
    pub async fn call<T>(
        &self,
        call: Call<'_>,
        secrets: &[&str],
        build: impl Fn() -> reqwest::RequestBuilder,
        classify: impl Fn(&Reply) -> Result<T, Failure>,
    ) -> Result<T, ProviderError> {
        self.call_with(call, secrets, build, classify, true).await
    }

    /// As `call`, but a call that may have taken effect (a lost answer, a
    /// 5xx) is retried only when `repeatable`: a change with no idempotency
    /// token is read back instead. Throttling is always retried, since the
    /// cloud refused it before acting.
    pub async fn call_with<T>(
        &self,
        call: Call<'_>,
        secrets: &[&str],
        build: impl Fn() -> reqwest::RequestBuilder,
        classify: impl Fn(&Reply) -> Result<T, Failure>,
        repeatable: bool,
    ) -> Result<T, ProviderError> {
        let pacer = self.pacer(call.key_id, call.action);
        let mut attempt = 0;
        loop {
            attempt += 1;
            pacer.wait().await;
            let failure = match self.send(build()).await {
                Ok(reply) => match classify(&reply) {
                    Ok(value) => return Ok(value),
                    Err(f) => f,
                },
                Err(f) => f,
            };
            let failure = scrub(failure, secrets);
            let wait = match &failure {
                Failure::Throttled { retry_after } => Some(
                    retry_after
                        .unwrap_or_default()
                        .max(self.retry.delay(attempt, self.unique())),
                ),
                Failure::Transient(_) | Failure::TimedOut(_) if repeatable => {
                    Some(self.retry.delay(attempt, self.unique()))
                }
                _ => None,
            };
            match wait {
                Some(wait) if attempt < self.retry.attempts => {
                    debug!(action = call.action, attempt, ?failure, ?wait, "retrying");
                    let at =
                        self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    self.clock.sleep_until(at).await;
                }
                _ => return Err(failure.into_error(&call)),
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply, Failure> {
        let response = request
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| transport(&e, self.request_timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(StdDuration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(&e, self.request_timeout))?
            .to_vec();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

fn transport(e: &reqwest::Error, timeout: StdDuration) -> Failure {
    if e.is_timeout() {
        Failure::TimedOut(timeout)
    } else if e.is_connect() {
        Failure::Transient("could not connect".into())
    } else {
        // reqwest's message names the URL, never headers, so it is safe to keep.
        Failure::Transient(e.to_string())
    }
}

/// Removes `secrets` from a failure's messages, and what some clouds echo after
/// a failed signature: Huawei's canonical request and Alibaba's string-to-sign
/// carry the key id and signature.
fn scrub(f: Failure, secrets: &[&str]) -> Failure {
    let r = |m: String| redact(&m, secrets);
    match f {
        Failure::Auth { code, message } => Failure::Auth {
            code,
            message: r(message),
        },
        Failure::Denied { code, message } => Failure::Denied {
            code,
            message: r(message),
        },
        Failure::Business { code, message } => Failure::Business {
            code,
            message: r(message),
        },
        Failure::Transient(m) => Failure::Transient(r(m)),
        Failure::Malformed(m) => Failure::Malformed(r(m)),
        other => other,
    }
}

pub fn redact(message: &str, secrets: &[&str]) -> String {
    const ECHOES: [&str; 5] = [
        "canonicalrequest",
        "stringtosign",
        "string to sign",
        "authorization",
        "signature=",
    ];
    let lower = message.to_ascii_lowercase();
    let cut = ECHOES
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(message.len());
    let mut out = message[..cut].trim_end().to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "[redacted]");
    }
    if cut < message.len() {
        out.push_str(" [request details redacted]");
    }
    if out.chars().count() > 400 {
        out = out.chars().take(400).collect::<String>() + "…";
    }
    out
}

// ---------------------------------------------------------------- reading answers

/// Parses a body as JSON, or says what came instead.
pub fn json(reply: &Reply) -> Result<Value, Failure> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&reply.body)
            .chars()
            .take(80)
            .collect();
        Failure::Malformed(format!(
            "HTTP {} with a body that is not JSON ({e}): {start:?}",
            reply.status
        ))
    })
}

/// A money figure exactly as the cloud wrote it: a JSON number (its text is
/// kept; it never passes through a float) or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount(String);

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => Ok(Amount(n.to_string())),
            Value::String(s) => Ok(Amount(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected an amount, found {other}"
            ))),
        }
    }
}

impl Amount {
    /// The text as sent; for identifiers that come as numbers or strings.
    pub fn text(&self) -> &str {
        self.0.trim()
    }

    /// The exact decimal: digits with an optional sign, fraction, exponent (JSON
    /// numbers) or strict thousands grouping (strings such as `"12,345.67"`).
    /// `"5,00.0"` and anything else is refused.
    pub fn decimal(&self) -> Result<Decimal, String> {
        strict_decimal(&self.0)
    }

    /// An amount in the currency's major unit (yuan, dollars).
    pub fn major(&self, currency: Currency) -> Result<Money, String> {
        self.bounded(self.decimal()?, currency)
    }

    /// An amount in minor units (fen, cents), converted exactly.
    pub fn minor(&self, currency: Currency) -> Result<Money, String> {
        let d = self.decimal()?;
        self.bounded(d / Decimal::ONE_HUNDRED, currency)
    }

    fn bounded(&self, major: Decimal, currency: Currency) -> Result<Money, String> {
        if major.abs() > crate::domain::money::largest() {
            return Err(format!(
                "{:?} is beyond what purser handles (at most 1,000,000,000,000,000)",
                self.0
            ));
        }
        Ok(Money::new(major, currency).normalized())
    }
}

/// A UTC time as `2019-09-08T16:00:00Z`, or without seconds (`2017-12-10T04:04Z`),
/// or any RFC 3339 form.
pub fn utc_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%MZ")
        .map(|n| n.and_utc())
        .map_err(|_| format!("{text:?} is not a UTC time such as 2019-09-08T16:00:00Z"))
}

/// `2019-09-08T16:00:00Z`: how the clouds want UTC times in queries.
pub fn utc_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Pages read per listing at most, so a misbehaving server cannot loop a poll forever.
pub const MAX_PAGES: u32 = 1000;

/// A list answer that did not have the documented shape.
pub fn malformed(what: &str) -> impl Fn(String) -> ProviderError + '_ {
    move |e| ProviderError::Malformed(format!("{what}: {e}"))
}

/// The body as JSON; a body that is not JSON is throttling on 429, transient
/// on a 5xx (a gateway's HTML page), and malformed otherwise.
pub fn json_or_status(reply: &Reply) -> Result<Value, Failure> {
    json(reply).map_err(|e| match reply.status {
        429 => Failure::Throttled {
            retry_after: reply.retry_after,
        },
        500.. => Failure::Transient(format!("HTTP {}", reply.status)),
        _ => e,
    })
}

/// Deserializes a successful answer into `T`.
pub fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, ProviderError> {
    serde_json::from_value(v).map_err(|e| {
        ProviderError::Malformed(format!("{what} does not have the documented shape: {e}"))
    })
}

pub fn external_id(text: &str) -> Result<crate::domain::model::ExternalId, ProviderError> {
    crate::domain::model::ExternalId::parse(text)
        .map_err(|e| ProviderError::Malformed(e.to_string()))
}

/// `host[:port]` as the client sends it in the Host header.
pub fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// An account's credentials and addresses. Which fields a cloud needs is
/// checked when the config is read.
#[derive(Debug, Clone)]
pub struct CloudAccess {
    /// Tencent SecretId, Alibaba AccessKeyId, Huawei AK, Azure client id.
    pub key_id: crate::secret::Secret,
    /// Tencent SecretKey, Alibaba AccessKeySecret, Huawei SK, Azure client secret.
    pub secret: crate::secret::Secret,
    /// Replaces the cloud's API base URL (tests, private endpoints).
    pub endpoint: Option<reqwest::Url>,
    /// Tencent: regions whose CVM instances are read too.
    pub regions: Vec<String>,
    /// Huawei: the account (domain) id, sent as X-Domain-Id.
    pub domain_id: Option<String>,
    /// Azure: the Entra ID tenant.
    pub tenant: Option<String>,
    /// Azure: the subscription whose usage is read.
    pub subscription: Option<String>,
    /// Azure: an EA billing account whose balance can be read.
    pub billing_account: Option<String>,
}

/// The account's credentials, or a clear refusal.
pub fn access_for<'a>(
    accounts: &'a HashMap<crate::domain::model::AccountId, CloudAccess>,
    account: &crate::domain::model::Account,
) -> Result<&'a CloudAccess, ProviderError> {
    accounts
        .get(&account.id)
        .ok_or_else(|| ProviderError::Rejected {
            code: "NotConfigured".into(),
            message: format!("no credentials are configured for account {}", account.id),
        })
}

/// One account as an adapter calls it: its keys, and whether it is on the
/// international site (billed in USD) or the China site (CNY).
pub struct Site<'a> {
    pub access: &'a CloudAccess,
    pub intl: bool,
    pub currency: Currency,
}

pub fn site<'a>(
    accounts: &'a HashMap<crate::domain::model::AccountId, CloudAccess>,
    account: &crate::domain::model::Account,
) -> Result<Site<'a>, ProviderError> {
    let intl = account.site == "intl";
    Ok(Site {
        access: access_for(accounts, account)?,
        intl,
        currency: if intl { Currency::Usd } else { Currency::Cny },
    })
}

pub fn strict_decimal(raw: &str) -> Result<Decimal, String> {
    let text = raw.trim();
    let bad = |why: &str| format!("{raw:?} is not an amount: {why}");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    // Beyond this (a quadrillion yuan, in fen), sums and rates of amounts
    // could overflow: a cloud that answers so has answered garbage.
    let bounded = |value: Decimal| {
        if value.abs() > crate::domain::money::largest() * Decimal::ONE_HUNDRED {
            Err(bad("beyond what purser handles"))
        } else {
            Ok(value)
        }
    };
    if unsigned.contains(['e', 'E']) {
        return Decimal::from_scientific(text)
            .map_err(|e| bad(&e.to_string()))
            .and_then(bounded);
    }
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("bad fraction"));
    }
    let digits = if int.contains(',') {
        let groups: Vec<&str> = int.split(',').collect();
        let first_ok = (1..=3).contains(&groups[0].len());
        let rest_ok = groups[1..].iter().all(|g| g.len() == 3);
        if !first_ok || !rest_ok || !int.bytes().all(|b| b.is_ascii_digit() || b == b',') {
            return Err(bad("misplaced thousands separators"));
        }
        int.replace(',', "")
    } else {
        int.to_owned()
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a number"));
    }
    let significant = format!("{digits}{}", frac.unwrap_or(""));
    if significant
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        > 28
    {
        return Err(bad("more digits than purser keeps exactly"));
    }
    let plain = match frac {
        Some(f) => format!("{digits}.{f}"),
        None => digits,
    };
    let value: Decimal = plain.parse().map_err(|_| bad("too large"))?;
    bounded(if text.starts_with('-') { -value } else { value })
}

#[cfg(test)]
mod tests {
    #[test]
    fn renewal_periods_in_each_clouds_units() {
        assert_eq!(super::period_months(Some(1), Some("m")), Ok(Some(1)));
        assert_eq!(super::period_months(Some(2), Some("Y")), Ok(Some(24)));
        assert_eq!(super::period_months(Some(3), Some("Month")), Ok(Some(3)));
        assert_eq!(super::period_months(None, Some("m")), Ok(None));
        assert_eq!(super::period_months(Some(0), Some("m")), Ok(None));
        assert!(super::period_months(Some(1), Some("w")).is_err());
        assert!(super::period_months(Some(u64::MAX), Some("y")).is_err());
    }

    use super::*;

    #[test]
    fn an_expiry_moved_by_the_months_asked_is_told_from_one_moved_otherwise() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let before = t("2026-01-31T16:00:00Z");
        assert!(moved_by_months(before, t("2026-02-28T16:00:00Z"), 1));
        assert!(moved_by_months(before, t("2026-03-03T16:00:00Z"), 1));
        assert!(!moved_by_months(before, t("2026-03-31T16:00:00Z"), 1));
        assert!(moved_by_months(before, t("2026-03-31T16:00:00Z"), 2));
        assert!(!moved_by_months(before, t("2026-02-03T16:00:00Z"), 1));
        assert!(!moved_by_months(before, t("2027-01-31T16:00:00Z"), 1));
    }

    fn amount(json: &str) -> Amount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn json_numbers_keep_their_text() {
        assert_eq!(
            amount("9647442").decimal().unwrap(),
            Decimal::new(9647442, 0)
        );
        // A float that f64 would not hold exactly.
        assert_eq!(
            amount("12345678901234567.89")
                .decimal()
                .unwrap()
                .to_string(),
            "12345678901234567.89"
        );
        assert_eq!(amount("1.5e3").decimal().unwrap(), Decimal::new(1500, 0));
        assert_eq!(
            amount("9647442").minor(Currency::Cny).unwrap().to_string(),
            "¥96,474.42"
        );
        assert_eq!(
            amount("12345.0")
                .minor(Currency::Cny)
                .unwrap()
                .amount_string(),
            "123.45"
        );
    }

    #[test]
    fn identifiers_come_as_strings_or_bare_numbers() {
        let v = serde_json::json!(["CS1", 202657601410661_u64, null, true]);
        assert_eq!(texts(&v), ["CS1", "202657601410661"]);
        assert!(texts(&serde_json::json!("CS1")).is_empty());
    }

    #[test]
    fn amounts_beyond_any_bill_are_garbage_not_an_overflow() {
        for huge in [
            "7.9e28",
            "79000000000000000000000000000",
            "100000000000000000.01",
            "-2e17",
            "0.12345678901234567890123456789",
        ] {
            assert!(strict_decimal(huge).is_err(), "{huge}");
        }
        assert!(amount("1000000000000000.01").major(Currency::Cny).is_err());
        assert!(amount("100000000000000001").minor(Currency::Cny).is_err());
        assert!(amount("1000000000000000").major(Currency::Cny).is_ok());
        assert!(strict_decimal("0.000001").is_ok());
    }

    #[test]
    fn strings_are_parsed_strictly() {
        for (text, want) in [
            ("\"10000.00\"", "10000.00"),
            ("\"-11.19\"", "-11.19"),
            ("\"10000.00\\n\"", "10000.00"),
            ("\"12,345.67\"", "12345.67"),
            ("\"1,234,567\"", "1234567"),
        ] {
            assert_eq!(amount(text).decimal().unwrap().to_string(), want, "{text}");
        }
        for bad in [
            "\"5,00.0\"",
            "\"1,2345\"",
            "\",100\"",
            "\"\"",
            "\"12.\"",
            "\"abc\"",
            "\"1.2.3\"",
            "\"--5\"",
        ] {
            assert!(amount(bad).decimal().is_err(), "{bad} accepted");
        }
        let err = amount("\"5,00.0\"").decimal().unwrap_err();
        assert!(err.contains("thousands"), "{err}");
        assert!(serde_json::from_str::<Amount>("null").is_err());
    }

    #[test]
    fn minor_units_convert_both_ways() {
        let m = amount("50000").minor(Currency::Cny).unwrap();
        assert_eq!(m.amount_string(), "500.00");
        assert_eq!(m.to_minor().unwrap(), 50000);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            attempts: 5,
            base: StdDuration::from_millis(400),
            cap: StdDuration::from_secs(2),
        };
        assert_eq!(p.delay(1, 0), StdDuration::from_millis(200));
        assert_eq!(p.delay(1, 200), StdDuration::from_millis(400));
        assert_eq!(p.delay(2, 0), StdDuration::from_millis(400));
        assert!(p.delay(10, u64::MAX) <= StdDuration::from_secs(2));
        assert_ne!(p.delay(3, 1), p.delay(3, 2));
    }

    #[test]
    fn redaction_removes_secrets_and_echoed_requests() {
        let msg = "Incorrect IAM authentication information: verify aksk signature fail, \
                   canonicalRequest: GET|/v2/|x-sdk-date:2019|SDK-HMAC-SHA256 Access=AKTEST";
        let out = redact(msg, &["AKTEST"]);
        assert!(
            !out.contains("AKTEST") && !out.contains("x-sdk-date"),
            "{out}"
        );
        assert!(out.starts_with("Incorrect IAM authentication information"));
        let out = redact("key SECRETVALUE was refused", &["SECRETVALUE"]);
        assert_eq!(out, "key [redacted] was refused");
    }
}
