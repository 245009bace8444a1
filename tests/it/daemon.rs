//! The daemon as a service manager sees it: one per store, a damaged or
//! vanished store said out loud, a failing store stopping it non-zero, and
//! a stop that takes bounded time.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chrono::Duration;
use purser::ports::Provider;

use crate::helpers::{Setup, World};

const LOW: &str = "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n";

#[tokio::test]
async fn a_second_daemon_on_one_store_refuses_naming_the_first() {
    let (world, app) = World::running(LOW, Setup::default()).await;
    let config = purser::config::Config::load(&world.config_path()).unwrap();
    let err = purser::startup::Application::build(config, world.clock.clone(), HashMap::new())
        .await
        .err()
        .expect("a second daemon must not start")
        .to_string();
    assert!(
        err.contains("purser.db is in use by another purser"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("since 2026-11-01T00:00:00"), "{err}");
    // The first runs on, undisturbed.
    app.advance(Duration::minutes(1)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_damaged_store_is_refused_at_start_naming_the_file() {
    let world = World::new(LOW, Setup::default()).await;
    let db = world.dir.path().join("purser.db");
    std::fs::write(&db, b"this is not what purser wrote, nor SQLite").unwrap();
    let config = purser::config::Config::load(&world.config_path()).unwrap();
    let err = purser::startup::Application::build(config, world.clock.clone(), HashMap::new())
        .await
        .err()
        .expect("a damaged store must not start")
        .to_string();
    assert!(
        err.contains(&format!("the store {} cannot be used", db.display())),
        "{err}"
    );
    assert!(err.contains("restore it from a backup"), "{err}");
}

#[tokio::test]
async fn a_store_that_refuses_writes_stops_the_daemon_non_zero_naming_the_store() {
    let (world, app) = World::running(LOW, Setup::default()).await;
    let sent = world.hook.received().len();
    assert_eq!(sent, 1, "the low balance was told");
    // The disk fills, as far as purser can tell: no snapshot may be written.
    let db = world.dir.path().join("purser.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER full BEFORE INSERT ON snapshots BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    world.clock.advance(Duration::minutes(1));
    let err = app
        .ended()
        .await
        .expect_err("it must stop, and not as a success");
    let text = err.to_string();
    assert!(
        text.contains(&format!("the store {} failed", db.display())),
        "{text}"
    );
    assert!(text.contains("database or disk is full"), "{text}");
}

/// A provider that never answers.
struct Silent;

#[async_trait::async_trait]
impl Provider for Silent {
    async fn poll(
        &self,
        _: &purser::domain::model::Account,
    ) -> Result<purser::domain::model::Snapshot, purser::ports::ProviderError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_stop_is_bounded_by_the_shutdown_timeout() {
    let world = World::new(
        LOW,
        Setup {
            timeout: "1h",
            rules: "",
            ..Setup::default()
        },
    )
    .await;
    // A poll that would take an hour: the stop does not wait for it.
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "timeout = \"1h\"",
            "timeout = \"1h\"\nshutdown_timeout = \"1s\"",
        );
    std::fs::write(world.config_path(), config).unwrap();
    let app = world
        .start_with(HashMap::from([(
            "sim".to_owned(),
            Arc::new(Silent) as Arc<dyn Provider>,
        )]))
        .await;
    let mut rx = app.activity.subscribe();
    rx.wait_for(|s| s.polls_in_flight == 1).await.unwrap();
    app.stop().await;
    // And the next start polls again, at once.
    let app = world.start().await;
    app.settle().await;
    world.hook.wait_for(|v| v["rule"] == "low_balance").await;
    app.stop().await;
}

// ---------------------------------------------------------------- the binary

fn daemon(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["run", "--config"])
        .arg(config)
        .current_dir(config.parent().unwrap())
        .env("RUST_LOG", "purser=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's log until a line containing `what`; the lines so far.
/// Byte by byte, so that nothing after that line is taken from the pipe.
fn read_until(child: &mut Child, what: &str) -> String {
    use std::io::Read;
    let stderr = child.stderr.as_mut().unwrap();
    let mut seen = String::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stderr.read(&mut byte).unwrap() == 0 {
            panic!("the log ended before {what:?}:\n{seen}");
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            let text = String::from_utf8_lossy(&line).into_owned();
            seen.push_str(&text);
            line.clear();
            if text.contains(what) {
                return seen;
            }
        }
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn small_config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("scenario.toml"), LOW).unwrap();
    let config = dir.join("purser.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"purser.db\"\n\n[[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\n\n\
         [[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n\n[[outputs]]\nname = \"console\"\nkind = \"console\"\n",
    )
    .unwrap();
    config
}

#[test]
fn two_processes_on_one_store_the_second_refuses_and_a_vanished_store_is_said_out_loud() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let mut first = daemon(&config);
    read_until(&mut first, "purser running");
    let second = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is in use by another purser"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");

    signal(&first, "TERM");
    assert!(
        first.wait().unwrap().success(),
        "a stop asked for is a success"
    );

    // The store is emptied while purser is down: it starts afresh, loudly.
    std::fs::write(dir.path().join("purser.db"), b"").unwrap();
    let mut again = daemon(&config);
    let log = read_until(&mut again, "purser running");
    assert!(log.contains("THE STORE IS MISSING OR EMPTY"), "{log}");
    assert!(log.contains("audit chain start"), "{log}");
    signal(&again, "TERM");
    let status = again.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(again.stderr.as_mut().unwrap(), &mut rest).ok();
    assert!(status.success(), "{status:?}: {rest}");
}

#[test]
fn a_second_signal_ends_a_stop_that_would_wait() {
    // A webhook that takes the request and never answers: the stop would
    // wait up to its shutdown timeout (a minute) for the send under way.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    std::fs::write(dir.path().join("hook.secret"), "whsec-0123456789abcdef").unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[[providers]]",
        "[scheduler]\nshutdown_timeout = \"1m\"\n\n[[providers]]",
    );
    text.push_str(&format!(
        "\n[[outputs]]\nname = \"slow\"\nkind = \"webhook\"\nurl = \"http://{}/\"\nsecret = \"file:hook.secret\"\ntimeout = \"10m\"\n",
        tarpit.local_addr().unwrap()
    ));
    std::fs::write(&config, text).unwrap();
    let mut child = daemon(&config);
    read_until(&mut child, "purser running");
    signal(&child, "TERM");
    read_until(&mut child, "stopping");
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "the second signal ends it at once"
    );
    drop(tarpit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_past_the_open_file_limit_starves_neither_health_nor_polls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scenario.toml"),
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n",
    )
    .unwrap();
    let config = dir.path().join("purser.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"purser.db\"\n\n[scheduler]\nschedule = \"* * * * * *\"\njitter = \"0s\"\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\n\n\
         [[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n\n[[outputs]]\nname = \"console\"\nkind = \"console\"\n",
    )
    .unwrap();
    // 400 descriptors in all: fewer than the connections that come.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 400 && exec {} run --config purser.toml",
            env!("CARGO_BIN_EXE_purser")
        ))
        .current_dir(dir.path())
        .env("RUST_LOG", "purser=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = read_until(&mut child, "http listening");
    assert!(log.contains("fewer HTTP connections are allowed"), "{log}");
    let addr: std::net::SocketAddr = log
        .lines()
        .find(|l| l.contains("http listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 600 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..600 {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            idle.push(c);
        }
    }
    // Health answers (the oldest idle ones made room)…
    let health = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .expect("/healthz answers under the flood");
    assert_eq!(health.text().await.unwrap(), "ok\n");
    // …and polls still read the scenario: the low balance is seen.
    std::fs::write(
        dir.path().join("scenario.toml"),
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
    )
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("low_balance"))
    })
    .await
    .unwrap();
    assert!(seen.is_some(), "the console heard of the low balance");
    drop(idle);
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut rest).ok();
    assert!(!rest.contains("Too many open files"), "{rest}");
}
