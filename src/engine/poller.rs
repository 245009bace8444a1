//! One poll of one account, then its evaluation: snapshot → rules → alert
//! changes and outbox rows, committed together.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{error, info, warn};

use super::guard;
use crate::domain::account::AccountSpec;
use crate::domain::alert::{self, Alert, Changes};
use crate::domain::forecast::{self, AccountView};
use crate::domain::model::{Account, AccountId, FailureKind, PollFailure, PollHealth, Snapshot};
use crate::domain::policy::Policy;
use crate::domain::request::{self, Request};
use crate::domain::rules::{self, AccountState, PendingPayment, RuleName, RuleSet, Undelivered};
use crate::domain::silence::{self, Silence};
use crate::ports::{
    Actions, BalanceEntries, Clock, FailedNotice, Judgement, Judging, Meter, PollRecord, Polled,
    Provider, ProviderError, Requests, Store, StoreError, Window,
};

/// Open requests read per evaluation at most; more open at once than this
/// is not a team's working set.
const OPEN_LIMIT: u32 = 500;

/// The handles one poll needs.
#[derive(Clone)]
pub struct Poller {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Which outputs hear of each alert.
    pub routing: Arc<crate::domain::routing::Routing>,
    pub timeout: chrono::Duration,
    /// Where approved top-ups are read, to say when one runs late.
    pub requests: Option<Arc<dyn Requests>>,
    pub policies: Arc<HashMap<AccountId, Arc<Policy>>>,
    /// Contract and unallocated balances people entered, laid over each
    /// snapshot.
    pub entries: Option<Arc<dyn BalanceEntries>>,
    /// What each poll is counted into, for the operators' metrics.
    pub meter: Arc<dyn Meter>,
    /// Where polls go to be recorded together with others (see
    /// `recording_together`); none: each is recorded alone.
    pub recorder: Option<Recorder>,
    /// The renewal prices each account's last poll here found.
    pub prices: Arc<super::pricing::Remembered>,
}

/// What one poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Notices were written to the outbox.
    pub wrote: bool,
    /// The account was read (it is not blind).
    pub read: bool,
}

/// A provider with the number of calls it may have open at once.
#[derive(Clone)]
pub struct LimitedProvider {
    pub provider: Arc<dyn Provider>,
    pub permits: Arc<Semaphore>,
    /// Where renewals are priced, when the cloud can price them.
    pub actions: Option<Arc<dyn Actions>>,
}

impl Poller {
    /// Starts `workers` tasks that record polls many at a time, and gives
    /// the poller that hands its polls to them.
    pub fn recording_together(mut self, workers: usize) -> Poller {
        let (tx, rx) = mpsc::channel::<Job>(BATCH * 2);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        self.recorder = None;
        for _ in 0..workers.max(1) {
            tokio::spawn(record_queued(self.clone(), rx.clone()));
        }
        self.recorder = Some(Recorder {
            tx,
            room: Arc::new(Semaphore::new(BATCH * 2 * workers.max(1))),
        });
        self
    }

    /// Polls, records and evaluates one account.
    pub async fn run(
        &self,
        account: Arc<AccountSpec>,
        provider: &LimitedProvider,
    ) -> Result<PollOutcome, StoreError> {
        // Fetching faster than polls are recorded would only pile snapshots
        // up in memory: a poll waits for room before it asks the cloud.
        let _room =
            match &self.recorder {
                Some(recorder) => Some(recorder.room.acquire().await.map_err(|_| {
                    StoreError::Unavailable("the poll recorder has stopped".into())
                })?),
                None => None,
            };
        // Boxed, so that a whole cycle's polls waiting for room stay small.
        Box::pin(self.fetch_and_record(account, provider)).await
    }

    async fn fetch_and_record(
        &self,
        account: Arc<AccountSpec>,
        provider: &LimitedProvider,
    ) -> Result<PollOutcome, StoreError> {
        let id = &account.account.id;
        let started = self.clock.now();
        let outcome = match self.poll(&account, provider).await {
            Ok(mut snapshot) => {
                self.price(&account, provider, &mut snapshot).await?;
                Ok(snapshot)
            }
            Err(e) => {
                warn!(account = %id, error = %e, "poll failed; keeping the last good snapshot");
                Err(e.failure())
            }
        };
        let mut fetched = Fetched {
            account,
            started,
            at: self.clock.now(),
            outcome,
        };
        match &self.recorder {
            Some(recorder) => recorder.record(fetched).await,
            None => self
                .record(std::slice::from_mut(&mut fetched))
                .await?
                .pop()
                .ok_or_else(|| StoreError::Unavailable("the poll was not recorded".into())),
        }
    }

    /// Records polls and judges their accounts: a few reads and writes for
    /// the lot, then one outcome per poll, in order.
    async fn record(&self, batch: &mut [Fetched]) -> Result<Vec<PollOutcome>, StoreError> {
        let Some(earliest) = batch.iter().map(|f| f.at).min() else {
            return Ok(Vec::new());
        };
        self.enter_balances(batch).await?;
        // Read before this batch is written: the snapshots it holds are
        // judged as held, and each one's tally is carried from the one the
        // store holds before it.
        let windows: Vec<Window> = batch
            .iter()
            .map(|f| Window {
                account: &f.account.account.id,
                since: f.at - f.account.rules.runway.window,
                fresh: f.outcome.as_ref().ok().map(|s| s.taken_at),
            })
            .collect();
        let mut readings = self.store.judging(&windows).await?;
        drop(windows);
        carry_tallies(batch, &readings);
        let polls: Vec<PollRecord> = batch
            .iter()
            .map(|f| PollRecord {
                account: &f.account.account.id,
                at: f.at,
                outcome: f.outcome.as_ref(),
            })
            .collect();
        let healths = self.store.record_polls(&polls).await?;
        drop(polls);
        // Each account's history as it now stands: what was read, with
        // every snapshot the batch holds of the account in its place (as
        // held: a store may have read others thin). The snapshots are
        // moved there, not copied, their resources being most of a cycle's
        // work: the batch keeps each without its resources and orders.
        let mut held: HashMap<AccountId, Vec<Snapshot>> = HashMap::new();
        for f in batch.iter_mut() {
            if let Ok(s) = &mut f.outcome {
                let whole = Snapshot {
                    resources: std::mem::take(&mut s.resources),
                    orders: std::mem::take(&mut s.orders),
                    ..s.clone()
                };
                held.entry(f.account.account.id.clone())
                    .or_default()
                    .push(whole);
            }
        }
        let batch = &*batch;
        // An account's last place in the batch takes its snapshots; any
        // before it (an account polled twice in one batch), copies.
        let last: HashMap<&AccountId, usize> = batch
            .iter()
            .enumerate()
            .map(|(i, f)| (&f.account.account.id, i))
            .collect();
        for (i, (f, reading)) in batch.iter().zip(readings.iter_mut()).enumerate() {
            let id = &f.account.account.id;
            let fresh = match last.get(id) == Some(&i) {
                true => held.remove(id),
                false => held.get(id).cloned(),
            };
            let Some(fresh) = fresh else {
                continue;
            };
            let history = &mut reading.history;
            history.retain(|s| !fresh.iter().any(|h| h.taken_at == s.taken_at));
            history.extend(fresh);
            history.sort_by_key(|s| s.taken_at);
            // As the store cuts a window: from its start, or from the
            // newest snapshot when none is newer.
            if let Some(newest) = history.last().map(|s| s.taken_at) {
                let cut = (f.at - f.account.rules.runway.window).min(newest);
                history.retain(|s| s.taken_at >= cut);
            }
        }
        let silences = self.store.silences(earliest).await?;
        let requests = self.open_requests(batch).await?;
        let mut judged = Vec::with_capacity(batch.len());
        for ((f, health), reading) in batch.iter().zip(&healths).zip(&readings) {
            let id = &f.account.account.id;
            let payments: Vec<PendingPayment> = match self.policies.get(id) {
                Some(policy) => requests
                    .iter()
                    .filter(|r| &r.account == id)
                    .filter_map(|r| request::pending_payment(r, policy))
                    .collect(),
                None => Vec::new(),
            };
            let judge = |health: &PollHealth, blind: bool| {
                judge(
                    &f.account, health, reading, &payments, &silences, f.at, blind,
                )
            };
            judged.push(match guard::caught_now(|| judge(health, false)) {
                Ok(done) => done,
                Err(why) => {
                    // A fault in purser: the account is judged as one it
                    // cannot read, so that poll_failed says so at once and
                    // the other accounts are watched on.
                    error!(account = %id, panic = %why, "judging the account failed; reporting it as unreadable");
                    let mut blind = health.clone();
                    blind.failed(
                        f.at,
                        PollFailure {
                            kind: FailureKind::Internal,
                            message: format!("judging what the cloud answered failed: {why}"),
                        },
                    );
                    judge(&blind, true)
                }
            });
        }
        let judgements: Vec<Judgement> = batch
            .iter()
            .zip(&judged)
            .map(|(f, (changes, view))| Judgement {
                account: &f.account.account,
                view: view.as_ref(),
                changes,
            })
            .collect();
        self.store
            .record_judgements(&judgements, &self.routing)
            .await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (((f, health), (changes, view)), reading) in
            batch.iter().zip(&healths).zip(&judged).zip(&readings)
        {
            let id = &f.account.account.id;
            let took = (self.clock.now() - f.started).to_std().unwrap_or_default();
            // The snapshot whole, where it was moved to.
            let snapshot = f.outcome.as_ref().ok().map(|kept| {
                reading
                    .history
                    .iter()
                    .rev()
                    .find(|s| s.taken_at == kept.taken_at)
                    .unwrap_or(kept)
            });
            self.meter.polled(&Polled {
                account: &f.account.account,
                failure: f.outcome.as_ref().err().map(|e| e.kind),
                took,
                snapshot,
                view: view.as_ref(),
                last_success_at: health.last_success_at,
            });
            for n in &changes.notices {
                info!(
                    account = %id,
                    fingerprint = %n.alert.fingerprint,
                    rule = %n.alert.key.rule,
                    kind = n.kind.as_str(),
                    "alert notice decided"
                );
            }
            outcomes.push(PollOutcome {
                wrote: !changes.notices.is_empty(),
                read: f.outcome.is_ok(),
            });
        }
        Ok(outcomes)
    }

    /// Lays the balances people entered for parts of an account (a
    /// contract's money, the unallocated money) over what was read: one
    /// read for the batch.
    async fn enter_balances(&self, batch: &mut [Fetched]) -> Result<(), StoreError> {
        let Some(entries) = &self.entries else {
            return Ok(());
        };
        let read: Vec<&AccountId> = batch
            .iter()
            .filter(|f| f.outcome.is_ok())
            .map(|f| &f.account.account.id)
            .collect();
        if read.is_empty() {
            return Ok(());
        }
        let entered = entries.bucket_entries_of(&read).await?;
        for f in batch.iter_mut() {
            if let (Ok(snapshot), Some(entered)) =
                (&mut f.outcome, entered.get(&f.account.account.id))
            {
                snapshot.balance.with_entries(entered);
            }
        }
        Ok(())
    }

    /// The open requests, read once for a batch, when one of its accounts
    /// has a policy (only then can a payment run late).
    async fn open_requests(&self, batch: &[Fetched]) -> Result<Vec<Request>, StoreError> {
        match &self.requests {
            Some(requests)
                if batch
                    .iter()
                    .any(|f| self.policies.contains_key(&f.account.account.id)) =>
            {
                requests.requests(true, OPEN_LIMIT).await
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn poll(
        &self,
        account: &AccountSpec,
        provider: &LimitedProvider,
    ) -> Result<Snapshot, ProviderError> {
        let timeout = self.timeout;
        // The permit bounds calls per provider; the timeout bounds how long a slow
        // account can hold one, so it never stalls the others for long.
        let _permit = provider
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::Transport("shutting down".into()))?;
        let deadline = self.clock.now() + timeout;
        let snapshot = tokio::select! {
            r = guard::caught(provider.provider.poll(&account.account)) => r.map_err(|why| {
                ProviderError::Malformed(format!("purser failed while reading the answer ({why})"))
            })??,
            _ = self.clock.sleep_until(deadline) => {
                return Err(ProviderError::Timeout(timeout.to_std().unwrap_or_default()));
            }
        };
        let reported = snapshot.balance.available.currency();
        if reported != account.currency {
            return Err(ProviderError::Malformed(format!(
                "the account reports its balance in {reported}, but is configured as {}",
                account.currency
            )));
        }
        Ok(snapshot)
    }

    /// Prices what auto-renews within the rule's window (a price the last
    /// snapshot holds is kept while it still applies).
    async fn price(
        &self,
        account: &AccountSpec,
        provider: &LimitedProvider,
        snapshot: &mut Snapshot,
    ) -> Result<(), StoreError> {
        let Some(actions) = &provider.actions else {
            return Ok(());
        };
        let rule = &account.rules.autorenew_at_risk;
        let now = snapshot.taken_at;
        if !rule.enabled
            || !snapshot
                .resources
                .iter()
                .any(|r| rules::renews_within(r, rule.within, now))
        {
            return Ok(());
        }
        let id = &account.account.id;
        let previous = match self.prices.take(id) {
            Some(remembered) => remembered,
            None => (self.store.latest_snapshot(id).await?)
                .map(|s| super::pricing::known(&s.resources).into_boxed_slice())
                .unwrap_or_default(),
        };
        let Ok(_permit) = provider.permits.acquire().await else {
            return Ok(());
        };
        let deadline = self.clock.now() + self.timeout;
        let priced = guard::caught(super::pricing::price(
            actions.as_ref(),
            self.clock.as_ref(),
            &account.account,
            snapshot,
            &previous,
            rule.within,
            deadline,
        ))
        .await;
        match priced {
            Ok(()) => self.prices.keep(id, snapshot),
            Err(why) => error!(account = %id, panic = %why, "pricing renewals failed"),
        }
        Ok(())
    }

    /// Judges at once whether an output has lost notices about `account`
    /// (its other rules wait for their poll), and writes what changes.
    pub async fn judge_deliveries(&self, account: &AccountSpec) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let id = &account.account.id;
        let undelivered = undelivered(&self.store.failed_notices(Some(id.as_str())).await?);
        let health = PollHealth::new();
        let state = AccountState {
            account: &account.account,
            history: &[],
            health: &health,
            payments: &[],
            undelivered: &undelivered,
        };
        let findings: Vec<_> = rules::evaluate(&account.rules, &state, now)
            .findings
            .into_iter()
            .filter(|f| f.key.rule == RuleName::DeliveryFailed)
            .collect();
        let open: Vec<Alert> = self
            .store
            .open_alerts(id)
            .await?
            .into_iter()
            .filter(|a| a.key.rule == RuleName::DeliveryFailed)
            .collect();
        let changes = self.reconcile(account, &open, &findings, now).await?;
        let wrote = !changes.notices.is_empty();
        self.store
            .apply(&account.account, &changes, &self.routing)
            .await?;
        Ok(wrote)
    }

    async fn reconcile(
        &self,
        account: &AccountSpec,
        open: &[Alert],
        findings: &[rules::Finding],
        now: DateTime<Utc>,
    ) -> Result<Changes, StoreError> {
        self.reconcile_for(&account.account, &account.rules, open, findings, now)
            .await
    }

    async fn reconcile_for(
        &self,
        account: &Account,
        rules: &RuleSet,
        open: &[Alert],
        findings: &[rules::Finding],
        now: DateTime<Utc>,
    ) -> Result<Changes, StoreError> {
        let silences = self.store.silences(now).await?;
        let muted = |a: &Alert| {
            silence::silenced_by(&silences, account, &a.key, a.severity.as_str(), now).is_some()
        };
        Ok(alert::reconcile(open, findings, rules, &muted, now))
    }

    /// Judges purser's own watch (the holiday calendar running out) and
    /// writes what changes; its alerts are kept under the account `purser`.
    pub async fn judge_own(&self, own: &OwnWatch) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let account = Account {
            id: AccountId::parse(rules::SELF).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            provider: rules::SELF.into(),
            site: String::new(),
            labels: Default::default(),
        };
        let findings: Vec<rules::Finding> = rules::calendar_expiring(
            &own.rules.calendar_expiring,
            &own.covers,
            &own.file,
            own.zone,
            now,
        )
        .into_iter()
        .collect();
        let open: Vec<Alert> = self
            .store
            .open_alerts(&account.id)
            .await?
            .into_iter()
            .filter(|a| a.key.rule == RuleName::CalendarExpiring)
            .collect();
        let changes = self
            .reconcile_for(&account, &own.rules, &open, &findings, now)
            .await?;
        let wrote = !changes.notices.is_empty();
        self.store.apply(&account, &changes, &self.routing).await?;
        Ok(wrote)
    }
}

/// What purser watches of itself: the holiday calendar's years.
#[derive(Debug, Clone)]
pub struct OwnWatch {
    pub rules: RuleSet,
    /// The years the holiday file covers; empty: none is configured.
    pub covers: Vec<i32>,
    /// The holiday file, as the config names it.
    pub file: String,
    pub zone: chrono_tz::Tz,
}

/// Most polls recorded together; more waiting go in the next batch.
const BATCH: usize = 256;

/// What one poll fetched, waiting to be recorded.
struct Fetched {
    account: Arc<AccountSpec>,
    started: DateTime<Utc>,
    /// When the answer came (or the poll gave up).
    at: DateTime<Utc>,
    outcome: Result<Snapshot, PollFailure>,
}

struct Job {
    fetched: Fetched,
    done: oneshot::Sender<Result<PollOutcome, StoreError>>,
}

/// Where polls are handed to be recorded with the others waiting.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Job>,
    /// Polls between asking the cloud and being recorded.
    room: Arc<Semaphore>,
}

impl Recorder {
    async fn record(&self, fetched: Fetched) -> Result<PollOutcome, StoreError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Job { fetched, done })
            .await
            .map_err(|_| StoreError::Unavailable("the poll recorder has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the poll recorder stopped before recording the poll".into())
        })?
    }
}

/// Records what is queued, a batch at a time, until every poller is gone.
async fn record_queued(poller: Poller, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut jobs = Vec::with_capacity(BATCH);
    loop {
        // One worker takes a batch while another records the one before.
        if queue.lock().await.recv_many(&mut jobs, BATCH).await == 0 {
            return;
        }
        let (mut batch, done): (Vec<Fetched>, Vec<_>) =
            jobs.drain(..).map(|j| (j.fetched, j.done)).unzip();
        match guard::caught(poller.record(&mut batch)).await {
            Ok(Ok(outcomes)) => {
                for (done, outcome) in done.into_iter().zip(outcomes) {
                    let _ = done.send(Ok(outcome));
                }
            }
            Ok(Err(e)) => {
                let e = Arc::new(e);
                for done in done {
                    let _ = done.send(Err(StoreError::Shared(e.clone())));
                }
            }
            Err(why) => {
                error!(panic = %why, polls = batch.len(), "recording polls failed inside purser");
                for done in done {
                    let _ = done.send(Err(StoreError::Unavailable(format!(
                        "recording the poll failed inside purser: {why}"
                    ))));
                }
            }
        }
    }
}

/// Carries each snapshot of the batch a tally from the snapshot before it:
/// the newest the store held of its account, or one earlier in the batch.
fn carry_tallies(batch: &mut [Fetched], readings: &[Judging]) {
    let mut newest: HashMap<AccountId, usize> = HashMap::new();
    for i in 0..batch.len() {
        let (earlier, rest) = batch.split_at_mut(i);
        let Some(f) = rest.first_mut() else { break };
        let id = &f.account.account.id;
        let Ok(cur) = &mut f.outcome else { continue };
        let stored = readings.get(i).and_then(|r| r.history.last());
        let in_batch = newest
            .get(id)
            .and_then(|&j| earlier.get(j))
            .and_then(|e| e.outcome.as_ref().ok());
        let prev = stored
            .into_iter()
            .chain(in_batch)
            .max_by_key(|s| s.taken_at);
        cur.tally = forecast::carry(prev, cur);
        if in_batch.is_none_or(|p| p.taken_at <= cur.taken_at) {
            newest.insert(id.clone(), i);
        }
    }
}

/// One account's alert changes and view at `now`, from what the store
/// holds of it; `blind`: judged on its health alone, with no history (what
/// judging it fully could not do).
fn judge(
    account: &AccountSpec,
    health: &PollHealth,
    reading: &Judging,
    payments: &[PendingPayment],
    silences: &[Silence],
    now: DateTime<Utc>,
    blind: bool,
) -> (Changes, Option<AccountView>) {
    let history: &[Snapshot] = if blind { &[] } else { &reading.history };
    let view = AccountView::of(history, account.rules.runway.window, now);
    let undelivered = undelivered(&reading.failed);
    let state = AccountState {
        account: &account.account,
        history,
        health,
        payments,
        undelivered: &undelivered,
    };
    let evaluation = rules::evaluate(&account.rules, &state, now);
    let muted = |a: &Alert| {
        silence::silenced_by(silences, &account.account, &a.key, a.severity.as_str(), now).is_some()
    };
    let changes = alert::reconcile(
        &reading.open,
        &evaluation.findings,
        &account.rules,
        &muted,
        now,
    );
    (changes, view)
}

/// Notices about an account that an output never took, as the rules see them.
fn undelivered(failed: &[FailedNotice]) -> Vec<Undelivered> {
    failed
        .iter()
        .map(|f| Undelivered {
            output: f.output.clone(),
            rule: f.notice.rule,
            severity: f.notice.severity,
            error: f.error.clone(),
            failed_at: f.failed_at,
        })
        .collect()
}
