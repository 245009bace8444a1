//! Measures an alert storm's delivery: ALERTS alerts fire at once, on
//! accounts spread over DESTINATIONS chat outputs (Slack channels, Discord
//! channels and Telegram groups in turn), against loopback mocks of the three
//! APIs that keep each platform's documented limits and answer 429 beyond
//! them, as the platforms do:
//!
//! - Slack `chat.postMessage`: one message a second in a channel
//!   (`Retry-After` on a 429);
//! - Discord `POST /channels/{id}/messages`: a bucket of 5 in 5 seconds per
//!   channel, told in `X-RateLimit-*` headers, and 50 requests a second in
//!   all (a global 429 beyond);
//! - Telegram `sendMessage`: one message a second in a chat, 20 a minute in
//!   a group, 30 a second in all (`parameters.retry_after` on a 429).
//!
//! A mock measures at arrival, with windows 20 ms shorter than the limit's
//! (a second is counted as 980 ms), so loopback jitter is not read as a
//! breach, while a sender that does not pace itself meets a 429 at once.
//!
//! Prints how long delivery took, from the first message to the last, beside
//! the least those limits allow for the same messages, and the 429s.
//! `STORM_PROGRESS=1` prints the count as it goes.
//!
//!     cargo run --release --example alert_storm -- [ALERTS] [PER_ACCOUNT] [DESTINATIONS]
//!
//! Defaults: 1,000 alerts, one per account (every alert its own message),
//! over 50 destinations. `1000 10 50` puts ten alerts on each of 100
//! accounts: grouped, one message per account and poll.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use purser::config::Config;
use purser::engine::clock::SystemClock;
use purser::startup::Application;
use serde_json::{Value, json};

const TELEGRAM_TOKEN: &str = "123456789:AAbench-token_for-purser";
/// How much shorter a mock's window is than the limit's.
const SLACK: Duration = Duration::from_millis(20);

/// Arrivals in a sliding window: whether one more fits `count` in `span`.
#[derive(Default)]
struct Window(VecDeque<Instant>);

impl Window {
    fn admit(&mut self, now: Instant, count: usize, span: Duration) -> Result<(), Duration> {
        let span = span - SLACK;
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            self.0.pop_front();
        }
        if self.0.len() >= count {
            return Err(span - now.duration_since(self.0[0]));
        }
        self.0.push_back(now);
        Ok(())
    }
}

/// A fixed window as Discord's buckets are: `limit` requests from the
/// first, then a wait until the window ends.
struct Bucket {
    started: Instant,
    used: u32,
}

/// Each chat's second and minute, and the bot's second across chats.
#[derive(Default)]
struct TelegramWindows {
    chats: HashMap<String, (Window, Window)>,
    overall: Window,
}

#[derive(Default)]
struct Mocks {
    /// (destination, when) of each message accepted.
    accepted: Mutex<Vec<(String, Instant)>>,
    refused: AtomicUsize,
    /// 429s by platform.
    refused_by: Mutex<HashMap<&'static str, usize>>,
    slack: Mutex<HashMap<String, Window>>,
    discord: Mutex<(HashMap<String, Bucket>, Window)>,
    telegram: Mutex<TelegramWindows>,
    next_id: AtomicUsize,
}

impl Mocks {
    fn accept(&self, destination: String) -> usize {
        self.accepted
            .lock()
            .unwrap()
            .push((destination, Instant::now()));
        self.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Counts a kind of 429 apart, in the total already.
    fn refuse_only(&self, kind: &'static str) {
        *self.refused_by.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn refuse(&self, platform: &'static str) {
        self.refused.fetch_add(1, Ordering::SeqCst);
        *self.refused_by.lock().unwrap().entry(platform).or_default() += 1;
    }
}

async fn slack(State(m): State<Arc<Mocks>>, Path(method): Path<String>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    if method != "chat.postMessage" {
        return axum::Json(json!({"ok": true})).into_response();
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    let admitted = m
        .slack
        .lock()
        .unwrap()
        .entry(channel.clone())
        .or_default()
        .admit(Instant::now(), 1, Duration::from_secs(1));
    if let Err(wait) = admitted {
        m.refuse("slack");
        let mut r = axum::Json(json!({"ok": false, "error": "ratelimited"})).into_response();
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        r.headers_mut().insert(
            "retry-after",
            HeaderValue::from(wait.as_secs_f64().ceil() as u64),
        );
        return r;
    }
    let n = m.accept(format!("slack:{channel}"));
    axum::Json(json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}")}))
        .into_response()
}

async fn discord(
    State(m): State<Arc<Mocks>>,
    Path(channel): Path<String>,
    body: String,
) -> Response {
    let _ = body;
    let now = Instant::now();
    let window = Duration::from_secs(5);
    let (verdict, remaining, reset_after) = {
        let mut d = m.discord.lock().unwrap();
        let (buckets, global) = &mut *d;
        let b = buckets.entry(channel.clone()).or_insert(Bucket {
            started: now,
            used: 0,
        });
        if now.duration_since(b.started) >= window {
            *b = Bucket {
                started: now,
                used: 0,
            };
        }
        // Rounded up to the millisecond it is told in, as a server would:
        // a client waiting that long finds the window open.
        let left = window.saturating_sub(now.duration_since(b.started));
        let reset_after = Duration::from_millis(left.as_nanos().div_ceil(1_000_000) as u64);
        if b.used >= 5 {
            (Err(false), 0, reset_after)
        } else if global.admit(now, 50, Duration::from_secs(1)).is_err() {
            (Err(true), 5 - b.used, reset_after)
        } else {
            b.used += 1;
            (Ok(()), 5 - b.used, reset_after)
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit", HeaderValue::from(5));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert(
        "x-ratelimit-reset-after",
        HeaderValue::from_str(&format!("{:.3}", reset_after.as_secs_f64())).unwrap(),
    );
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + reset_after;
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from_str(&format!("{:.3}", epoch.as_secs_f64())).unwrap(),
    );
    headers.insert(
        "x-ratelimit-bucket",
        HeaderValue::from_static("80c17d2f203122d936070c88c8d10f33"),
    );
    match verdict {
        Ok(()) => {
            let n = m.accept(format!("discord:{channel}"));
            let id = (1_300_000_000_000_000_000u64 + n as u64).to_string();
            (headers, axum::Json(discord_message(&id, &channel))).into_response()
        }
        Err(global) => {
            m.refuse("discord");
            if global {
                m.refuse_only("discord, global");
            }
            let retry = if global {
                1.0
            } else {
                reset_after.as_secs_f64()
            };
            headers.insert(
                "retry-after",
                HeaderValue::from_str(&format!("{retry:.3}")).unwrap(),
            );
            if global {
                headers.insert("x-ratelimit-global", HeaderValue::from_static("true"));
            }
            headers.insert(
                "x-ratelimit-scope",
                HeaderValue::from_static(if global { "global" } else { "user" }),
            );
            let body = json!({"message": "You are being rate limited.", "retry_after": retry, "global": global});
            (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
        }
    }
}

/// A message object, as Discord's API reference documents it.
fn discord_message(id: &str, channel: &str) -> Value {
    let bot = json!({"id": "1234567890", "username": "purser", "discriminator": "0",
        "global_name": "purser", "avatar": null, "bot": true, "public_flags": 0});
    json!({"id": id, "channel_id": channel, "author": bot,
           "content": "", "timestamp": "2026-12-05T02:00:00.000000+00:00",
           "edited_timestamp": null, "tts": false, "mention_everyone": false,
           "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
           "pinned": false, "type": 0, "flags": 0, "components": []})
}

async fn telegram(
    State(m): State<Arc<Mocks>>,
    Path((_bot, method)): Path<(String, String)>,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    if !method.eq_ignore_ascii_case("sendMessage") {
        return axum::Json(json!({"ok": true, "result": true})).into_response();
    }
    let chat = match &body["chat_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let now = Instant::now();
    let admitted = {
        let mut t = m.telegram.lock().unwrap();
        let TelegramWindows { chats, overall } = &mut *t;
        let (second, minute) = chats.entry(chat.clone()).or_default();
        // Checked before any is taken, so a refusal takes no slot.
        let probe = |w: &mut Window, count, span| {
            let r = w.admit(now, count, span);
            if r.is_ok() {
                w.0.pop_back();
            }
            r
        };
        probe(second, 1, Duration::from_secs(1))
            .and_then(|()| probe(minute, 20, Duration::from_secs(60)))
            .and_then(|()| probe(overall, 30, Duration::from_secs(1)))
            .map(|()| {
                second.0.push_back(now);
                minute.0.push_back(now);
                overall.0.push_back(now);
            })
    };
    if let Err(wait) = admitted {
        m.refuse("telegram");
        let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = axum::Json(json!({"ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry}"),
            "parameters": {"retry_after": retry}}))
        .into_response();
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let n = m.accept(format!("telegram:{chat}"));
    let bot =
        json!({"id": 123456789, "is_bot": true, "first_name": "purser", "username": "purser_bot"});
    let id: i64 = chat.parse().unwrap_or(-1);
    axum::Json(
        json!({"ok": true, "result": {"message_id": n, "date": 1_700_000_000,
        "from": bot, "text": body["text"],
        "chat": {"id": id, "type": "supergroup", "title": "ops"}}}),
    )
    .into_response()
}

/// The least time, from the first message to the last, in which the limits
/// let `n` messages go to one destination of `kind`.
fn least(kind: &str, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    match kind {
        // Five at once, then five more as each 5-second window opens.
        "discord" => ((n / 5.0).ceil() - 1.0) * 5.0,
        // One a second; beyond 20, the 21st waits for the minute.
        "telegram" => {
            let minutes = ((n - 1.0) / 20.0).floor();
            minutes * 60.0 + (n - 1.0 - minutes * 20.0)
        }
        _ => n - 1.0,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let alerts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let per_account: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let destinations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let accounts = alerts / per_account.max(1);

    let mocks = Arc::new(Mocks::default());
    let app = Router::new()
        .route("/slack/api/{method}", post(slack))
        .route("/api/v10/channels/{channel}/messages", post(discord))
        .route("/telegram/{bot}/{method}", post(telegram))
        .fallback(|uri: axum::http::Uri| async move {
            eprintln!("no mock for {uri}");
            StatusCode::NOT_FOUND
        })
        .with_state(mocks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "[store]\npath = \"{}\"\n[scheduler]\nschedule = \"0 0 * * * *\"\njitter = \"0s\"\n\
         [rules.expiring]\nladder = [{{ days = 30, severity = \"C\" }}]\n\
         [[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\nconcurrency = 16\n",
        dir.path().join("bench.db").display()
    );
    let mut kinds = Vec::new();
    for d in 0..destinations {
        let kind = ["slack", "discord", "telegram"][d % 3];
        kinds.push(kind);
        let (channel, token, base) = match kind {
            "slack" => (
                format!("C{d:04}"),
                "slack.token",
                format!("http://{api}/slack/api"),
            ),
            "discord" => (
                format!("{}", 5_550_000 + d),
                "discord.token",
                format!("http://{api}/api/v10"),
            ),
            _ => (
                format!("-100{}", 1_000_000 + d),
                "telegram.token",
                format!("http://{api}/telegram/"),
            ),
        };
        writeln!(
            config,
            "[[outputs]]\nname = \"out-{d:02}\"\nkind = \"{kind}\"\nchannel = \"{channel}\"\n\
             token = \"file:{token}\"\napi = \"{base}\"\n\
             [[routes]]\nmatchers = \"team=t{d:02}\"\noutputs = [\"out-{d:02}\"]"
        )
        .unwrap();
    }
    let mut scenario = String::new();
    for a in 0..accounts {
        writeln!(
            config,
            "[[accounts]]\nid = \"acct-{a:04}\"\nprovider = \"sim\"\nlabels = {{ team = \"t{:02}\" }}",
            a % destinations
        )
        .unwrap();
        writeln!(
            scenario,
            "[[accounts]]\nid = \"acct-{a:04}\"\nbalance = \"1000000\"\nburn_per_day = \"0\""
        )
        .unwrap();
        for r in 0..per_account {
            writeln!(
                scenario,
                "[[accounts.resources]]\nid = \"ins-{a:04}-{r:02}\"\nproduct = \"cvm\"\n\
                 expires_in = \"10d\"\nrenewal = \"manual\""
            )
            .unwrap();
        }
    }
    std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
    std::fs::write(dir.path().join("slack.token"), "xoxb-bench").unwrap();
    std::fs::write(dir.path().join("discord.token"), "bench.discord.token").unwrap();
    std::fs::write(dir.path().join("telegram.token"), TELEGRAM_TOKEN).unwrap();
    let config =
        Config::parse(&config, &dir.path().join("bench.toml")).unwrap_or_else(|e| panic!("{e}"));

    // What each destination is sent: one message per account and poll,
    // carrying up to ten alerts.
    let messages_per_account = per_account.div_ceil(10);
    let mut expected = vec![0usize; destinations];
    for a in 0..accounts {
        expected[a % destinations] += messages_per_account;
    }
    let total: usize = expected.iter().sum();
    let mut least_time: f64 = 0.0;
    let mut by_platform: HashMap<&str, usize> = HashMap::new();
    for (d, n) in expected.iter().enumerate() {
        least_time = least_time.max(least(kinds[d], *n));
        *by_platform.entry(kinds[d]).or_default() += n;
    }
    // The global limits bound it too: 50 a second on Discord, 30 on Telegram.
    least_time = least_time
        .max((by_platform.get("discord").copied().unwrap_or(0) as f64 - 1.0).max(0.0) / 50.0)
        .max((by_platform.get("telegram").copied().unwrap_or(0) as f64 - 1.0).max(0.0) / 30.0);

    let app = Application::build(config, Arc::new(SystemClock), Default::default())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    loop {
        let got = mocks.accepted.lock().unwrap().len();
        if got >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {got} of {total} messages in 10 minutes"
        );
        if std::env::var_os("STORM_PROGRESS").is_some() {
            let of = |k: &str| {
                let a = mocks.accepted.lock().unwrap();
                a.iter().filter(|(d, _)| d.starts_with(k)).count()
            };
            eprintln!(
                "{got} of {total} (slack {}, discord {}, telegram {}), {} refused",
                of("slack"),
                of("discord"),
                of("telegram"),
                mocks.refused.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = mocks.accepted.lock().unwrap().clone();
    let first = accepted.iter().map(|(_, t)| *t).min().unwrap();
    let last = accepted.iter().map(|(_, t)| *t).max().unwrap();
    let took = last.duration_since(first).as_secs_f64();
    // Each destination's messages, by arrival.
    let arrivals = |d: usize| -> Vec<Instant> {
        let name = format!("{}{}", kinds[d], dest_id(kinds[d], d));
        let mut t: Vec<Instant> = accepted
            .iter()
            .filter(|(dest, _)| *dest == name)
            .map(|(_, t)| *t)
            .collect();
        t.sort();
        t
    };
    // The least given when each destination's first message could go (its
    // first alert decided): what polling the accounts leaves to delivery.
    let mut least_from_ready: f64 = least_time;
    let mut worst = (0.0f64, String::new());
    for (d, n) in expected.iter().enumerate() {
        let t = arrivals(d);
        let (Some(a), Some(b)) = (t.first(), t.last()) else {
            continue;
        };
        let least_d = least(kinds[d], *n);
        least_from_ready = least_from_ready.max(a.duration_since(first).as_secs_f64() + least_d);
        let span = b.duration_since(*a).as_secs_f64();
        if least_d > 0.0 && span / least_d > worst.0 {
            worst = (
                span / least_d,
                format!(
                    "out-{d:02} ({}): {span:.2} s for {n}, least {least_d:.2} s",
                    kinds[d]
                ),
            );
        }
    }
    println!(
        "{alerts} alerts ({per_account} per account, {accounts} accounts) over {destinations} destinations: \
         {total} messages, {} refused with 429",
        mocks.refused.load(Ordering::SeqCst)
    );
    println!(
        "delivery {took:.2} s from the first message (at {:.2} s) to the last; the least the limits allow: \
         {least_time:.2} s were every alert ready at once (ratio {:.3}), {least_from_ready:.2} s as each \
         destination's first alert was (ratio {:.3})",
        first.duration_since(started).as_secs_f64(),
        took / least_time,
        took / least_from_ready,
    );
    println!(
        "slowest destination against its least: {:.3}, {}",
        worst.0, worst.1
    );
    for kind in ["slack", "discord", "telegram"] {
        let spans: Vec<f64> = (0..destinations)
            .filter(|d| kinds[*d] == kind)
            .map(|d| {
                let t = arrivals(d);
                match (t.first(), t.last()) {
                    (Some(a), Some(b)) => b.duration_since(*a).as_secs_f64(),
                    _ => 0.0,
                }
            })
            .collect();
        let slowest = spans.iter().copied().fold(0.0, f64::max);
        println!(
            "  {kind:<8} {} destinations, {} messages; slowest {slowest:.2} s (least {:.2} s); 429s {}",
            spans.len(),
            by_platform.get(kind).copied().unwrap_or(0),
            least(kind, expected.iter().copied().max().unwrap_or(0)),
            mocks
                .refused_by
                .lock()
                .unwrap()
                .get(kind)
                .copied()
                .unwrap_or(0),
        );
    }
    let _ = stop.send(());
    let _ = task.await;
}

/// How destination `d` is named in the mocks' records.
fn dest_id(kind: &str, d: usize) -> String {
    match kind {
        "slack" => format!(":C{d:04}"),
        "discord" => format!(":{}", 5_550_000 + d),
        _ => format!(":-100{}", 1_000_000 + d),
    }
}
