//! What purser exposes of itself on `/metrics`, in the OpenMetrics text
//! format Prometheus scrapes: counts of its work as it happens, the
//! accounts as last polled, and the store's state read at each scrape.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::resource_expiry::Expiries;
use crate::database::Database;
use crate::domain::model::{Account, Charge, ExternalId, Resource};
use crate::domain::money::Money;
use crate::ports::{
    ActionError, Actions, CallAnswer, CloudCall, LostCall, Meter, NextCall, Polled, ProviderError,
    ReadBack, Sent,
};

/// What Prometheus is told this answer is.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Open requests counted at most per scrape; more open at once is not a
/// team's working set.
const REQUESTS_READ: u32 = 10_000;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BalanceLabels {
    account: String,
    provider: String,
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    account: String,
    part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    severity: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutputLabel {
    output: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutputResult {
    output: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetResult {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabel {
    read: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloudCallLabels {
    provider: String,
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// A new metric (or family), registered as `name`.
fn family<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let m = M::default();
    r.register(name, help, m.clone());
    m
}

/// How long polls take: most answer within a second, a slow cloud or a
/// timeout in tens of seconds.
const POLL_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// An escalator pass reads what changed in a millisecond or so, and every
/// chain of a large fleet in a fraction of a second; a storm's writes take
/// seconds.
const PASS_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

fn poll_histogram() -> Histogram {
    Histogram::new(POLL_BUCKETS)
}

/// Every family purser exposes, in one registry per daemon.
pub struct Metrics {
    registry: Registry,
    polls: Family<PollLabels, Counter>,
    poll_duration: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    last_poll: Family<AccountLabel, Gauge>,
    balance: Family<BalanceLabels, FloatGauge>,
    balance_part: Family<PartLabels, FloatGauge>,
    runway: Family<AccountLabel, FloatGauge>,
    expiry: Arc<Expiries>,
    /// The balance parts each account's last poll set, so that a part no
    /// longer there stops being exposed.
    shown: Mutex<HashMap<String, Vec<PartLabels>>>,
    notices: Family<OutputResult, Counter>,
    pages: Family<TargetResult, Counter>,
    cloud_calls: Family<CloudCallLabels, Counter>,
    heartbeats: Family<ResultLabel, Counter>,
    escalator_passes: Family<ReadLabel, Counter>,
    escalator_pass_duration: Histogram,
    alerts: Family<AlertLabels, Gauge>,
    outbox_pending: Family<OutputLabel, Gauge>,
    outbox_oldest: Family<OutputLabel, FloatGauge>,
    requests: Family<RequestLabels, Gauge>,
    leader: Gauge,
    /// The outputs configured: each shows its outbox, 0 when empty.
    outputs: Vec<String>,
    process: Process,
    /// One scrape at a time: each clears and refills the store's gauges.
    scraping: tokio::sync::Mutex<()>,
}

/// The process's own figures, as every Prometheus client names them.
struct Process {
    resident: Gauge,
    virtual_memory: Gauge,
    cpu: Counter<f64, AtomicU64>,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
}

impl Metrics {
    /// The families, with a zero shown from the start for each of
    /// `providers`' polls and `outputs`' notices, so that a rate or an
    /// absence means what it says from the first scrape.
    ///
    /// Long because it is the list: one registration per family, each
    /// with its help text, in the order `/metrics` shows them.
    pub fn new(version: &str, commit: &str, providers: &[String], outputs: &[String]) -> Metrics {
        let mut r = Registry::default();
        let polls: Family<PollLabels, Counter> = family(
            &mut r,
            "purser_polls",
            "Polls of accounts, by provider and result (ok, or why the account could not be read)",
        );
        let poll_duration =
            Family::<ProviderLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                poll_histogram,
            );
        r.register(
            "purser_poll_duration_seconds",
            "How long one poll took, from asking the cloud to recording the answer",
            poll_duration.clone(),
        );
        let escalator_pass_duration = Histogram::new(PASS_BUCKETS);
        r.register(
            "purser_escalator_pass_duration_seconds",
            "How long one escalator pass took, reading, walking chains and sending pages",
            escalator_pass_duration.clone(),
        );
        let notices: Family<OutputResult, Counter> = family(
            &mut r,
            "purser_notices",
            "Alert notices sent to outputs, by result (delivered, retrying, failed for good)",
        );
        for provider in providers {
            let _ = polls.get_or_create(&PollLabels {
                provider: provider.clone(),
                result: "ok".into(),
            });
        }
        for output in outputs {
            let _ = notices.get_or_create(&OutputResult {
                output: output.clone(),
                result: Sent::Delivered.as_str().into(),
            });
        }
        let build: Family<BuildLabels, Gauge> = family(
            &mut r,
            "purser_build_info",
            "The running build: 1, labelled with its version and commit",
        );
        build
            .get_or_create(&BuildLabels {
                version: version.to_owned(),
                commit: commit.to_owned(),
            })
            .set(1);
        Metrics {
            polls,
            poll_duration,
            notices,
            last_poll: family(
                &mut r,
                "purser_last_successful_poll_timestamp_seconds",
                "When each account was last read",
            ),
            balance: family(
                &mut r,
                "purser_balance",
                "Available balance of each account as last read (what the cloud suspends service on)",
            ),
            balance_part: family(
                &mut r,
                "purser_balance_part",
                "Parts of each account's balance: cash, credit, frozen, owed, and contract:<name> for money allocated to a contract",
            ),
            runway: family(
                &mut r,
                "purser_runway_days",
                "Days until the available balance runs out at the current burn (absent while nothing is spent)",
            ),
            expiry: {
                let expiry = Arc::new(Expiries::default());
                r.register_collector(Box::new(expiry.clone()));
                expiry
            },
            shown: Mutex::default(),
            pages: family(
                &mut r,
                "purser_pages",
                "Pages sent to people on call, by platform or pager and result",
            ),
            cloud_calls: family(
                &mut r,
                "purser_cloud_calls",
                "Calls to clouds' action APIs (quotes, renewals, top-ups, payments, read-backs), by result",
            ),
            heartbeats: family(
                &mut r,
                "purser_heartbeats",
                "Heartbeats sent to the outside dead man's switch, by result",
            ),
            escalator_passes: family(
                &mut r,
                "purser_escalator_passes",
                "Escalator passes, by what they read: every open alert and chain (all), or what changed since the last (changes)",
            ),
            escalator_pass_duration,
            alerts: family(
                &mut r,
                "purser_alerts",
                "Open alerts by rule, severity and state (pending, firing, acknowledged)",
            ),
            outbox_pending: family(
                &mut r,
                "purser_outbox_pending",
                "Notices waiting to be sent, per output",
            ),
            outbox_oldest: family(
                &mut r,
                "purser_outbox_oldest_pending_age_seconds",
                "How long the oldest notice waiting for each output has waited",
            ),
            requests: family(
                &mut r,
                "purser_requests",
                "Open requests (top-ups, renewals, payments) by kind and state",
            ),
            leader: family(
                &mut r,
                "purser_leader",
                "1 on the replica that polls and sends (always on a single daemon), 0 on a standby",
            ),
            outputs: outputs.to_vec(),
            process: Process {
                resident: family(
                    &mut r,
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes",
                ),
                virtual_memory: family(
                    &mut r,
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes",
                ),
                cpu: family(
                    &mut r,
                    "process_cpu_seconds",
                    "User and system CPU time spent in seconds",
                ),
                open_fds: family(
                    &mut r,
                    "process_open_fds",
                    "Number of open file descriptors",
                ),
                max_fds: family(
                    &mut r,
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                ),
                start_time: family(
                    &mut r,
                    "process_start_time_seconds",
                    "Start time of the process since the epoch in seconds",
                ),
            },
            scraping: tokio::sync::Mutex::new(()),
            registry: r,
        }
    }

    /// The exposition at `now`. The store's state (alerts, the outbox,
    /// requests) is read only where this replica leads, so that summing
    /// over replicas counts it once; a standby shows itself only.
    pub async fn render(
        &self,
        store: &dyn Database,
        leads: bool,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let _one = self.scraping.lock().await;
        self.leader.set(i64::from(leads));
        self.alerts.clear();
        self.outbox_pending.clear();
        self.outbox_oldest.clear();
        self.requests.clear();
        if leads {
            for output in &self.outputs {
                let label = OutputLabel {
                    output: output.clone(),
                };
                let _ = self.outbox_pending.get_or_create(&label);
                let _ = self.outbox_oldest.get_or_create(&label);
            }
            for kind in crate::domain::request::ActionKind::ALL {
                for state in crate::domain::request::State::ALL
                    .into_iter()
                    .filter(|s| !s.is_final())
                {
                    let _ = self.requests.get_or_create(&RequestLabels {
                        kind: kind.as_str().to_owned(),
                        state: state.as_str().to_owned(),
                    });
                }
            }
            self.read_store(store, now).await?;
        }
        self.process.read();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| format!("encoding the metrics failed: {e}"))?;
        Ok(text)
    }

    async fn read_store(&self, store: &dyn Database, now: DateTime<Utc>) -> Result<(), String> {
        let failed = |what: &str, e: crate::ports::StoreError| format!("reading {what}: {e}");
        let tallies = store
            .tallies()
            .await
            .map_err(|e| failed("alerts and the outbox", e))?;
        for (rule, severity, state, n) in tallies.alerts {
            self.alerts
                .get_or_create(&AlertLabels {
                    rule,
                    severity,
                    state,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (output, n, oldest) in tallies.waiting {
            let label = OutputLabel { output };
            self.outbox_pending
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            let age = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
            self.outbox_oldest.get_or_create(&label).set(age);
        }
        for r in store
            .requests(true, REQUESTS_READ)
            .await
            .map_err(|e| failed("requests", e))?
        {
            self.requests
                .get_or_create(&RequestLabels {
                    kind: r.action.kind().as_str().to_owned(),
                    state: r.state.as_str().to_owned(),
                })
                .inc();
        }
        Ok(())
    }
}

/// Money as Prometheus takes it: a float, made only here, at exposition.
fn float(m: &Money) -> f64 {
    decimal(m.amount())
}

fn decimal(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl Meter for Metrics {
    fn polled(&self, poll: &Polled<'_>) {
        let account = poll.account.id.to_string();
        let provider = poll.account.provider.clone();
        let result = poll.failure.map_or("ok", |k| k.as_str());
        self.polls
            .get_or_create(&PollLabels {
                provider: provider.clone(),
                result: result.to_owned(),
            })
            .inc();
        self.poll_duration
            .get_or_create(&ProviderLabel {
                provider: provider.clone(),
            })
            .observe(poll.took.as_secs_f64());
        let label = AccountLabel {
            account: account.clone(),
        };
        if let Some(at) = poll.last_success_at {
            self.last_poll.get_or_create(&label).set(at.timestamp());
        }
        match poll
            .view
            .and_then(|v| Some((v, v.forecast.as_ref()?.runway_days?)))
        {
            Some((v, _)) if v.available.is_negative() => {
                self.runway.get_or_create(&label).set(0.0);
            }
            Some((_, days)) => {
                self.runway.get_or_create(&label).set(decimal(days));
            }
            None if poll.view.is_some() => {
                self.runway.remove(&label);
            }
            None => {}
        }
        let Some(snapshot) = poll.snapshot else {
            // Unread: the last reading stays, as the store keeps it.
            return;
        };
        let b = &snapshot.balance;
        self.balance
            .get_or_create(&BalanceLabels {
                account: account.clone(),
                provider,
                currency: b.available.currency().code().to_owned(),
            })
            .set(float(&b.available));
        let mut parts = Vec::new();
        for (part, value) in [
            ("cash", &b.cash),
            ("credit", &b.credit),
            ("frozen", &b.frozen),
            ("owed", &b.owed),
        ] {
            if let Some(m) = value {
                parts.push((part.to_owned(), float(m)));
            }
        }
        for bucket in &b.buckets {
            parts.push((format!("contract:{}", bucket.name), float(&bucket.amount)));
        }
        let parts: Vec<PartLabels> = parts
            .into_iter()
            .map(|(part, value)| {
                let l = PartLabels {
                    account: account.clone(),
                    part,
                };
                self.balance_part.get_or_create(&l).set(value);
                l
            })
            .collect();
        let before = self
            .shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account.clone(), parts.clone())
            .unwrap_or_default();
        for l in before.iter().filter(|l| !parts.contains(l)) {
            self.balance_part.remove(l);
        }
        self.expiry.show(&account, &snapshot.resources);
    }

    fn notices(&self, output: &str, result: Sent, count: usize) {
        self.notices
            .get_or_create(&OutputResult {
                output: output.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc_by(count as u64);
    }

    fn paged(&self, target: &str, result: Sent) {
        self.pages
            .get_or_create(&TargetResult {
                target: target.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
    }

    fn cloud_call(&self, provider: &str, action: &str, ok: bool) {
        self.cloud_calls
            .get_or_create(&CloudCallLabels {
                provider: provider.to_owned(),
                action: action.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    fn heartbeat(&self, result: Sent) {
        self.heartbeats
            .get_or_create(&ResultLabel {
                result: result.as_str().to_owned(),
            })
            .inc();
    }

    fn escalator_pass(&self, read: crate::ports::PassRead, took: std::time::Duration) {
        self.escalator_passes
            .get_or_create(&ReadLabel {
                read: read.as_str(),
            })
            .inc();
        self.escalator_pass_duration.observe(took.as_secs_f64());
    }
}

/// Clock ticks per second in `/proc` figures: fixed at 100 by the kernel's
/// user-space interface (USER_HZ), whatever the kernel's own tick.
const USER_HZ: f64 = 100.0;

impl Process {
    /// Reads the process's figures from `/proc` (Linux); elsewhere they stay 0.
    fn read(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kib = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<i64>().ok())
                    .map(|k| k.saturating_mul(1024))
            };
            if let Some(b) = kib("VmRSS:") {
                self.resident.set(b);
            }
            if let Some(b) = kib("VmSize:") {
                self.virtual_memory.set(b);
            }
        }
        if let Some((cpu, started)) = stat() {
            let seen = self.cpu.get();
            if cpu > seen {
                self.cpu.inc_by(cpu - seen);
            }
            if let Some(s) = started {
                self.start_time.set(s);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
        if let Some(max) = super::http::open_file_limit() {
            self.max_fds.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
    }
}

/// CPU seconds used, and the start time in seconds since the epoch, from
/// `/proc/self/stat` and the boot time in `/proc/stat`.
fn stat() -> Option<(f64, Option<i64>)> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: fields are
    // counted from after it (state is field 3).
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    let cpu = (ticks(14)? + ticks(15)?) as f64 / USER_HZ;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok())
    });
    let started = boot
        .zip(ticks(22))
        .map(|(b, t)| b + (t as f64 / USER_HZ) as i64);
    Some((cpu, started))
}

/// A cloud's action API, with each call counted: the money calls by the
/// cloud's own name for them (RenewInstances, PayOrder…), the rest by what
/// purser asked (quote, offers, last_renewal, next, read_back).
pub struct CountedActions {
    pub inner: std::sync::Arc<dyn Actions>,
    /// The configured provider's name.
    pub provider: String,
    pub meter: std::sync::Arc<dyn Meter>,
}

impl CountedActions {
    fn count<T, E>(&self, action: &str, r: Result<T, E>) -> Result<T, E> {
        self.meter.cloud_call(&self.provider, action, r.is_ok());
        r
    }
}

#[async_trait::async_trait]
impl Actions for CountedActions {
    async fn quote(
        &self,
        account: &Account,
        action: &crate::domain::request::Action,
    ) -> Result<Option<Money>, ProviderError> {
        self.count("quote", self.inner.quote(account, action).await)
    }
    async fn offers(
        &self,
        account: &Account,
        order: &ExternalId,
    ) -> Result<Option<Vec<crate::domain::policy::Offer>>, ProviderError> {
        self.count("offers", self.inner.offers(account, order).await)
    }
    async fn last_renewal(
        &self,
        account: &Account,
        resource: &Resource,
    ) -> Result<Option<Charge>, ProviderError> {
        self.count(
            "last_renewal",
            self.inner.last_renewal(account, resource).await,
        )
    }
    async fn next(
        &self,
        account: &Account,
        action: &crate::domain::request::Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        self.count("next", self.inner.next(account, action, done).await)
    }
    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError> {
        self.count(&call.name, self.inner.call(account, call, key).await)
    }
    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        self.count("read_back", self.inner.read_back(account, lost).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{AccountId, Balance, RenewalMode, ResourceStatus, Snapshot};
    use crate::domain::money::Currency;
    use openmetrics_parser::{OpenMetricsType, OpenMetricsValue};

    fn cny(s: &str) -> Money {
        Money::new(s.parse().unwrap_or_default(), Currency::Cny)
    }

    fn resource(id: &str) -> Resource {
        Resource {
            id: ExternalId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            product: "cvm".into(),
            region: None,
            name: None,
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            renewal: RenewalMode::Auto,
            status: ResourceStatus::Active,
            renewal_months: None,
            renewal_price: None,
            unpriced: None,
        }
    }

    /// What one poll showed, the family, and a label's value: the samples.
    fn samples(text: &str, family: &str, label: &str) -> Vec<(String, f64)> {
        let m = openmetrics_parser::openmetrics::parse_openmetrics(text)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let Some(f) = m.families.get(family) else {
            return Vec::new();
        };
        let kind = f.family_type;
        f.iter_samples()
            .map(|s| {
                let labels = s.get_labelset().unwrap_or_else(|e| panic!("{e:?}"));
                let value = match (&s.value, kind) {
                    (OpenMetricsValue::Gauge(n), _) => n.as_f64(),
                    (OpenMetricsValue::Counter(c), OpenMetricsType::Counter) => c.value.as_f64(),
                    (other, _) => panic!("{other:?}"),
                };
                (
                    labels.get_label_value(label).unwrap_or_default().to_owned(),
                    value,
                )
            })
            .collect()
    }

    /// An exporter, a store for it to read at render, and the account it
    /// is shown polls of.
    async fn exporter() -> (
        tempfile::TempDir,
        crate::adapters::sqlite::SqliteStore,
        Metrics,
        Account,
    ) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = crate::adapters::sqlite::SqliteStore::open(&dir.path().join("m.db"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let m = Metrics::new("1.2.3", "abc", &["tc".into()], &["ops".into()]);
        let account = Account {
            id: AccountId::parse("acme").unwrap_or_else(|e| panic!("{e}")),
            provider: "tc".into(),
            site: String::new(),
            labels: Default::default(),
        };
        (dir, store, m, account)
    }

    #[tokio::test]
    async fn a_resource_seen_again_shows_its_new_expiry_and_a_changed_renewal_its_new_series() {
        let (_dir, store, m, account) = exporter().await;
        let mut snapshot = Snapshot {
            taken_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
            balance: Balance::available_only(cny("10")),
            resources: vec![resource("ins-a"), resource("ins-b")],
            orders: Vec::new(),
            spend: None,
            recharges: Vec::new(),
            tally: None,
        };
        let (m, store) = (&m, &store);
        let shown = |s: &Snapshot| {
            m.polled(&Polled {
                account: &account,
                failure: None,
                took: std::time::Duration::from_millis(300),
                snapshot: Some(s),
                view: None,
                last_success_at: Some(s.taken_at),
            });
            let at = s.taken_at;
            async move {
                let text = m
                    .render(store, false, at)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    text.contains(
                        "# TYPE purser_resource_expiry_timestamp_seconds gauge\n\
                         purser_resource_expiry_timestamp_seconds{account=\"acme\",resource=\"ins-a\",product=\"cvm\","
                    ),
                    "{text}"
                );
                let mut by_renewal =
                    samples(&text, "purser_resource_expiry_timestamp_seconds", "renewal");
                by_renewal.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                by_renewal
            }
        };
        assert_eq!(
            shown(&snapshot).await,
            [
                ("auto".to_owned(), 1_800_000_000.0),
                ("auto".to_owned(), 1_800_000_000.0)
            ]
        );
        // Renewed: the same resources, one with a later expiry.
        snapshot.resources[0].expires_at += chrono::Duration::days(30);
        assert_eq!(
            shown(&snapshot).await,
            [
                ("auto".to_owned(), 1_800_000_000.0),
                ("auto".to_owned(), 1_802_592_000.0)
            ]
        );
        // Auto-renewal turned off on ins-b: its auto series goes.
        snapshot.resources[1].renewal = RenewalMode::Manual;
        assert_eq!(
            shown(&snapshot).await,
            [
                ("auto".to_owned(), 1_802_592_000.0),
                ("manual".to_owned(), 1_800_000_000.0)
            ]
        );
    }

    #[tokio::test]
    async fn what_a_poll_no_longer_shows_stops_being_exposed_and_counts_add_up() {
        let (_dir, store, m, account) = exporter().await;
        let mut snapshot = Snapshot {
            taken_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
            balance: Balance {
                cash: Some(cny("1000.05")),
                owed: Some(cny("12.5")),
                ..Balance::available_only(cny("987.55"))
            },
            resources: vec![resource("ins-a"), resource("ins-b")],
            orders: Vec::new(),
            spend: None,
            recharges: Vec::new(),
            tally: None,
        };
        let poll = |s: &Snapshot| {
            m.polled(&Polled {
                account: &account,
                failure: None,
                took: std::time::Duration::from_millis(300),
                snapshot: Some(s),
                view: None,
                last_success_at: Some(s.taken_at),
            })
        };
        poll(&snapshot);
        snapshot.balance.owed = None;
        snapshot.resources.pop();
        poll(&snapshot);
        m.cloud_call("tc", "RenewInstances", true);
        m.cloud_call("tc", "quote", false);
        m.paged("dm:slack", Sent::Retrying);
        m.notices("ops", Sent::Delivered, 3);
        let text = m
            .render(&store, false, snapshot.taken_at)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            samples(&text, "purser_balance", "account"),
            [("acme".to_owned(), 987.55)]
        );
        assert_eq!(
            samples(&text, "purser_balance_part", "part"),
            [("cash".to_owned(), 1000.05)],
            "owed went away"
        );
        assert_eq!(
            samples(
                &text,
                "purser_resource_expiry_timestamp_seconds",
                "resource"
            ),
            [("ins-a".to_owned(), 1_800_000_000.0)],
            "ins-b was released"
        );
        let mut calls = samples(&text, "purser_cloud_calls", "action");
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            calls,
            [
                ("RenewInstances".to_owned(), 1.0),
                ("quote".to_owned(), 1.0)
            ]
        );
        assert_eq!(
            samples(&text, "purser_pages", "result"),
            [("retrying".to_owned(), 1.0)]
        );
        assert_eq!(
            samples(&text, "purser_notices", "output"),
            [("ops".to_owned(), 3.0)]
        );
        assert_eq!(samples(&text, "purser_leader", ""), [(String::new(), 0.0)]);
        // Not leading: the store's state is the leader's to show.
        assert!(samples(&text, "purser_outbox_pending", "output").is_empty());
        let leading = m
            .render(&store, true, snapshot.taken_at)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            samples(&leading, "purser_outbox_pending", "output"),
            [("ops".to_owned(), 0.0)]
        );
        assert_eq!(
            samples(&leading, "purser_build_info", "commit"),
            [("abc".to_owned(), 1.0)]
        );
    }
}
