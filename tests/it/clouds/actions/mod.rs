//! Approved requests carried out against cloud mocks that keep state and
//! count every charge: from chat through the running daemon, with a crash
//! injected at every write, with lost answers, and with two executors racing
//! on one request. Never a second charge.

mod alibaba;
mod huawei;
mod leases;
mod storm;
mod tencent;
mod topups;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use purser::adapters::cloud::CloudAccess;
use purser::adapters::sqlite::SqliteStore;
use purser::domain::account::AccountSpec;
use purser::domain::audit;
use purser::domain::money::{Currency, Money};
use purser::domain::request::{Action, Decision, Request, RequestId, State, Tiers, Verdict, Via};
use purser::engine::chatops::{Asker, ChatOps, ReplyKind};
use purser::engine::clock::ManualClock;
use purser::engine::executor::{Executor, Ran};
use purser::ports::{Actions, Clock, Lease, NewRequest, Requests, Step, StoreError, Written};
use rust_decimal::Decimal;
use serde_json::Value;

use super::mock::Mock;
use crate::helpers::{Setup, TestApp, World, epoch};

pub(super) const PEOPLE: &str = r#"
[[people]]
name = "rex"
role = "requester"
slack = "U0REX"

[[people]]
name = "ana"
role = "approver"
telegram = "1001"

[[people]]
name = "bo"
role = "approver"
discord = "2002"
"#;

pub(super) fn who(name: &str) -> Asker {
    let (platform, user) = match name {
        "rex" => ("slack", "U0REX"),
        "ana" => ("telegram", "1001"),
        "bo" => ("discord", "2002"),
        other => panic!("no {other}"),
    };
    Asker {
        platform: platform.into(),
        user: user.into(),
    }
}

/// The daemon over one cloud account (`account`, its config; `keys`, its key
/// files) and `more` config, started and settled, with its chat service.
pub(super) async fn daemon(
    account: &str,
    keys: &[(&str, &str)],
    more: &str,
) -> (World, TestApp, Arc<ChatOps>) {
    let config = format!("{account}{PEOPLE}{more}");
    let world = World::new(
        "",
        Setup {
            accounts: &[],
            rules: &config,
            ..Setup::default()
        },
    )
    .await;
    for (file, key) in keys {
        std::fs::write(world.dir.path().join(file), key).unwrap();
    }
    let app = world.start().await;
    app.settle().await;
    let chat = world.chat_ops(&app);
    (world, app, chat)
}

/// What `name` is told when they say `text`.
pub(super) async fn say(chat: &ChatOps, name: &str, text: &str) -> (ReplyKind, String) {
    let r = chat.handle(&who(name), text).await;
    (r.kind, r.text())
}

/// The audit chain verifies, and these calls were recorded, in order.
pub(super) async fn calls_in_the_log(store: &dyn purser::ports::Requests) -> Vec<String> {
    let log = store.audit_log(None).await.unwrap();
    let head = store.audit_head().await.unwrap();
    audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str()))).unwrap();
    log.iter()
        .filter(|e| e.event == "call")
        .map(|e| {
            let d: Value = serde_json::from_str(&e.detail).unwrap();
            d["call"].as_str().unwrap().to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------- crashes

/// The store, with the process dying at its `at`-th write: before the
/// write commits, or just after.
/// Once dead it does nothing more: it neither writes nor gives up its lease.
pub(super) struct Crashing {
    inner: Arc<dyn Requests>,
    at: usize,
    after_commit: bool,
    writes: AtomicUsize,
    dead: AtomicBool,
    /// Leases taken or renewed so far.
    holds: tokio::sync::watch::Sender<usize>,
    /// Told when it dies.
    died: Arc<tokio::sync::Notify>,
}

impl Crashing {
    pub(super) fn new(inner: impl Requests + 'static, at: usize, after_commit: bool) -> Crashing {
        Crashing::over(Arc::new(inner), at, after_commit)
    }

    /// As `new`, over a store shared by other processes.
    pub(super) fn over(inner: Arc<dyn Requests>, at: usize, after_commit: bool) -> Crashing {
        Crashing {
            inner,
            at,
            after_commit,
            writes: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            holds: tokio::sync::watch::Sender::new(0),
            died: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified when this process dies at a write.
    pub(super) fn died(&self) -> Arc<tokio::sync::Notify> {
        self.died.clone()
    }

    /// A store that never crashes, counting leases taken and renewed.
    pub(super) fn healthy(inner: impl Requests + 'static) -> Crashing {
        Crashing::new(inner, usize::MAX, false)
    }

    pub(super) fn holds(&self) -> tokio::sync::watch::Receiver<usize> {
        self.holds.subscribe()
    }

    fn crash(&self) -> Option<bool> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let crash = (n == self.at).then_some(self.after_commit);
        if crash.is_some() {
            self.dead.store(true, Ordering::SeqCst);
            self.died.notify_waiters();
        }
        crash
    }

    fn alive(&self) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(died());
        }
        Ok(())
    }
}

fn died() -> StoreError {
    StoreError::Corrupt("the process died here".into())
}

#[async_trait]
impl Requests for Crashing {
    async fn open_request(&self, new: &NewRequest) -> Result<Request, StoreError> {
        self.inner.open_request(new).await
    }
    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        self.inner.request(id).await
    }
    async fn requests(&self, open_only: bool, limit: u32) -> Result<Vec<Request>, StoreError> {
        self.inner.requests(open_only, limit).await
    }
    async fn requests_since(&self, since: DateTime<Utc>) -> Result<Vec<Request>, StoreError> {
        self.inner.requests_since(since).await
    }
    async fn record_decision(
        &self,
        id: RequestId,
        version: u64,
        decision: &Decision,
        then: Option<State>,
    ) -> Result<Written, StoreError> {
        self.inner
            .record_decision(id, version, decision, then)
            .await
    }
    async fn transition(&self, id: RequestId, step: Step<'_>) -> Result<Written, StoreError> {
        self.alive()?;
        match self.crash() {
            None => self.inner.transition(id, step).await,
            Some(true) => {
                self.inner.transition(id, step).await?;
                Err(died())
            }
            Some(false) => Err(died()),
        }
    }
    async fn progress(&self, id: RequestId) -> Result<Option<Value>, StoreError> {
        self.inner.progress(id).await
    }
    async fn record_progress(
        &self,
        id: RequestId,
        version: u64,
        progress: &Value,
        audit: &[audit::NewEntry],
    ) -> Result<Written, StoreError> {
        self.alive()?;
        match self.crash() {
            None => {
                self.inner
                    .record_progress(id, version, progress, audit)
                    .await
            }
            Some(true) => {
                self.inner
                    .record_progress(id, version, progress, audit)
                    .await?;
                Err(died())
            }
            Some(false) => Err(died()),
        }
    }
    async fn hold(
        &self,
        id: RequestId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        self.alive()?;
        let lease = self.inner.hold(id, holder, now, until).await;
        self.holds.send_modify(|n| *n += 1);
        lease
    }
    async fn release(&self, id: RequestId, holder: &str) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.release(id, holder).await
    }
    async fn audit(&self, entries: &[audit::NewEntry]) -> Result<(), StoreError> {
        self.inner.audit(entries).await
    }
    async fn audit_log(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<audit::Entry>, StoreError> {
        self.inner.audit_log(since).await
    }
    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.inner.audit_head().await
    }
}

// ---------------------------------------------------------------- the rig

/// One account on a cloud mock, a store, and executors made on demand.
pub(super) struct Rig {
    _dir: tempfile::TempDir,
    pub store: SqliteStore,
    pub clock: Arc<ManualClock>,
    pub mock: Mock,
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    actions: HashMap<String, Arc<dyn Actions>>,
}

impl Rig {
    /// `account` is the account's config; `keys` its key files; `adapter`
    /// builds the cloud's adapter for it, given its credentials.
    pub(super) async fn new(
        mock: Mock,
        account: &str,
        keys: &[(&str, &str)],
        adapter: impl FnOnce(&AccountSpec, CloudAccess, Arc<ManualClock>) -> (String, Arc<dyn Actions>),
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        let clock = Arc::new(ManualClock::new(epoch()));
        for (file, key) in keys {
            std::fs::write(dir.path().join(file), key).unwrap();
        }
        let config = format!("[store]\npath = \"p.db\"\n{account}");
        std::fs::write(dir.path().join("purser.toml"), config).unwrap();
        let config = purser::config::Config::load(&dir.path().join("purser.toml")).unwrap();
        let accounts: Arc<Vec<Arc<AccountSpec>>> = config.accounts.clone();
        let id = &accounts[0].account.id;
        let access = config
            .providers
            .iter()
            .find_map(|p| p.credentials.get(id))
            .cloned()
            .unwrap();
        let (name, actions) = adapter(&accounts[0], access, clock.clone());
        Rig {
            _dir: dir,
            store,
            clock,
            mock,
            accounts,
            actions: HashMap::from([(name, actions)]),
        }
    }

    pub(super) fn executor(&self, requests: Arc<dyn Requests>) -> Executor {
        self.executor_with(requests, |a| a)
    }

    /// An executor whose cloud actions go through `wrap`.
    pub(super) fn executor_with(
        &self,
        requests: Arc<dyn Requests>,
        wrap: impl Fn(Arc<dyn Actions>) -> Arc<dyn Actions>,
    ) -> Executor {
        let actions = self
            .actions
            .iter()
            .map(|(name, a)| (name.clone(), wrap(a.clone())))
            .collect();
        Executor::new(requests, self.accounts.clone(), actions, self.clock.clone())
    }

    /// A request for `action`, approved by ana.
    pub(super) async fn approved(&self, action: Action) -> Request {
        let cost = Money::new(Decimal::from(600), Currency::Cny);
        let r = self
            .store
            .open_request(&NewRequest {
                account: self.accounts[0].account.id.clone(),
                action,
                reason: None,
                cost: Some(cost),
                balance: None,
                tier: Tiers::defaults().for_amount(Some(&cost)).clone(),
                requested_by: "rex".into(),
                requested_at: self.clock.now(),
                expires_at: self.clock.now() + Duration::hours(24),
                origin: None,
            })
            .await
            .unwrap();
        let decision = Decision {
            by: "ana".into(),
            role: "approver".into(),
            verdict: Verdict::Approve,
            at: self.clock.now(),
            via: Via {
                platform: "telegram".into(),
                message: None,
            },
            second_factor: false,
            comment: None,
        };
        match self
            .store
            .record_decision(r.id, r.version, &decision, Some(State::Approved))
            .await
            .unwrap()
        {
            Written::Done(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// One run of a fresh executor on the plain store.
    pub(super) async fn run(&self, id: RequestId) -> Ran {
        self.executor(Arc::new(self.store.clone()))
            .run(id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Time passes beyond the executor's lease (and the cloud's clock with it).
    pub(super) fn later(&self) {
        self.clock.advance(Duration::minutes(11));
        self.mock.set_now(self.clock.now());
    }

    pub(super) async fn state(&self, id: RequestId) -> State {
        self.store.request(id).await.unwrap().unwrap().state
    }

    /// A crash at write `at` (before or after it commits) on the first run;
    /// then a restarted executor, at once and after the lease, takes it to
    /// the end. Returns the final state.
    pub(super) async fn crash_and_resume(&self, id: RequestId, at: usize, after: bool) -> State {
        let crashing = Arc::new(Crashing::new(self.store.clone(), at, after));
        let first = self.executor(crashing).run(id).await;
        assert!(first.is_err(), "crash at write {at}: the first run died");
        let restarted = self.executor(Arc::new(self.store.clone()));
        // At once it leaves a call under lease alone…
        restarted.run(id).await.unwrap();
        // …and after the lease it reads back what the cloud did, as many
        // sweeps as the action has steps.
        for _ in 0..4 {
            self.later();
            restarted.run(id).await.unwrap();
        }
        let log = self.store.audit_log(None).await.unwrap();
        let head = self.store.audit_head().await.unwrap();
        audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str()))).unwrap();
        self.state(id).await
    }
}
