//! Measures a catch-up poll (what `purser run` does at start) of many Tencent
//! Cloud accounts against a loopback server that speaks the API 3.0 wire format
//! and enforces a request limit the way the cloud does: per API action, per
//! account (key), over a strict sliding one-second window. A request over the
//! limit gets the cloud's `RequestLimitExceeded` error.
//!
//!     cargo run --release --example catch_up -- [ACCOUNTS] [KEYS] [LIMIT] [LATENCY_MS]
//!
//! ACCOUNTS (10,000) are spread over KEYS distinct credentials (1: every
//! account spends one key's quota, so the limit binds; ACCOUNTS: each account
//! has its own, as in production). LIMIT is the requests a second allowed per
//! key per action (purser is configured with the same figure through
//! `requests_per_second`); LATENCY_MS is the server's answer time (30).
//! Prints, per action: requests served, throttled, and the rate achieved
//! against the rate allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use purser::config::Config;
use purser::engine::clock::SystemClock;
use purser::startup::Application;

#[derive(Default)]
struct Window {
    served: VecDeque<Instant>,
}

#[derive(Default)]
struct ActionStats {
    served: u64,
    throttled: u64,
    /// Most requests served in any one second.
    peak: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Limits {
    limit: usize,
    latency: Duration,
    windows: Mutex<HashMap<(String, String), Window>>,
    /// Per (key, action); summed per action for the report.
    stats: Mutex<HashMap<(String, String), ActionStats>>,
}

impl Limits {
    /// Whether the request arriving now is within the key's limit for the action.
    fn admit(&self, key: &str, action: &str, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap();
        let w = windows
            .entry((key.to_owned(), action.to_owned()))
            .or_default();
        while w
            .served
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            w.served.pop_front();
        }
        let ok = w.served.len() < self.limit;
        if ok {
            w.served.push_back(now);
        }
        let in_window = w.served.len();
        let mut stats = self.stats.lock().unwrap();
        let s = stats
            .entry((key.to_owned(), action.to_owned()))
            .or_default();
        if ok {
            s.served += 1;
            s.peak = s.peak.max(in_window);
            s.first.get_or_insert(now);
            s.last = Some(now);
        } else {
            s.throttled += 1;
        }
        ok
    }
}

fn answer(action: &str, n: u64) -> String {
    let inner = match action {
        "DescribeAccountBalance" => format!(
            r#""Balance":{b},"RealBalance":{b},"CashAccountBalance":{b},"CreditAmount":0,"FreezeAmount":0,"OweAmount":0"#,
            b = 100_000 + n % 9_000_000
        ),
        "DescribeRenewInstances" => format!(
            r#""InstanceList":[{{"InstanceId":"ins-{n:08}","ProductCode":"cvm","ProductName":"CVM","RegionCode":"ap-guangzhou","InstanceName":"web","Status":"NORMAL","RenewFlag":"NOTIFY_AND_AUTO_RENEW","ExpireTime":"2027-03-01 00:00:00"}}],"NextToken":"""#
        ),
        "DescribeDealsByCond" => r#""Deals":[],"TotalCount":0"#.to_owned(),
        "DescribeBillList" => {
            r#""TransactionList":[],"Total":0,"DeductAmount":-1234500"#.to_owned()
        }
        _ => {
            return format!(
                r#"{{"Response":{{"Error":{{"Code":"InvalidAction","Message":"{action}"}},"RequestId":"r{n}"}}}}"#
            );
        }
    };
    format!(r#"{{"Response":{{{inner},"RequestId":"r{n}"}}}}"#)
}

async fn serve(limits: Arc<Limits>, headers: HeaderMap) -> String {
    let now = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let action = header("x-tc-action");
    // "TC3-HMAC-SHA256 Credential=AKID/2026-11-23/billing/tc3_request, …"
    let auth = header("authorization");
    let key = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let n = now.elapsed().subsec_nanos() as u64 ^ key.len() as u64;
    let admitted = limits.admit(&key, &action, now);
    tokio::time::sleep(limits.latency).await;
    if admitted {
        answer(&action, n)
    } else {
        format!(
            r#"{{"Response":{{"Error":{{"Code":"RequestLimitExceeded","Message":"request limit exceeded"}},"RequestId":"r{n}"}}}}"#
        )
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let accounts = arg(10_000) as usize;
    let keys = (arg(1) as usize).clamp(1, accounts);
    let limit = arg(20) as u32;
    let latency = Duration::from_millis(arg(30));

    let limits = Arc::new(Limits {
        limit: limit as usize,
        latency,
        windows: Mutex::new(HashMap::new()),
        stats: Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback({
        let limits = limits.clone();
        move |headers: HeaderMap| serve(limits.clone(), headers)
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for k in 0..keys {
        std::fs::write(
            dir.path().join(format!("keys/{k}.id")),
            format!("AKIDbench{k:05}"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("keys/{k}.key")),
            format!("secret{k:05}"),
        )
        .unwrap();
    }
    let mut config = format!(
        "[store]\npath = \"{}\"\n[scheduler]\nschedule = \"0 0 0 1 1 *\"\njitter = \"0s\"\ntimeout = \"30m\"\n\
         [[providers]]\nname = \"tencent\"\nkind = \"tencent\"\nconcurrency = 64\nrequests_per_second = {limit}\n",
        dir.path().join("bench.db").display()
    );
    for a in 0..accounts {
        let k = a % keys;
        writeln!(
            config,
            "[[accounts]]\nid = \"acct-{a:05}\"\nprovider = \"tencent\"\nendpoint = \"http://{addr}/\"\n\
             credentials = {{ key_id = \"file:keys/{k}.id\", secret = \"file:keys/{k}.key\" }}"
        )
        .unwrap();
    }
    let config =
        Config::parse(&config, &dir.path().join("bench.toml")).unwrap_or_else(|e| panic!("{e}"));

    let clock = Arc::new(SystemClock);
    let app = Application::build(config, clock, Default::default())
        .await
        .unwrap();
    let activity = app.activity();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = chrono::Utc::now();
    let wall = Instant::now();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    activity
        .subscribe()
        .wait_for(|s| s.quiet_at(start))
        .await
        .unwrap();
    let wall = wall.elapsed();
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    println!(
        "{accounts} accounts on {keys} key(s); limit {limit}/s per key per action; \
         {} ms answers; provider concurrency 64",
        latency.as_millis()
    );
    println!("catch-up poll: {:.1} s wall", wall.as_secs_f64());
    let stats = limits.stats.lock().unwrap();
    // Per action: served, throttled, the most one key had served in any
    // second, and the busiest key's sustained rate where it ran for 5 s or more.
    let mut by_action: BTreeMap<&str, (u64, u64, usize, Option<f64>)> = BTreeMap::new();
    for ((_, action), s) in stats.iter() {
        let e = by_action.entry(action).or_default();
        e.0 += s.served;
        e.1 += s.throttled;
        e.2 = e.2.max(s.peak);
        if let (Some(f), Some(l)) = (s.first, s.last) {
            let span = l.duration_since(f).as_secs_f64();
            if span >= 5.0 {
                let rate = (s.served - 1) as f64 / span;
                e.3 = Some(e.3.map_or(rate, |r: f64| r.max(rate)));
            }
        }
    }
    println!(
        "{:<24} {:>8} {:>9} {:>12} {:>22}",
        "action", "served", "throttled", "peak in 1 s", "sustained (of limit)"
    );
    let (mut served, mut throttled) = (0, 0);
    for (action, (s, t, peak, rate)) in &by_action {
        served += s;
        throttled += t;
        let sustained = rate.map_or("-".to_owned(), |r| {
            format!("{r:.1}/s ({:.1} %)", r / f64::from(limit) * 100.0)
        });
        println!("{action:<24} {s:>8} {t:>9} {peak:>12} {sustained:>22}");
    }
    println!(
        "all: {served} served, {throttled} throttled, {:.0} requests/s",
        served as f64 / wall.as_secs_f64()
    );
}
