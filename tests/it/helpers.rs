use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use purser::config::Config;
use purser::engine::activity::Activity;
use purser::engine::clock::ManualClock;
use purser::ports::{Clock, Provider};
use purser::startup::Application;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub const SECRET: &str = "whsec-test-0123456789";

/// A guard against a hang, not a wait: every wait below ends on a signal.
const GUARD: std::time::Duration = std::time::Duration::from_secs(30);

pub fn epoch() -> DateTime<Utc> {
    // With nanoseconds, as a real clock reads: times must survive the store.
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::nanoseconds(123_456_789)
}

/// The webhook receiver: verifies each signature as a real receiver would and
/// records what it accepted. Anything else it is sent is counted as unexpected.
#[derive(Clone)]
pub struct Hook {
    pub addr: SocketAddr,
    state: Arc<HookState>,
}

struct HookState {
    received: Mutex<Vec<Value>>,
    rejected: AtomicUsize,
    unexpected: AtomicUsize,
    fail_next: AtomicUsize,
    arrived: Notify,
    clock: Mutex<Option<Arc<ManualClock>>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let state = Arc::new(HookState {
            received: Mutex::new(vec![]),
            rejected: AtomicUsize::new(0),
            unexpected: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            arrived: Notify::new(),
            clock: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .fallback(|State(s): State<Arc<HookState>>| async move {
                s.unexpected.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            })
            .with_state(state.clone());
        // Bind before spawning, so the address is live when purser starts.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { addr, state }
    }

    pub fn use_clock(&self, clock: Arc<ManualClock>) {
        *self.state.clock.lock().unwrap() = Some(clock);
    }

    /// Answer the next `n` requests with HTTP 500.
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Value> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    pub fn unexpected(&self) -> usize {
        self.state.unexpected.load(Ordering::SeqCst)
    }

    /// Waits until a notice matching `f` has arrived.
    pub async fn wait_for(&self, f: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(GUARD, async {
            loop {
                let arrived = self.state.arrived.notified();
                if let Some(v) = self.received().into_iter().find(|v| f(v)) {
                    return v;
                }
                arrived.await;
            }
        })
        .await
        .expect("the expected notice never arrived")
    }

    /// Waits until at least `n` notices have arrived.
    pub async fn wait_for_count(&self, n: usize) {
        tokio::time::timeout(GUARD, async {
            loop {
                let arrived = self.state.arrived.notified();
                if self.received().len() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} notices never arrived ({} did)", self.received().len()))
    }

    /// One field of every notice received for `rule`, in order.
    pub fn values(&self, rule: &str, field: &str) -> Vec<String> {
        self.received()
            .iter()
            .filter(|v| v["rule"] == rule)
            .map(|v| v[field].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// (kind, rule, account, resource, tier) of every notice received, in order.
    pub fn events(&self) -> Vec<(String, String, String, String, String)> {
        self.received()
            .iter()
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("kind"), s("rule"), s("account"), s("resource"), s("tier"))
            })
            .collect()
    }
}

async fn receive(State(s): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let ts: i64 = header("x-purser-timestamp").parse().unwrap_or(0);
    let now = s
        .clock
        .lock()
        .unwrap()
        .as_ref()
        .map(|c| c.now().timestamp())
        .unwrap_or(ts);
    if !purser::adapters::webhook::verify(
        SECRET,
        ts,
        &body,
        &header("x-purser-signature"),
        now,
        300,
    ) {
        s.rejected.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if s.fail_next.load(Ordering::SeqCst) > 0 {
        s.fail_next.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        s.unexpected.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    };
    assert_eq!(value["id"].as_str().unwrap(), header("x-purser-notice-id"));
    s.received.lock().unwrap().push(value);
    s.arrived.notify_waiters();
    StatusCode::OK
}

/// A temporary directory with a config and a scenario, reusable across restarts.
pub struct World {
    pub dir: tempfile::TempDir,
    pub hook: Hook,
    pub clock: Arc<ManualClock>,
}

pub struct Setup<'a> {
    pub accounts: &'a [&'a str],
    pub rules: &'a str,
    pub concurrency: usize,
    pub timeout: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            accounts: &["acme"],
            rules: "",
            concurrency: 4,
            timeout: "1m",
        }
    }
}

impl World {
    pub async fn new(scenario: &str, setup: Setup<'_>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let hook = Hook::start().await;
        let clock = Arc::new(ManualClock::new(epoch()));
        hook.use_clock(clock.clone());
        std::fs::write(dir.path().join("hook.secret"), SECRET).unwrap();
        let mut config = format!(
            r#"
[store]
path = "{db}"

[scheduler]
schedule = "0 * * * * *"
jitter = "0s"
timeout = "{timeout}"

[[providers]]
name = "sim"
kind = "simulated"
scenario = "scenario.toml"
concurrency = {concurrency}

[[outputs]]
name = "hook"
kind = "webhook"
url = "http://{addr}/hook"
secret = "file:hook.secret"
max_attempts = 5
"#,
            db = dir.path().join("purser.db").display(),
            timeout = setup.timeout,
            concurrency = setup.concurrency,
            addr = hook.addr,
        );
        for a in setup.accounts {
            config.push_str(&format!(
                "\n[[accounts]]\nid = \"{a}\"\nprovider = \"sim\"\nlabels = {{ env = \"prod\" }}\n"
            ));
        }
        config.push('\n');
        config.push_str(setup.rules);
        std::fs::write(dir.path().join("purser.toml"), config).unwrap();
        let world = World { dir, hook, clock };
        world.scenario(scenario);
        world
    }

    /// One account, `acme`, whose ¥2,000 fires a low-balance alert at the
    /// first poll, with `config` added: what the chat platforms' loops start
    /// from.
    pub async fn low_on_money(config: &str) -> World {
        World::new(
            "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
            Setup {
                rules: config,
                ..Setup::default()
            },
        )
        .await
    }

    /// A world with purser started in it and its first polls settled.
    pub async fn running(scenario: &str, setup: Setup<'_>) -> (World, TestApp) {
        let world = World::new(scenario, setup).await;
        let app = world.start().await;
        app.settle().await;
        (world, app)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("purser.toml")
    }

    /// Replaces the scenario; the provider sees it on its next poll.
    pub fn scenario(&self, text: &str) {
        let text = format!("epoch = \"{}\"\n{text}", epoch().to_rfc3339());
        std::fs::write(self.dir.path().join("scenario.toml"), text).unwrap();
    }

    /// The chat service over this world's config and `app`'s store, for
    /// endpoints built by hand (with settings the config cannot give).
    pub fn chat_ops(&self, app: &TestApp) -> Arc<purser::engine::chatops::ChatOps> {
        let config = Config::load(&self.config_path()).unwrap();
        Arc::new(purser::engine::chatops::ChatOps {
            store: app.store.clone(),
            refs: app.store.clone(),
            entries: app.store.clone(),
            accounts: config.accounts.clone(),
            entered: config.entered_balance_accounts(),
            directory: config.directory(),
            clock: self.clock.clone(),
            routing: config.routing(),
            outbox: None,
            approvals: app.approvals.clone(),
            oncall: Arc::new(purser::startup::escalation_settings(&config)),
            escalations: app.store.clone(),
            views: Default::default(),
        })
    }

    pub async fn start(&self) -> TestApp {
        self.start_with(HashMap::new()).await
    }

    pub async fn start_with(&self, providers: HashMap<String, Arc<dyn Provider>>) -> TestApp {
        TestApp::start(&self.config_path(), self.clock.clone(), providers).await
    }
}

impl TestApp {
    /// purser started on the config at `path`, on `clock`.
    pub async fn start(
        path: &std::path::Path,
        clock: Arc<ManualClock>,
        providers: HashMap<String, Arc<dyn Provider>>,
    ) -> TestApp {
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        let app = Application::build(config, clock.clone(), providers)
            .await
            .unwrap();
        let store = app.store();
        let role = app.role();
        let activity = app.activity();
        let approvals = app.approvals();
        let http = app.http_addr();
        let metrics = app.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestApp {
            clock,
            store,
            role,
            activity,
            approvals,
            http,
            metrics,
            stop: Some(stop),
            task,
        }
    }
}

pub struct TestApp {
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn purser::database::Database>,
    /// This replica's part (always the leader on SQLite).
    pub role: tokio::sync::watch::Receiver<purser::engine::leadership::Role>,
    pub activity: Activity,
    /// The daemon's requests: changes made through them redraw the cards.
    pub approvals: Arc<purser::engine::approvals::Approvals>,
    /// Where the HTTP listener listens, when the config has one.
    pub http: Option<std::net::SocketAddr>,
    /// Where `[metrics] listen` serves, when the config has it.
    pub metrics: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Waits until everything due by now has been polled, evaluated and sent.
    pub async fn settle(&self) {
        let t = self.clock.now();
        let mut rx = self.activity.subscribe();
        tokio::time::timeout(GUARD, rx.wait_for(|s| s.quiet_at(t)))
            .await
            .unwrap_or_else(|_| panic!("purser did not settle at {t}: {:?}", self.activity.get()))
            .unwrap();
    }

    pub async fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
        self.settle().await;
    }

    /// A graceful stop, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(GUARD, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// How the daemon ended by itself (a guard, not a wait, bounds it).
    pub async fn ended(mut self) -> anyhow::Result<()> {
        // Held, not dropped: a dropped sender would read as a stop.
        let _stop = self.stop.take();
        tokio::time::timeout(GUARD, &mut self.task)
            .await
            .expect("purser did not stop by itself")
            .unwrap()
    }

    /// Kills the daemon where it stands, as a crash would: nothing is
    /// finished, and (as when a process dies) its store lock is released.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One account, `acme`: its ¥2,000 fires a low-balance alert and two of its
/// instances expire within days — three alerts from one poll.
pub const SEVERAL: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"

[[accounts.resources]]
id = "ins-a"
product = "cvm"
expires_in = "5d"
renewal = "manual"

[[accounts.resources]]
id = "ins-b"
product = "cvm"
expires_in = "4d"
renewal = "manual"
"#;

/// `acme`'s low balance made severity A, ana alone on call for `ops`, and an
/// A chain that pages her directly after 15 minutes: what the chat
/// platforms' direct-message tests add to their config.
pub const ANA_ON_CALL: &str = r#"
[rules.low_balance]
tiers = [{ below = "3,000", severity = "A" }]

[[schedules]]
name = "ops"
rotation = "daily"
handoff = "09:00"
start = "2026-10-26"
people = ["ana"]

[escalation.A]
steps = [{ after = "15m", notify = ["oncall:ops"] }]
"#;
