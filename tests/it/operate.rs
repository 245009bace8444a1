//! What the people who run purser see of it: `/metrics` as Prometheus
//! reads it, `/readyz`, the heartbeat an outside check listens for, the
//! service manager's notifications, and logs as a collector parses them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{Method, Uri};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::helpers::{Setup, World};

/// A guard against a hang, not a wait.
const GUARD: std::time::Duration = std::time::Duration::from_secs(60);

/// One request the outside check received: method, path, body.
type Ping = (String, String, String);

/// A heartbeat check on loopback: every request it takes, in order.
async fn check_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Ping>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .fallback(
            |State(tx): State<mpsc::UnboundedSender<Ping>>,
             method: Method,
             uri: Uri,
             body: String| async move {
                let _ = tx.send((method.to_string(), uri.path().to_owned(), body));
                "OK"
            },
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

async fn next_ping(pings: &mut mpsc::UnboundedReceiver<Ping>) -> Ping {
    tokio::time::timeout(GUARD, pings.recv())
        .await
        .expect("no heartbeat came")
        .expect("the receiver stopped")
}

pub(crate) fn parse(text: &str) -> MetricsExposition<OpenMetricsType, OpenMetricsValue> {
    openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("not OpenMetrics ({e:?}):\n{text}"))
}

/// Each sample of `family` with `label`'s value: value.
pub(crate) fn by_label(
    m: &MetricsExposition<OpenMetricsType, OpenMetricsValue>,
    family: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let f = m
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    f.iter_samples()
        .map(|s| {
            let labels = s.get_labelset().unwrap();
            let key = labels.get_label_value(label).unwrap_or_default().to_owned();
            let value = match &s.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                other => panic!("{family}: {other:?}"),
            };
            (key, value)
        })
        .collect()
}

/// The demo, as its README runs it, in `dir`, with `env` set: its JSON log
/// lines as they come, and where it serves metrics once it says so.
struct Demo {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
    metrics: SocketAddr,
}

impl Demo {
    async fn start(dir: &Path, env: &[(&str, String)]) -> Demo {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_purser"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .args(["--log-format", "json"])
            .current_dir(dir)
            .env("PURSER_METRICS__LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
                if v["message"] == "metrics listening" {
                    let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
                kept.lock().unwrap().push(v);
            }
        });
        let addr = tokio::time::timeout(GUARD, addr_rx.recv())
            .await
            .expect("the demo never said where it serves metrics")
            .expect("the demo stopped");
        Demo {
            child,
            log,
            metrics: addr.parse().unwrap(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Option<String>, String) {
        let r = reqwest::get(format!("http://{}{path}", self.metrics))
            .await
            .unwrap();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), kind, r.text().await.unwrap())
    }

    /// Stops it as a service manager does (SIGTERM), and its exit status.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("the demo did not stop on SIGTERM")
            .unwrap()
    }
}

/// The demo's metrics, read as Prometheus reads them after the heartbeat
/// said the first cycle is done: every family the docs name, with its
/// type, and each account's balance to the fen as `purser check` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_exposes_its_accounts_as_check_reads_them_and_pings_its_check() {
    let dir = tempfile::tempdir().unwrap();
    let (hb, mut pings) = check_receiver().await;
    let demo = Demo::start(
        dir.path(),
        &[
            ("PURSER_HEARTBEAT__URL", "env:DEMO_CHECK_URL".to_owned()),
            ("DEMO_CHECK_URL", format!("http://{hb}/ping/demo-check")),
        ],
    )
    .await;

    // huawei-dev's key is refused in the demo: the cycle pings /fail, and
    // says which account was blind.
    let (method, path, body) = next_ping(&mut pings).await;
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/ping/demo-check/fail")
    );
    assert_eq!(body, "not read: huawei-dev\n");

    let (status, kind, text) = demo.get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        kind.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let m = parse(&text);
    use OpenMetricsType::{Counter, Gauge, Histogram};
    for (family, kind) in [
        ("purser_balance", Gauge),
        ("purser_balance_part", Gauge),
        ("purser_runway_days", Gauge),
        ("purser_resource_expiry_timestamp_seconds", Gauge),
        ("purser_alerts", Gauge),
        ("purser_polls", Counter),
        ("purser_poll_duration_seconds", Histogram),
        ("purser_last_successful_poll_timestamp_seconds", Gauge),
        ("purser_outbox_pending", Gauge),
        ("purser_outbox_oldest_pending_age_seconds", Gauge),
        ("purser_notices", Counter),
        ("purser_requests", Gauge),
        ("purser_heartbeats", Counter),
        ("purser_leader", Gauge),
        ("purser_build_info", Gauge),
        ("process_resident_memory_bytes", Gauge),
        ("process_cpu_seconds", Counter),
        ("process_open_fds", Gauge),
    ] {
        let f = m
            .families
            .get(family)
            .unwrap_or_else(|| panic!("no {family} in:\n{text}"));
        assert_eq!(f.family_type, kind, "{family}");
    }
    assert_eq!(by_label(&m, "purser_leader", "")[""], 1.0);
    // Each resource of the demo's scenario, from the poll's whole snapshot.
    let expiring = by_label(&m, "purser_resource_expiry_timestamp_seconds", "resource");
    assert_eq!(expiring.len(), 5, "{expiring:?}");
    assert!(expiring["ins-7f3k2a1b"] > 1e9, "{expiring:?}");
    let polls = by_label(&m, "purser_polls", "result");
    assert_eq!((polls["ok"], polls["refused"]), (4.0, 1.0), "{polls:?}");
    assert!(by_label(&m, "process_resident_memory_bytes", "")[""] > 1e6);
    let heartbeats = by_label(&m, "purser_heartbeats", "result");
    assert_eq!(heartbeats.get("delivered"), Some(&1.0), "{heartbeats:?}");
    // No label names a notice or a request.
    for f in m.families.values() {
        for name in f.get_label_names() {
            assert!(
                !["id", "notice_id", "request", "fingerprint"].contains(&name.as_str()),
                "{} is labelled by {name}",
                f.family_name
            );
        }
    }

    // The balances purser shows are those `purser check` reads, to the fen.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["check", "--format", "json", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = by_label(&m, "purser_balance", "account");
    let mut compared = 0;
    for a in report["accounts"].as_array().unwrap() {
        let id = a["id"].as_str().unwrap();
        match a["available"].as_str() {
            Some(available) => {
                let exact: rust_decimal::Decimal = available.parse().unwrap();
                let metric = rust_decimal::Decimal::try_from(shown[id])
                    .unwrap()
                    .round_dp(2);
                assert_eq!(metric, exact, "{id}");
                compared += 1;
            }
            None => assert!(!shown.contains_key(id), "{id} was never read"),
        }
    }
    assert_eq!(compared, 4);
    // And the alerts it counts are those `check` finds.
    let counted: f64 = m.families["purser_alerts"]
        .iter_samples()
        .map(|s| match &s.value {
            OpenMetricsValue::Gauge(n) => n.as_f64(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(
        counted as usize,
        report["alerts"].as_array().unwrap().len(),
        "{text}"
    );

    // The logs: one JSON object per line, the account a field of its own,
    // and the poll it happened in named with its account.
    {
        let log = demo.log.lock().unwrap();
        let refused = log
            .iter()
            .find(|l| l["message"] == "poll failed; keeping the last good snapshot")
            .expect("the refused poll is logged");
        assert_eq!(refused["account"], "huawei-dev", "{refused}");
        assert_eq!(refused["level"], "WARN");
        assert_eq!(refused["span"]["name"], "poll", "{refused}");
        assert_eq!(refused["span"]["provider"], "sim", "{refused}");
    }

    // A second demo elsewhere, on the same port: refused, saying how to move it.
    let elsewhere = tempfile::tempdir().unwrap();
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["run", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
        .current_dir(elsewhere.path())
        .env("PURSER_METRICS__LISTEN", demo.metrics.to_string())
        .output()
        .await
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains(
            "set metrics.listen in the config or PURSER_METRICS__LISTEN to another address"
        ),
        "{said}"
    );

    assert!(demo.stop().await.success());
}

/// Under systemd (`Type=notify`, `WatchdogSec`): READY=1 once purser is
/// up, WATCHDOG=1 at half the period while the scheduler ticks, and
/// STOPPING=1 on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_manager_hears_ready_and_the_watchdog_is_fed() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let demo = Demo::start(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            // 400 ms: fed every 200 ms, so the test sees it soon.
            ("WATCHDOG_USEC", "400000".to_owned()),
        ],
    )
    .await;
    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    while heard.iter().filter(|m| *m == "WATCHDOG=1").count() < 2 {
        let n = tokio::time::timeout(GUARD, socket.recv(&mut buf))
            .await
            .expect("the service manager heard nothing more")
            .unwrap();
        heard.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    assert_eq!(heard[0], "READY=1", "{heard:?}");
    assert!(demo.stop().await.success());
    let mut rest = Vec::new();
    while let Ok(n) = socket.try_recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{rest:?}"
    );
}

/// The heartbeat goes once per cycle (every account polled once), to the
/// plain URL while every account is read, and to `/fail`, naming the
/// account, in a cycle where one could not be.
#[tokio::test]
async fn the_heartbeat_goes_once_per_cycle_and_to_fail_when_an_account_is_blind() {
    let (hb, mut pings) = check_receiver().await;
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥20,000\"\n\
         [[accounts]]\nid = \"globex\"\nbalance = \"¥30,000\"\n",
        Setup {
            accounts: &["acme", "globex"],
            rules: "[heartbeat]\nurl = \"file:check.url\"\nmethod = \"get\"\n",
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(
        world.dir.path().join("check.url"),
        format!("http://{hb}/ping/abc123\n"),
    )
    .unwrap();
    let app = world.start().await;
    app.settle().await;
    assert_eq!(
        next_ping(&mut pings).await,
        ("GET".into(), "/ping/abc123".into(), String::new())
    );
    app.advance(chrono::Duration::minutes(1)).await;
    assert_eq!(next_ping(&mut pings).await.1, "/ping/abc123");

    world.scenario(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥20,000\"\n\
         [[accounts]]\nid = \"globex\"\nbalance = \"¥30,000\"\nfail = \"unauthorized\"\n",
    );
    app.advance(chrono::Duration::minutes(1)).await;
    assert_eq!(next_ping(&mut pings).await.1, "/ping/abc123/fail");
    app.stop().await;
    assert!(pings.try_recv().is_err(), "one ping per cycle, no more");
}

/// A heartbeat URL written into the config is refused: its path is the
/// check's token.
#[test]
fn a_heartbeat_url_written_in_the_config_is_refused() {
    let e = purser::config::Config::parse(
        "[[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"s.toml\"\n\
         [[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n\
         [heartbeat]\nurl = \"https://hc-ping.com/0f2a-secret\"\nmethod = \"put\"\n",
        Path::new("purser.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("heartbeat.url"), "{e}");
    assert!(e.contains("never the secret itself"), "{e}");
    assert!(!e.contains("0f2a-secret"), "the token is not repeated: {e}");
    assert!(
        e.contains("unknown method \"put\"; known: post, get"),
        "{e}"
    );

    // A reference to something that is not a URL: named, not repeated.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("check.url"), "hc-ping/0f2a-secret\n").unwrap();
    let e = purser::config::Config::parse(
        "[[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"s.toml\"\n\
         [[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n\
         [heartbeat]\nurl = \"file:check.url\"\n",
        &dir.path().join("purser.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("heartbeat.url: file:check.url does not hold an http or https URL"),
        "{e}"
    );
    assert!(!e.contains("0f2a-secret"), "{e}");
}

/// Keys from the environment are laid over the file's, and one that
/// cannot be set is named.
#[test]
fn keys_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("PURSER_SCHEDULER__SCHEDULE", "0 */5 * * * *")
        .env("PURSER_METRICS__LISTEN", "0.0.0.0:9999")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("PURSER_METRICS__LISTEN", "nowhere")
        .env("PURSER_ACCOUNTS__ID", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("PURSER_ACCOUNTS__ID: accounts is a list of tables: set it in the file"),
        "{e}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("PURSER_METRICS__LISTEN", "nowhere")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("metrics.listen: \"nowhere\" is not an address"),
        "{e}"
    );
    assert!(
        e.contains("read with PURSER_METRICS__LISTEN from the environment"),
        "{e}"
    );
}

/// `purser config example` prints the documented example, which checks.
#[test]
fn the_example_config_is_printed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"))
            .unwrap();
    assert_eq!(printed, file);
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Two replicas on PostgreSQL: the leader's scheduler is stuck on a lock
/// (a prune waiting on a table another session holds), and `/readyz` says
/// so once it is 90 s late, until the lock goes; the standby shows itself
/// only in its metrics, so that sums over replicas count the accounts once;
/// with the database gone, both say the store does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_says_when_the_scheduler_is_stuck_or_the_store_is_gone() {
    use crate::postgres::Postgres;
    use crate::replicas::{leads, replica_config, run_for, stands_by, start};
    use purser::ports::Clock;
    use sqlx::Connection;
    let Some(pg) = Postgres::start("readyz_says_when_the_scheduler_is_stuck").await else {
        return;
    };
    let url = pg.database().await;
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
        Setup {
            rules: "[metrics]\nlisten = \"127.0.0.1:0\"\n",
            ..Setup::default()
        },
    )
    .await;
    // The schema first, so that a table can be locked before purser starts.
    purser::adapters::postgres::PgStore::open(&url, None, 1)
        .await
        .unwrap()
        .close()
        .await;
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();

    // Room in the pool beside the calls that wait on the lock, so that the
    // lease is kept while the scheduler is stuck.
    let roomy = |name: &str| {
        let path = replica_config(&world, &url, name);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("pool = 4", "pool = 12")).unwrap();
        path
    };
    let a = start(&roomy("a"), &world.clock).await;
    leads(&a).await;
    let metrics_a = a.metrics.unwrap();
    // Its first turn prunes, and waits on the lock.
    let mut activity = a.activity.subscribe();
    tokio::time::timeout(
        GUARD,
        activity.wait_for(|s| matches!(s.scheduler_tick, Some((_, None)))),
    )
    .await
    .expect("the scheduler never began")
    .unwrap();
    let (status, body) = get(metrics_a, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    run_for(&a, chrono::Duration::minutes(2)).await;
    let (status, body) = get(metrics_a, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("role: leader\n"), "{body}");
    assert!(
        body.contains("not ready: the scheduler has been busy with one turn since"),
        "{body}"
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let now = a.clock.now();
    tokio::time::timeout(
        GUARD,
        // A turn begun since: the stuck one's end leaves its wake-up, long
        // past, until the scheduler loops round to the next turn.
        activity.wait_for(|s| matches!(s.scheduler_tick, Some((at, Some(_))) if at >= now)),
    )
    .await
    .expect("the scheduler never came back")
    .unwrap();
    let (status, body) = get(metrics_a, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    // The standby: itself only.
    let b = start(&roomy("b"), &world.clock).await;
    stands_by(&b).await;
    a.settle().await;
    let leader = parse(&get(metrics_a, "/metrics").await.1);
    assert_eq!(by_label(&leader, "purser_leader", "")[""], 1.0);
    assert!(by_label(&leader, "purser_balance", "account").contains_key("acme"));
    assert!(!by_label(&leader, "purser_alerts", "rule").is_empty());
    let standby = parse(&get(b.metrics.unwrap(), "/metrics").await.1);
    assert_eq!(by_label(&standby, "purser_leader", "")[""], 0.0);
    for family in [
        "purser_balance",
        "purser_alerts",
        "purser_outbox_pending",
        "purser_requests",
    ] {
        assert!(
            !standby.families.contains_key(family),
            "{family} on the standby"
        );
    }

    // The database gone: neither is ready, and each says why.
    assert!(pg.stop_server());
    for app in [&a, &b] {
        let (status, body) = get(app.metrics.unwrap(), "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("not ready: the store does not answer")
                || body.contains("not ready: the store did not answer within 2s"),
            "{body}"
        );
    }
    pg.start_server();
    b.crash().await;
    a.crash().await;
}

/// A notice an output keeps refusing shows in the outbox gauges: how many
/// wait, and for how long the oldest has (by purser's clock).
#[tokio::test]
async fn a_notice_an_output_refuses_shows_as_waiting_and_for_how_long() {
    let world = World::low_on_money("[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    world.hook.fail_next(100);
    let app = world.start().await;
    app.settle().await;
    app.advance(chrono::Duration::minutes(2)).await;
    let (status, text) = get(app.metrics.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    let m = parse(&text);
    assert_eq!(by_label(&m, "purser_outbox_pending", "output")["hook"], 1.0);
    assert_eq!(
        by_label(&m, "purser_outbox_oldest_pending_age_seconds", "output")["hook"],
        120.0
    );
    let notices = m.families["purser_notices"]
        .iter_samples()
        .filter(|s| s.get_labelset().unwrap().get_label_value("result") == Some("retrying"))
        .count();
    assert_eq!(notices, 1, "{text}");
    app.stop().await;
}
