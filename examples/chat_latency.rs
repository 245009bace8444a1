//! Measures how fast purser answers Slack slash commands under load: the
//! daemon runs on a SQLite file with simulated accounts, and signed
//! `/purser …` requests arrive at `POST /slack/commands`, CONCURRENCY at a
//! time, each verified, parsed, authorized and answered from the store.
//!
//!     cargo run --release --example chat_latency -- [REQUESTS] [CONCURRENCY] [ACCOUNTS] [COMMAND]
//!
//! Defaults: 10,000 requests, 200 at a time, 100 accounts, `balance ACCOUNT`
//! (a different account each time). COMMAND `alerts` or `runway` reads more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use purser::adapters::slack;
use purser::config::Config;
use purser::engine::clock::SystemClock;
use purser::startup::Application;

const SECRET: &str = "bench-signing-secret";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let accounts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let command = args.next().unwrap_or_else(|| "balance".into());

    let dir = tempfile::tempdir().unwrap();
    let mut scenario = String::new();
    let mut config = format!(
        "[store]\npath = \"{}\"\n[scheduler]\nschedule = \"0 0 * * * *\"\njitter = \"0s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[slack]\nmode = \"http\"\nsigning_secret = \"file:slack.secret\"\n\
         [[people]]\nname = \"ana\"\nrole = \"admin\"\nslack = \"U0ANA\"\n\
         [[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\nconcurrency = 16\n",
        dir.path().join("bench.db").display()
    );
    for a in 0..accounts {
        let balance = 500 + (a * 7919) % 60_000;
        writeln!(
            scenario,
            "[[accounts]]\nid = \"acct-{a:04}\"\nbalance = \"{balance}\"\nburn_per_day = \"300\"\nreport_spend = true\n\
             [[accounts.resources]]\nid = \"ins-{a:04}\"\nproduct = \"cvm\"\nexpires_in = \"{}d\"\nrenewal = \"manual\"",
            1 + a % 40
        )
        .unwrap();
        writeln!(
            config,
            "[[accounts]]\nid = \"acct-{a:04}\"\nprovider = \"sim\""
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
    std::fs::write(dir.path().join("slack.secret"), SECRET).unwrap();
    let config =
        Config::parse(&config, &dir.path().join("bench.toml")).unwrap_or_else(|e| panic!("{e}"));

    let app = Application::build(config, Arc::new(SystemClock), Default::default())
        .await
        .unwrap();
    let addr = app.http_addr().unwrap();
    let activity = app.activity();
    let start = chrono::Utc::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    activity
        .subscribe()
        .wait_for(|s| s.quiet_at(start))
        .await
        .unwrap();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("http://{addr}/slack/commands");
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let wall = Instant::now();
    for i in 0..requests {
        let text = match command.as_str() {
            "balance" => format!("balance acct-{:04}", i % accounts),
            other => other.to_owned(),
        };
        // A trigger_id per request, as Slack sends: no two bodies alike, so
        // none is mistaken for a replay.
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("user_id", "U0ANA")
            .append_pair("command", "/purser")
            .append_pair("text", &text)
            .append_pair("trigger_id", &format!("bench.{i}"))
            .finish();
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = slack::sign(SECRET, &ts, body.as_bytes());
        let client = client.clone();
        let url = url.clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let t = Instant::now();
            let sent = client
                .post(&url)
                .header("X-Slack-Request-Timestamp", ts)
                .header("X-Slack-Signature", sig)
                .body(body)
                .send()
                .await;
            // A connection reset (the listener closing an idle connection
            // the client was about to reuse) counts as a failure, not a crash.
            let ok = match sent {
                Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|t| t.contains("blocks")),
                Err(_) => false,
            };
            drop(permit);
            (t.elapsed(), ok)
        });
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        let (d, ok) = r.unwrap();
        latencies.push(d);
        if !ok {
            failed += 1;
        }
    }
    let wall = wall.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{requests} signed `/purser {command}` requests, {concurrency} at a time, {accounts} accounts"
    );
    println!(
        "p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms · {:.0} requests/s · {failed} failed",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        requests as f64 / wall.as_secs_f64()
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
