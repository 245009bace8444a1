//! `purser check`: one poll of every account and one evaluation, printed.
//! Reads providers only; writes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::domain::account::AccountSpec;
use crate::domain::model::{FailureKind, PollFailure, PollHealth, Snapshot};
use crate::domain::money::Money;
use crate::domain::rules::{self, AccountState, Level, Severity};
use crate::ports::{BalanceEntries, Clock, ProviderError};
use crate::startup::{Adapter, build_adapter};

#[derive(Debug, Serialize)]
pub struct Report {
    pub checked_at: DateTime<Utc>,
    pub accounts: Vec<AccountRow>,
    pub resources: Vec<ResourceRow>,
    pub alerts: Vec<AlertRow>,
}

#[derive(Debug, Serialize)]
pub struct AccountRow {
    pub id: String,
    pub provider: String,
    pub site: String,
    /// Exact decimal string; absent when the account could not be read.
    pub available: Option<String>,
    pub currency: String,
    pub burn_per_day: Option<String>,
    pub runway_days: Option<f64>,
    pub error: Option<String>,
    #[serde(skip)]
    shown: (Option<Money>, Option<Money>),
}

#[derive(Debug, Serialize)]
pub struct ResourceRow {
    pub account: String,
    pub id: String,
    pub product: String,
    pub region: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub days_left: i64,
    pub renewal: String,
    pub status: String,
    /// The months one renewal adds.
    pub renewal_months: u32,
    /// Exact decimal string, as the cloud quoted it.
    pub renewal_price: Option<String>,
    /// Why the cloud gave no price, when one was wanted.
    pub unpriced: Option<String>,
    /// What the ledger last charged for renewing it, when unpriced.
    pub last_renewal_charge: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AlertRow {
    pub fingerprint: String,
    pub rule: String,
    pub severity: Severity,
    pub account: String,
    pub resource: Option<String>,
    pub summary: String,
}

impl Report {
    /// 0 when nothing fires, 1 when something does, 3 when something of severity A does.
    pub fn exit_code(&self) -> u8 {
        if self.alerts.iter().any(|a| a.severity == Severity::A) {
            3
        } else if self.alerts.is_empty() {
            0
        } else {
            1
        }
    }
}

/// `entries` holds hand-entered balances (the store), for clouds with no
/// balance API; `undelivered`, by account, the notices the daemon's outputs
/// never took (the store's, too).
/// Told as each account's poll ends, for a person watching many.
pub trait Progress: Sync {
    fn polled(&self, done: usize, of: usize);
    fn finished(&self);
}

/// A line on standard error, redrawn in place: `polled 37/120 accounts`.
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn polled(&self, done: usize, of: usize) {
        use std::io::Write;
        let width = 30;
        let filled = (done * width).checked_div(of).unwrap_or(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] polled {done}/{of} accounts",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = err.flush();
    }

    fn finished(&self) {
        use std::io::Write;
        // Erase the line: the report follows on standard output.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

pub async fn run(
    config: &Config,
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
    undelivered: &HashMap<String, Vec<rules::Undelivered>>,
    progress: Option<&dyn Progress>,
) -> Report {
    let now = clock.now();
    let results = poll_all(config, clock, entries, progress).await;
    let mut report = Report {
        checked_at: now,
        accounts: vec![],
        resources: vec![],
        alerts: vec![],
    };
    for (a, result) in config.accounts.iter().zip(results) {
        let undelivered = undelivered
            .get(a.account.id.as_str())
            .map_or(&[][..], Vec::as_slice);
        add_account(&mut report, a, result, undelivered, now);
    }
    // purser's own watch: the holiday file running out.
    if let Some(file) = &config.oncall.calendar_file
        && let Some(f) = rules::calendar_expiring(
            &config.own_rules.calendar_expiring,
            &config.oncall.calendar_years,
            file,
            config.oncall.calendar.zone,
            now,
        )
    {
        report.alerts.push(AlertRow {
            fingerprint: f.key.fingerprint(),
            rule: f.key.rule.as_str().to_owned(),
            severity: f.severity,
            account: f.key.account.clone(),
            resource: Some(f.key.resource.clone()),
            summary: f.summary,
        });
    }
    report
        .alerts
        .sort_by(|a, b| (a.severity, &a.account, &a.rule).cmp(&(b.severity, &b.account, &b.rule)));
    report
}

/// Every account polled once, each provider within its concurrency, with
/// what the store holds entered by hand and renewal prices looked up.
async fn poll_all(
    config: &Config,
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
    progress: Option<&dyn Progress>,
) -> Vec<Result<Snapshot, ProviderError>> {
    let providers: HashMap<String, (Adapter, Arc<Semaphore>)> = config
        .providers
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                (
                    build_adapter(&p.kind, &p.credentials, clock.clone(), entries.clone()),
                    Arc::new(Semaphore::new(p.concurrency)),
                ),
            )
        })
        .collect();
    let timeout = config
        .scheduler
        .timeout
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(30));
    let polls = config.accounts.iter().map(|a| {
        let (adapter, permits) = &providers[&a.account.provider];
        let clock = clock.clone();
        let entries = entries.clone();
        async move {
            let _permit = permits.acquire().await;
            let mut snapshot =
                match tokio::time::timeout(timeout, adapter.provider.poll(&a.account)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(ProviderError::Timeout(timeout)),
                };
            if let Some(entries) = &entries {
                let entered = entries.bucket_entries(&a.account.id).await.map_err(|e| {
                    ProviderError::Transport(format!(
                        "the balances entered by hand could not be read from the store: {e}"
                    ))
                })?;
                snapshot.balance.with_entries(&entered);
            }
            let rule = &a.rules.autorenew_at_risk;
            if let Some(actions) = adapter.actions.as_deref()
                && rule.enabled
            {
                let deadline = clock.now() + config.scheduler.timeout;
                crate::engine::pricing::price(
                    actions,
                    clock.as_ref(),
                    &a.account,
                    &mut snapshot,
                    &[],
                    rule.within,
                    deadline,
                )
                .await;
            }
            Ok(snapshot)
        }
    });
    let of = config.accounts.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let polls = polls.map(|poll| {
        let done = &done;
        async move {
            let r = poll.await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = progress {
                p.polled(n, of);
            }
            r
        }
    });
    if let Some(p) = progress {
        p.polled(0, of);
    }
    let results = futures_util::future::join_all(polls).await;
    if let Some(p) = progress {
        p.finished();
    }
    results
}

/// One account's row, its resources' rows and the alerts that fire on it.
fn add_account(
    report: &mut Report,
    a: &AccountSpec,
    result: Result<Snapshot, ProviderError>,
    undelivered: &[rules::Undelivered],
    now: DateTime<Utc>,
) {
    let mut health = PollHealth::new();
    let history: Vec<Snapshot> = match result {
        Ok(s) if s.balance.available.currency() != a.currency => {
            health.failed(
                now,
                PollFailure {
                    kind: FailureKind::Malformed,
                    message: format!(
                        "the account reports {}, but is configured as {}",
                        s.balance.available.currency(),
                        a.currency
                    ),
                },
            );
            vec![]
        }
        Ok(s) => {
            health.succeeded(now);
            vec![s]
        }
        Err(e) => {
            health.failed(now, e.failure());
            vec![]
        }
    };
    // A one-off check reads no requests: no payment can run late here.
    let state = AccountState {
        account: &a.account,
        history: &history,
        health: &health,
        payments: &[],
        undelivered,
    };
    let eval = rules::evaluate(&a.rules, &state, now);
    let latest = history.last();
    report.accounts.push(AccountRow {
        id: a.account.id.to_string(),
        provider: a.account.provider.clone(),
        site: a.account.site.clone(),
        available: latest.map(|s| s.balance.available.amount_string()),
        currency: a.currency.code().to_owned(),
        burn_per_day: eval
            .forecast
            .as_ref()
            .map(|f| f.burn.per_day.amount_string()),
        runway_days: eval
            .forecast
            .as_ref()
            .and_then(|f| f.runway_days)
            .and_then(|d| d.to_f64()),
        error: health
            .last_error
            .as_ref()
            .map(|e| crate::secret::redact(&e.message).into_owned()),
        shown: (
            latest.map(|s| s.balance.available),
            eval.forecast.as_ref().map(|f| f.burn.per_day),
        ),
    });
    for r in latest.map(|s| s.resources.as_slice()).unwrap_or_default() {
        report.resources.push(ResourceRow {
            account: a.account.id.to_string(),
            id: r.id.to_string(),
            product: r.product.clone(),
            region: r.region.clone(),
            expires_at: r.expires_at,
            days_left: (r.expires_at - now).num_seconds().div_euclid(86_400),
            renewal: r.renewal.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            renewal_months: r.period_months(),
            renewal_price: r.renewal_price.map(|p| p.amount_string()),
            unpriced: r.unpriced.as_ref().map(|u| u.why.clone()),
            last_renewal_charge: r
                .unpriced
                .as_ref()
                .and_then(|u| u.last_charge)
                .map(|c| c.amount.amount_string()),
        });
    }
    for f in eval
        .findings
        .into_iter()
        .filter(|f| f.level == Level::Breach)
    {
        report.alerts.push(AlertRow {
            fingerprint: f.key.fingerprint(),
            rule: f.key.rule.as_str().to_owned(),
            severity: f.severity,
            account: f.key.account.clone(),
            resource: (!f.key.resource.is_empty()).then(|| f.key.resource.clone()),
            summary: crate::secret::redact(&f.summary).into_owned(),
        });
    }
}

/// A table that reads well in a terminal.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<12} {:>16} {:>12} {:>10}  {}\n",
        "ACCOUNT", "PROVIDER", "AVAILABLE", "BURN/DAY", "RUNWAY", "STATUS"
    ));
    for a in &r.accounts {
        let money = |v: &Option<Money>| v.as_ref().map_or("-".to_owned(), Money::to_string);
        let runway = a
            .runway_days
            .map_or("-".to_owned(), |d| format!("{d:.1} d"));
        let status = a
            .error
            .as_deref()
            .map_or("ok".to_owned(), |e| format!("UNREADABLE: {e}"));
        out.push_str(&format!(
            "{:<20} {:<12} {:>16} {:>12} {:>10}  {}\n",
            a.id,
            a.provider,
            money(&a.shown.0),
            money(&a.shown.1),
            runway,
            status
        ));
    }
    let soon: Vec<&ResourceRow> = r
        .resources
        .iter()
        .filter(|x| x.days_left <= 30 || x.status != "active")
        .collect();
    if !soon.is_empty() {
        out.push_str(&format!(
            "\n{:<20} {:<22} {:<8} {:>9} {:<24} {}\n",
            "ACCOUNT", "RESOURCE", "PRODUCT", "DAYS LEFT", "RENEWAL", "STATUS"
        ));
        for x in soon {
            out.push_str(&format!(
                "{:<20} {:<22} {:<8} {:>9} {:<24} {}\n",
                x.account, x.id, x.product, x.days_left, x.renewal, x.status
            ));
        }
    }
    if r.alerts.is_empty() {
        out.push_str("\nNo alerts.\n");
    } else {
        out.push_str(&format!("\n{} alerts:\n", r.alerts.len()));
        for a in &r.alerts {
            let target = a
                .resource
                .as_ref()
                .map_or(a.account.clone(), |res| format!("{}/{res}", a.account));
            out.push_str(&format!(
                "[{}] {:<18} {}: {}\n",
                a.severity, a.rule, target, a.summary
            ));
        }
    }
    out
}
