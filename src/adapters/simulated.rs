//! A provider driven by a scenario file: accounts with a starting balance and a
//! daily burn, resources expiring at offsets, orders, top-ups and outages.
//! Deterministic under the injected clock, and re-read when the file changes,
//! so a demo can be steered by editing it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::parse_duration;
use crate::domain::model::{
    Account, Balance, Bucket, BucketKind, ExternalId, Order, Recharge, RenewalMode, ReportedSpend,
    Resource, ResourceStatus, Snapshot,
};
use crate::domain::money::{Currency, Money};
use serde_json::{Value, json};

use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, Clock, CloudCall, LostCall, NextCall, Provider,
    ProviderError, ReadBack,
};

pub struct SimulatedProvider {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    /// The epoch of scenarios that do not name one: when the provider was built.
    started: DateTime<Utc>,
    cache: Mutex<Option<Cached>>,
    /// What requests changed, per account, laid over the scenario. Kept in
    /// memory: a restart returns to the scenario as written.
    effects: Mutex<HashMap<String, Effects>>,
}

#[derive(Default)]
struct Effects {
    charged: Decimal,
    renewed_months: HashMap<String, u32>,
    paid: Vec<String>,
    renewal: HashMap<String, RenewalMode>,
    /// Each call's answer by its idempotency key and name: a repeat gets the
    /// same answer and charges nothing, as a cloud's client token does.
    answers: HashMap<(String, String), CallAnswer>,
}

struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
    scenario: Arc<Result<Scenario, String>>,
}

struct Scenario {
    epoch: Option<DateTime<Utc>>,
    accounts: HashMap<String, Result<Compiled, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimAccount {
    id: String,
    #[serde(default = "cny")]
    currency: String,
    balance: String,
    #[serde(default = "zero")]
    burn_per_day: String,
    #[serde(default)]
    report_spend: bool,
    #[serde(default)]
    topups: Vec<SimTopup>,
    #[serde(default)]
    buckets: Vec<SimBucket>,
    #[serde(default)]
    resources: Vec<SimResource>,
    #[serde(default)]
    orders: Vec<SimOrder>,
    /// Every read fails this way.
    fail: Option<String>,
    #[serde(default)]
    outages: Vec<SimOutage>,
    /// Every answer takes this long.
    slow: Option<String>,
    /// The balance stands for a figure a person entered at this offset, as
    /// for a cloud with no balance API.
    entered: Option<String>,
}

fn cny() -> String {
    "CNY".into()
}

fn zero() -> String {
    "0".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimTopup {
    at: String,
    amount: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimBucket {
    name: String,
    kind: BucketKind,
    amount: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimResource {
    id: String,
    product: String,
    region: Option<String>,
    name: Option<String>,
    expires_in: String,
    renewal: RenewalMode,
    #[serde(default = "active")]
    status: ResourceStatus,
    renewal_price: Option<String>,
    renewal_months: Option<u32>,
}

fn active() -> ResourceStatus {
    ResourceStatus::Active
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimOrder {
    id: String,
    amount: String,
    created: String,
    /// Absent: the cloud gives no payment deadline.
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimOutage {
    from: String,
    until: String,
    error: String,
}

/// A signed offset: `3d`, `-2d`, `1h30m`.
fn offset(text: &str) -> Result<Duration, String> {
    match text.trim().strip_prefix('-') {
        Some(rest) => parse_duration(rest).map(|d| -d),
        None => parse_duration(text),
    }
}

fn failure(kind: &str) -> ProviderError {
    match kind {
        "unauthorized" => {
            ProviderError::Unauthorized("the simulated key lacks permission to read billing".into())
        }
        "throttled" => ProviderError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(1)),
        },
        "garbage" => ProviderError::Malformed(
            "expected a JSON object, got \"<html>502 Bad Gateway</html>\"".into(),
        ),
        "transport" => ProviderError::Transport("connection reset by peer".into()),
        other => ProviderError::Rejected {
            code: "Simulated".into(),
            message: other.into(),
        },
    }
}

impl SimulatedProvider {
    pub fn new(path: &Path, clock: Arc<dyn Clock>) -> SimulatedProvider {
        let started = clock.now();
        SimulatedProvider {
            path: path.to_owned(),
            clock,
            started,
            cache: Mutex::new(None),
            effects: Mutex::new(HashMap::new()),
        }
    }

    /// The scenario, parsed again only when the file changed. Size and mtime
    /// decide, except for a file modified in the last two seconds, whose bytes
    /// are compared too: an edit within one mtime tick would otherwise be missed.
    fn scenario(&self) -> Arc<Result<Scenario, String>> {
        let meta = std::fs::metadata(&self.path).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok());
        let len = meta.as_ref().map_or(0, |m| m.len());
        let recent = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(2));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref()
            && c.modified == modified
            && c.len == len
            && !recent
        {
            return c.scenario.clone();
        }
        let bytes = std::fs::read(&self.path);
        let digest: [u8; 32] = Sha256::digest(bytes.as_deref().unwrap_or_default()).into();
        if let Some(c) = cache.as_mut().filter(|c| c.digest == digest) {
            c.modified = modified;
            c.len = len;
            return c.scenario.clone();
        }
        let scenario = Arc::new(
            bytes
                .map_err(|e| format!("cannot read scenario {}: {e}", self.path.display()))
                .and_then(|b| load(&self.path, &b)),
        );
        *cache = Some(Cached {
            modified,
            len,
            digest,
            scenario: scenario.clone(),
        });
        scenario
    }
}

fn load(path: &Path, bytes: &[u8]) -> Result<Scenario, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("scenario {}: not UTF-8: {e}", path.display()))?;
    let mut scenario = Scenario {
        epoch: None,
        accounts: HashMap::new(),
    };
    let mut names = Names::default();
    let pieces = pieces(text);
    let several = pieces.len() > 1;
    for (i, &(start, piece)) in pieces.iter().enumerate() {
        let mut table: toml::Table = piece
            .parse()
            .map_err(|e: toml::de::Error| located(path, text, start, &e))?;
        if let Some(epoch) = table.remove("epoch") {
            scenario.epoch = Some(parse_epoch(path, epoch)?);
        }
        match table.remove("accounts") {
            None => {}
            Some(toml::Value::Array(list)) => {
                // An inline `accounts = [...]` before `[[accounts]]` tables
                // is a duplicate key in the document as a whole.
                if i == 0 && several {
                    return Err(format!(
                        "scenario {}: accounts is given both as `accounts = [...]` and as [[accounts]] tables",
                        path.display()
                    ));
                }
                for entry in list {
                    add_account(path, &mut scenario, &mut names, entry);
                }
            }
            Some(other) => {
                return Err(format!(
                    "scenario {}: accounts must be [[accounts]] tables, not {}",
                    path.display(),
                    other.type_str()
                ));
            }
        }
        if let Some(key) = table.keys().next() {
            return Err(format!(
                "scenario {}: unknown key {key:?}; expected epoch and [[accounts]]",
                path.display()
            ));
        }
    }
    Ok(scenario)
}

/// The scenario cut before each `[[accounts]]` header, with where each piece
/// starts; the first piece, perhaps empty, holds what comes before them. Parsed whole, a document holds every token, event and table at
/// once: gigabytes for 10,000 accounts of 20 resources. A header-looking
/// line can be something else only inside a multi-line string, so a file
/// with one is parsed whole.
fn pieces(text: &str) -> Vec<(usize, &str)> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return vec![(0, text)];
    }
    // The first piece is what comes before the first header, if anything.
    let mut starts = vec![0];
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if accounts_header(line) {
            starts.push(at);
        }
        at += line.len();
    }
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| (w[0], &text[w[0]..w[1]]))
        .collect()
}

fn accounts_header(line: &str) -> bool {
    let Some((key, after)) = line
        .trim_start()
        .strip_prefix("[[")
        .and_then(|rest| rest.split_once("]]"))
    else {
        return false;
    };
    let after = after.trim();
    key.trim() == "accounts" && (after.is_empty() || after.starts_with('#'))
}

/// A piece's parse error, placed in the whole file.
fn located(path: &Path, text: &str, start: usize, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(at) = e
        .span()
        .map(|s| start + s.start)
        .filter(|&at| text.is_char_boundary(at))
    else {
        return format!("scenario {}: {message}", path.display());
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
        .chars()
        .count()
        + 1;
    format!(
        "scenario {}: line {line}, column {column}: {message}",
        path.display()
    )
}

fn parse_epoch(path: &Path, value: toml::Value) -> Result<DateTime<Utc>, String> {
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(format!(
                "scenario {}: epoch must be a date-time, not {other}",
                path.display()
            ));
        }
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("scenario {}: epoch {text:?}: {e}", path.display()))
}

/// Each account is read on its own: one malformed entry spoils only itself.
fn add_account(path: &Path, scenario: &mut Scenario, names: &mut Names, entry: toml::Value) {
    let Some(id) = entry.get("id").and_then(|v| v.as_str()).map(str::to_owned) else {
        return;
    };
    let parsed = entry
        .try_into::<SimAccount>()
        .map_err(|e| {
            format!(
                "scenario {} account {id}: {}",
                path.display(),
                e.message().trim()
            )
        })
        .and_then(|a| a.compile(names));
    scenario.accounts.insert(id, parsed);
}

/// Products and regions, one string each however many resources name them.
#[derive(Default)]
struct Names(HashSet<Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.get(name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(name);
        self.0.insert(Arc::clone(&new));
        new
    }
}

impl SimAccount {
    fn money(&self, field: &str, text: &str, currency: Currency) -> Result<Money, String> {
        Money::parse_signed(text, currency)
            .map_err(|e| format!("account {}: {field}: {e}", self.id))
    }

    /// Every value parsed, once, as the scenario is loaded: a read is then
    /// arithmetic and copies, and a bad value fails each read of the
    /// account with what is wrong with it.
    fn compile(&self, names: &mut Names) -> Result<Compiled, String> {
        let currency: Currency = self
            .currency
            .parse()
            .map_err(|e| format!("account {}: {e}", self.id))?;
        let money = |field: &str, text: &str| self.money(field, text, currency);
        let topups = self
            .topups
            .iter()
            .map(|t| {
                let at = offset(&t.at).map_err(|e| format!("account {}: topup: {e}", self.id))?;
                Ok((at, money("topup amount", &t.amount)?))
            })
            .collect::<Result<_, String>>()?;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                Ok(Bucket {
                    name: b.name.clone(),
                    kind: b.kind,
                    amount: money("bucket", &b.amount)?,
                    entered_as_of: None,
                })
            })
            .collect::<Result<_, String>>()?;
        let resources = self
            .resources
            .iter()
            .map(|r| {
                let expires_in =
                    offset(&r.expires_in).map_err(|e| format!("resource {}: {e}", r.id))?;
                Ok(Listed {
                    expires_in,
                    id: ExternalId::parse(&r.id).map_err(|e| e.to_string())?,
                    product: names.get(&r.product),
                    region: r.region.as_deref().map(|x| names.get(x)),
                    name: r.name.as_deref().map(Box::from),
                    renewal: r.renewal,
                    status: r.status,
                    renewal_price: r
                        .renewal_price
                        .as_deref()
                        .map(|p| money("renewal_price", p))
                        .transpose()?,
                    renewal_months: r.renewal_months,
                })
            })
            .collect::<Result<_, String>>()?;
        let orders = self
            .orders
            .iter()
            .map(|o| {
                let at = |d: &str| offset(d).map_err(|e| format!("order {}: {e}", o.id));
                let order = Order {
                    id: ExternalId::parse(&o.id).map_err(|e| e.to_string())?,
                    amount: money("order amount", &o.amount)?,
                    created_at: DateTime::UNIX_EPOCH,
                    pay_deadline: None,
                    description: o.description.clone(),
                };
                Ok((
                    at(&o.created)?,
                    o.deadline.as_deref().map(at).transpose()?,
                    order,
                ))
            })
            .collect::<Result<_, String>>()?;
        let outages = self
            .outages
            .iter()
            .map(|o| Ok((offset(&o.from)?, offset(&o.until)?, o.error.clone())))
            .collect::<Result<_, String>>()?;
        Ok(Compiled {
            currency,
            balance: money("balance", &self.balance)?,
            burn_per_day: money("burn_per_day", &self.burn_per_day)?,
            report_spend: self.report_spend,
            topups,
            buckets,
            resources,
            orders,
            fail: self.fail.clone(),
            outages,
            slow: self.slow.as_deref().map(parse_duration).transpose()?,
            entered: self
                .entered
                .as_deref()
                .map(offset)
                .transpose()
                .map_err(|e| format!("account {}: entered: {e}", self.id))?,
        })
    }
}

/// An account of the scenario as reads use it: offsets are from the
/// scenario's epoch, and the times in `resources` and `orders` are set
/// from them at each read.
#[derive(Debug)]
struct Compiled {
    currency: Currency,
    balance: Money,
    burn_per_day: Money,
    report_spend: bool,
    // Boxed slices: exactly as long as the scenario's lists, where a
    // collected Vec keeps up to twice the room (25 MB at 200,000
    // resources).
    topups: Box<[(Duration, Money)]>,
    buckets: Box<[Bucket]>,
    resources: Box<[Listed]>,
    /// Each order with its creation's and its deadline's offsets.
    orders: Box<[(Duration, Option<Duration>, Order)]>,
    /// Every read fails this way.
    fail: Option<String>,
    /// From, until, and the failure.
    outages: Box<[(Duration, Duration, String)]>,
    slow: Option<Duration>,
    entered: Option<Duration>,
}

/// A resource as the scenario lists it, with its expiry's offset; kept
/// compact, as a scenario may list hundreds of thousands.
#[derive(Debug)]
struct Listed {
    expires_in: Duration,
    id: ExternalId,
    product: Arc<str>,
    region: Option<Arc<str>>,
    name: Option<Box<str>>,
    renewal: RenewalMode,
    status: ResourceStatus,
    renewal_price: Option<Money>,
    renewal_months: Option<u32>,
}

impl Listed {
    fn at(&self, epoch: DateTime<Utc>) -> Resource {
        Resource {
            id: self.id.clone(),
            product: self.product.to_string(),
            region: self.region.as_deref().map(str::to_owned),
            name: self.name.as_deref().map(str::to_owned),
            expires_at: epoch + self.expires_in,
            renewal: self.renewal,
            status: self.status,
            renewal_months: self.renewal_months,
            renewal_price: self.renewal_price,
            unpriced: None,
        }
    }
}

impl Compiled {
    fn snapshot(&self, epoch: DateTime<Utc>, now: DateTime<Utc>) -> Result<Snapshot, String> {
        let currency = self.currency;
        let elapsed = now - epoch;
        let spent = self
            .burn_per_day
            .checked_mul(Decimal::from(elapsed.num_seconds()) / Decimal::from(86_400))
            .map_err(|e| e.to_string())?
            .round_to_minor();
        let mut available = self
            .balance
            .checked_sub(&spent)
            .map_err(|e| e.to_string())?;
        let mut recharges = Vec::new();
        for &(at, amount) in &self.topups {
            if at <= elapsed {
                available = available.checked_add(&amount).map_err(|e| e.to_string())?;
                recharges.push(Recharge {
                    at: epoch + at,
                    amount,
                });
            }
        }
        let owed = available
            .is_negative()
            .then(|| Money::new(-available.amount(), currency));
        let resources = self.resources.iter().map(|r| r.at(epoch)).collect();
        let orders = self
            .orders
            .iter()
            .map(|(created, deadline, o)| Order {
                created_at: epoch + *created,
                pay_deadline: deadline.map(|d| epoch + d),
                ..o.clone()
            })
            .collect();
        Ok(Snapshot {
            taken_at: now,
            balance: Balance {
                available,
                cash: None,
                credit: None,
                frozen: None,
                owed,
                buckets: self.buckets.to_vec(),
                entered_as_of: self.entered.map(|d| epoch + d),
            },
            resources,
            orders,
            spend: self.report_spend.then_some(ReportedSpend {
                per_day: self.burn_per_day,
                over_days: 7,
            }),
            recharges,
            tally: None,
        })
    }
}

impl SimulatedProvider {
    fn effects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Effects>> {
        self.effects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scenario's snapshot with what requests changed laid over it.
    fn apply(&self, account: &Account, mut s: Snapshot) -> Snapshot {
        let effects = self.effects();
        let Some(e) = effects.get(account.id.as_str()) else {
            return s;
        };
        let c = s.balance.available.currency();
        s.balance.available = Money::new(s.balance.available.amount() - e.charged, c);
        s.balance.owed = s
            .balance
            .available
            .is_negative()
            .then(|| Money::new(-s.balance.available.amount(), c));
        for r in &mut s.resources {
            if let Some(m) = e.renewed_months.get(r.id.as_str()) {
                r.expires_at = r
                    .expires_at
                    .checked_add_months(chrono::Months::new(*m))
                    .unwrap_or(r.expires_at);
                r.status = ResourceStatus::Active;
            }
            if let Some(mode) = e.renewal.get(r.id.as_str()) {
                r.renewal = *mode;
            }
        }
        s.orders
            .retain(|o| !e.paid.iter().any(|p| p == o.id.as_str()));
        s
    }

    fn refused(code: &str, message: String) -> ActionError {
        ActionError::Refused {
            code: code.into(),
            message,
        }
    }

    /// Makes `call` on the account as read now: checks what a cloud checks,
    /// then charges the balance.
    fn make(
        &self,
        s: &Snapshot,
        account: &Account,
        call: &CloudCall,
    ) -> Result<Value, ActionError> {
        let p = &call.params;
        let ids = |field: &str| -> Vec<String> {
            p[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let c = s.balance.available.currency();
        let mut cost = Decimal::ZERO;
        match call.name.as_str() {
            "renew" => {
                let months = p["months"].as_u64().unwrap_or(0) as u32;
                for id in ids("resources") {
                    let Some(r) = s.resources.iter().find(|r| r.id.as_str() == id) else {
                        return Err(Self::refused(
                            "ResourceNotFound",
                            format!("no resource {id}"),
                        ));
                    };
                    let Some(price) = r.renewal_price else {
                        return Err(Self::refused(
                            "PriceUnknown",
                            format!("the scenario gives {id} no renewal_price"),
                        ));
                    };
                    cost += price.amount() * Decimal::from(months);
                }
            }
            "pay" => {
                for id in ids("orders") {
                    let Some(o) = s.orders.iter().find(|o| o.id.as_str() == id) else {
                        return Err(Self::refused(
                            "OrderNotPayable",
                            format!("order {id} is not unpaid"),
                        ));
                    };
                    cost += o.amount.amount();
                }
            }
            "autorenew" => {
                let id = p["resource"].as_str().unwrap_or_default();
                if !s.resources.iter().any(|r| r.id.as_str() == id) {
                    return Err(Self::refused(
                        "ResourceNotFound",
                        format!("no resource {id}"),
                    ));
                }
            }
            other => return Err(Self::refused("UnknownCall", format!("no call {other}"))),
        }
        if cost > s.balance.available.amount() {
            return Err(Self::refused(
                "InsufficientBalance",
                format!(
                    "{} is more than the balance {}",
                    Money::new(cost, c),
                    s.balance.available
                ),
            ));
        }
        let mut effects = self.effects();
        let e = effects.entry(account.id.as_str().to_owned()).or_default();
        match call.name.as_str() {
            "renew" => {
                let months = p["months"].as_u64().unwrap_or(0) as u32;
                for id in ids("resources") {
                    *e.renewed_months.entry(id).or_default() += months;
                }
            }
            "pay" => e.paid.extend(ids("orders")),
            _ => {
                let mode = if p["on"].as_bool().unwrap_or(false) {
                    RenewalMode::Auto
                } else {
                    RenewalMode::Manual
                };
                let id = p["resource"].as_str().unwrap_or_default().to_owned();
                e.renewal.insert(id, mode);
            }
        }
        e.charged += cost;
        Ok(json!({"charged": Money::new(cost, c).to_string()}))
    }
}

#[async_trait]
impl Actions for SimulatedProvider {
    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let s = self.read(account).await?;
        let call = |name: &str, params: Value| {
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable: true,
            })
        };
        if done.is_empty() {
            return Ok(match action {
                Action::Renew { resources, months } => {
                    call("renew", json!({"resources": resources, "months": months}))
                }
                Action::Pay { orders, .. } => call("pay", json!({"orders": orders})),
                Action::Autorenew { resource, on } => {
                    call("autorenew", json!({"resource": resource, "on": on}))
                }
                Action::Topup { .. } | Action::Allocate { .. } => {
                    NextCall::ByHand("money is paid in through the portal".into())
                }
            });
        }
        let charged = done
            .iter()
            .filter_map(|(_, a)| a.result["charged"].as_str())
            .filter(|c| {
                Money::parse_signed(c, s.balance.available.currency())
                    .map_or(true, |m| !m.amount().is_zero())
            })
            .collect::<Vec<_>>()
            .join(" + ");
        let summary = match action {
            Action::Renew { resources, .. } => resources
                .iter()
                .filter_map(|id| s.resources.iter().find(|r| &r.id == id))
                .map(|r| {
                    format!(
                        "{} now expires {}",
                        r.id,
                        r.expires_at.format("%Y-%m-%d %H:%M UTC")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            Action::Pay { orders, .. } => format!(
                "{} paid",
                orders
                    .iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::Autorenew { resource, on } => {
                format!(
                    "auto-renew turned {} for {resource}",
                    if *on { "on" } else { "off" }
                )
            }
            Action::Topup { .. } | Action::Allocate { .. } => String::new(),
        };
        Ok(NextCall::Done {
            summary: if charged.is_empty() {
                summary
            } else {
                format!("{summary}; charged {charged}")
            },
            details: json!({"answers": done.iter().map(|(_, a)| a).collect::<Vec<_>>()}),
        })
    }

    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError> {
        let token = (key.to_owned(), call.name.clone());
        let known = self
            .effects()
            .get(account.id.as_str())
            .and_then(|e| e.answers.get(&token).cloned());
        if let Some(answer) = known {
            return Ok(answer);
        }
        let s = self.read(account).await.map_err(ActionError::NotSent)?;
        let result = self.make(&s, account, call)?;
        let answer = CallAnswer {
            request_id: Some(format!("sim-{}", self.clock.now().timestamp_millis())),
            code: "OK".into(),
            result,
            effects: Vec::new(),
        };
        self.effects()
            .entry(account.id.as_str().to_owned())
            .or_default()
            .answers
            .insert(token, answer.clone());
        Ok(answer)
    }

    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let token = (lost.key.to_owned(), lost.call.name.clone());
        Ok(
            match self
                .effects()
                .get(account.id.as_str())
                .and_then(|e| e.answers.get(&token).cloned())
            {
                Some(answer) => ReadBack::Happened(answer),
                None => ReadBack::NotHappened,
            },
        )
    }
}

#[async_trait]
impl Provider for SimulatedProvider {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        self.read(account).await
    }
}

impl SimulatedProvider {
    async fn read(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        let scenario = self.scenario();
        let scenario = scenario
            .as_ref()
            .as_ref()
            .map_err(|e| ProviderError::Malformed(e.clone()))?;
        let sim = match scenario.accounts.get(account.id.as_str()) {
            None => {
                return Err(ProviderError::Rejected {
                    code: "UnknownAccount".into(),
                    message: format!("the scenario has no account {:?}", account.id.as_str()),
                });
            }
            Some(Err(e)) => return Err(ProviderError::Malformed(e.clone())),
            Some(Ok(sim)) => sim,
        };
        let epoch = scenario.epoch.unwrap_or(self.started);
        if let Some(delay) = sim.slow {
            let until = self.clock.now() + delay;
            self.clock.sleep_until(until).await;
        }
        let now = self.clock.now();
        if let Some(kind) = &sim.fail {
            return Err(failure(kind));
        }
        for (from, until, error) in &sim.outages {
            if now - epoch >= *from && now - epoch < *until {
                return Err(failure(error));
            }
        }
        let s = sim.snapshot(epoch, now).map_err(ProviderError::Malformed)?;
        Ok(self.apply(account, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn loaded(text: &str) -> Result<Scenario, String> {
        load(Path::new("s.toml"), text.as_bytes())
    }

    /// Every account as the whole document parses it, for comparison.
    fn whole(text: &str) -> Vec<String> {
        let table: toml::Table = text.parse().unwrap();
        let mut ids: Vec<String> = table["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let compiled = a
                    .clone()
                    .try_into::<SimAccount>()
                    .unwrap()
                    .compile(&mut Names::default());
                format!("{:?}", compiled.map_err(|_| ()))
            })
            .collect();
        ids.sort();
        ids
    }

    fn pieced(s: &Scenario) -> Vec<String> {
        let mut ids: Vec<String> = s
            .accounts
            .values()
            .map(|a| format!("{:?}", a.as_ref().map_err(|_| ())))
            .collect();
        ids.sort();
        ids
    }

    const TWO: &str = r#"# a demo
epoch = "2026-11-01T00:00:00Z"

[[accounts]]
id = "a"
balance = "100"
[[accounts.resources]]
id = "ins-1"
product = "cvm"
expires_in = "3d"
renewal = "auto"
[accounts.resources_note]

  [[ accounts ]]   # indented, spaced, commented
id = "b"
balance = "¥2,000"
topups = [
  { at = "1d", amount = "50" },
]
[[accounts.orders]]
id = "o-1"
amount = "9.90"
created = "-1d"
"#;

    #[test]
    fn pieces_parse_to_what_the_whole_document_does() {
        let text = TWO.replace("[accounts.resources_note]\n", "");
        assert_eq!(pieces(&text).len(), 3);
        // A file that begins with its first account.
        let bare = text.replacen("# a demo\nepoch = \"2026-11-01T00:00:00Z\"\n\n", "", 1);
        assert!(bare.starts_with("[[accounts]]"), "{bare}");
        assert_eq!(pieced(&loaded(&bare).unwrap()), whole(&bare));
        let s = loaded(&text).unwrap();
        assert_eq!(
            s.epoch,
            Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(pieced(&s), whole(&text));
        let b = s.accounts["b"].as_ref().unwrap();
        assert_eq!((b.topups.len(), b.orders.len()), (1, 1));
    }

    #[test]
    fn a_key_unknown_to_an_account_spoils_only_it() {
        let s = loaded(TWO).unwrap();
        let a = s.accounts["a"].as_ref().unwrap_err();
        assert!(
            a.contains("account a") && a.contains("resources_note"),
            "{a}"
        );
        assert!(s.accounts["b"].is_ok());
    }

    #[test]
    fn a_syntax_error_names_its_line_in_the_whole_file() {
        let text = TWO.replace("amount = \"9.90\"", "amount = 9.90.1");
        let e = loaded(&text).map(|_| ()).unwrap_err();
        let line = text.lines().position(|l| l.contains("9.90.1")).unwrap() + 1;
        assert_eq!(
            e,
            format!("scenario s.toml: line {line}, column 14: invalid float, expected nothing")
        );
        // Where the whole document's parser puts it too.
        let whole = text.parse::<toml::Table>().unwrap_err().to_string();
        assert!(
            whole.contains(&format!("line {line}, column 14")),
            "{whole}"
        );
    }

    #[test]
    fn a_table_after_the_accounts_is_an_unknown_key() {
        let e = loaded(&format!("{TWO}\n[extra]\nx = 1\n"))
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("unknown key \"extra\""), "{e}");
    }

    #[test]
    fn a_multi_line_string_is_parsed_whole() {
        let text = "[[accounts]]\nid = \"a\"\nbalance = \"1\"\n[[accounts.orders]]\nid = \"o\"\namount = \"1\"\ncreated = \"0d\"\ndescription = \"\"\"\n[[accounts]]\n\"\"\"\n";
        assert_eq!(pieces(text).len(), 1);
        let s = loaded(text).unwrap();
        assert_eq!(s.accounts.len(), 1);
        let a = s.accounts["a"].as_ref().unwrap();
        assert_eq!(a.orders[0].2.description, "[[accounts]]\n");
    }

    #[test]
    fn accounts_given_two_ways_is_an_error_as_in_the_whole_document() {
        let text = "accounts = [{ id = \"x\", balance = \"1\" }]\n[[accounts]]\nid = \"a\"\nbalance = \"1\"\n";
        assert!(text.parse::<toml::Table>().is_err());
        let e = loaded(text).map(|_| ()).unwrap_err();
        assert!(e.contains("both as"), "{e}");
        let e = loaded("accounts = 3\n").map(|_| ()).unwrap_err();
        assert!(
            e.contains("must be [[accounts]] tables, not integer"),
            "{e}"
        );
        let inline = loaded("accounts = [{ id = \"x\", balance = \"1\" }]\n").unwrap();
        assert!(inline.accounts["x"].is_ok());
    }

    #[test]
    fn a_bad_value_anywhere_in_an_account_is_found_at_load_and_named() {
        let s = loaded(
            r#"
[[accounts]]
id = "priced"
balance = "100"
[[accounts.resources]]
id = "ins-1"
product = "cvm"
expires_in = "3d"
renewal = "auto"
renewal_price = "1,2,3"

[[accounts]]
id = "later"
balance = "100"
topups = [{ at = "400d", amount = "lots" }]

[[accounts]]
id = "due"
balance = "100"
[[accounts.orders]]
id = "o-1"
amount = "9.90"
created = "-1d"
deadline = "soon"

[[accounts]]
id = "fine"
balance = "¥100"
"#,
        )
        .unwrap();
        let err = |id: &str| s.accounts[id].as_ref().map(|_| ()).unwrap_err().clone();
        assert!(
            err("priced").starts_with("account priced: renewal_price: "),
            "{}",
            err("priced")
        );
        // A top-up not yet due is still checked: the mistake shows at once.
        assert!(
            err("later").starts_with("account later: topup amount: "),
            "{}",
            err("later")
        );
        assert!(err("due").starts_with("order o-1: "), "{}", err("due"));
        let fine = s.accounts["fine"].as_ref().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
        let read = fine.snapshot(now - Duration::days(1), now).unwrap();
        assert_eq!(
            read.balance.available,
            Money::from_minor(10_000, Currency::Cny)
        );
    }

    #[test]
    fn headers_are_told_from_lookalikes() {
        assert!(accounts_header("[[accounts]]\n"));
        assert!(accounts_header("  [[ accounts ]] # x\n"));
        assert!(!accounts_header("[[accounts.resources]]\n"));
        assert!(!accounts_header("[accounts]\n"));
        assert!(!accounts_header("# [[accounts]]\n"));
        assert!(!accounts_header("[[accounts]] x = 1\n"));
    }
}
