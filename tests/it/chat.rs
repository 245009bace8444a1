//! Slack's HTTP endpoints against the running daemon: signed slash commands
//! answered from the store, forged ones refused before anything is read.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use purser::adapters::slack;
use purser::ports::Clock;

use crate::helpers::{Setup, TestApp, World};

const SECRET: &str = "slack-signing-secret-for-tests";

const SCENARIO: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"

[[accounts]]
id = "blind"
balance = "¥1"
fail = "unauthorized"
"#;

fn chat_config() -> String {
    r#"
[http]
listen = "127.0.0.1:0"

[slack]
mode = "http"
signing_secret = "file:slack.secret"

[[people]]
name = "ana"
role = "approver"
slack = "U0ANA"

[[people]]
name = "vic"
role = "viewer"
slack = "U0VIC"
"#
    .to_owned()
}

async fn running() -> (World, TestApp) {
    let rules = chat_config();
    let world = World::new(
        SCENARIO,
        Setup {
            accounts: &["acme", "blind"],
            rules: &rules,
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    let app = world.start().await;
    app.settle().await;
    (world, app)
}

pub(crate) fn form(user: &str, text: &str, response_url: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "legacy")
        .append_pair("team_id", "T1")
        .append_pair("channel_id", "C1")
        .append_pair("user_id", user)
        .append_pair("user_name", "someone")
        .append_pair("command", "/purser")
        .append_pair("text", text)
        .append_pair("response_url", response_url)
        .finish()
}

pub(crate) struct Sent {
    pub(crate) status: u16,
    pub(crate) body: String,
}

pub(crate) async fn post_signed(app: &TestApp, body: &str, ts: i64, secret: &str) -> Sent {
    let ts = ts.to_string();
    let sig = slack::sign(secret, &ts, body.as_bytes());
    post_raw(app, body, Some(&ts), Some(&sig)).await
}

async fn post_raw(app: &TestApp, body: &str, ts: Option<&str>, sig: Option<&str>) -> Sent {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/slack/commands", app.http.unwrap()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(ts) = ts {
        req = req.header("X-Slack-Request-Timestamp", ts);
    }
    if let Some(sig) = sig {
        req = req.header("X-Slack-Signature", sig);
    }
    let r = req.send().await.unwrap();
    Sent {
        status: r.status().as_u16(),
        body: r.text().await.unwrap(),
    }
}

#[tokio::test]
async fn a_signed_command_is_answered_from_the_store() {
    let (world, app) = running().await;
    let now = world.clock.now().timestamp();

    let health = reqwest::get(format!("http://{}/healthz", app.http.unwrap()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let r = post_signed(&app, &form("U0VIC", "balance acme", ""), now, SECRET).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["response_type"], "ephemeral");
    let text = v["blocks"].to_string();
    assert!(text.contains("acme · ¥2,000.00"), "{text}");

    let r = post_signed(&app, &form("U0VIC", "balance", ""), now + 100, SECRET).await;
    assert!(
        r.body.contains("blind · cannot be read (refused)"),
        "{}",
        r.body
    );

    let r = post_signed(&app, &form("U0VIC", "whoami", ""), now + 1, SECRET).await;
    assert!(r.body.contains("You are vic, viewer."), "{}", r.body);

    // A mistake gets its usage, and changes nothing.
    let r = post_signed(&app, &form("U0ANA", "silence acme 1h", ""), now + 2, SECRET).await;
    assert!(
        r.body.contains("is not a matcher") && r.body.contains("usage: silence"),
        "{}",
        r.body
    );

    // A viewer may not silence; an approver may.
    let r = post_signed(
        &app,
        &form("U0VIC", "silence account=acme 1h", ""),
        now + 3,
        SECRET,
    )
    .await;
    assert!(
        r.body.contains("needs the requester role; you are viewer"),
        "{}",
        r.body
    );
    assert!(
        app.store
            .silences(world.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    let r = post_signed(
        &app,
        &form("U0ANA", "silence account=acme 1h wire sent", ""),
        now + 4,
        SECRET,
    )
    .await;
    assert!(r.body.contains("Silence #1 set"), "{}", r.body);
    let s = app.store.silences(world.clock.now()).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].created_by, "ana");
    assert_eq!(s[0].reason.as_deref(), Some("wire sent"));

    // Alerts show, with their ids; ack by id; a second ack counts once.
    let r = post_signed(&app, &form("U0ANA", "alerts", ""), now + 5, SECRET).await;
    assert!(r.body.contains("low_balance"), "{}", r.body);
    let fp = app.store.all_open_alerts().await.unwrap()[0]
        .fingerprint
        .clone();
    let r = post_signed(
        &app,
        &form("U0ANA", &format!("ack {}", &fp[..8]), ""),
        now + 6,
        SECRET,
    )
    .await;
    assert!(r.body.contains("Acknowledged"), "{}", r.body);
    let r = post_signed(
        &app,
        &form("U0VIC", &format!("ack {}", &fp[..8]), ""),
        now + 7,
        SECRET,
    )
    .await;
    assert!(r.body.contains("needs the requester role"), "{}", r.body);
    let r = post_signed(
        &app,
        &form("U0ANA", &format!("ack {fp}"), ""),
        now + 8,
        SECRET,
    )
    .await;
    assert!(r.body.contains("Already acknowledged by ana"), "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn strangers_get_a_polite_refusal_and_no_data() {
    let (world, app) = running().await;
    let now = world.clock.now().timestamp();
    let r = post_signed(&app, &form("U0EVE", "balance", ""), now, SECRET).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("does not know you"), "{}", r.body);
    assert!(
        !r.body.contains("acme") && !r.body.contains("2,000"),
        "{}",
        r.body
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_stale_tampered_and_replayed_requests_get_401_and_do_nothing() {
    let (world, app) = running().await;
    let now = world.clock.now().timestamp();
    let body = form("U0ANA", "silence account=acme 1h", "");

    // No headers, a wrong secret, a stale timestamp, a tampered body.
    assert_eq!(post_raw(&app, &body, None, None).await.status, 401);
    assert_eq!(
        post_signed(&app, &body, now, "not-the-secret").await.status,
        401
    );
    assert_eq!(
        post_signed(&app, &body, now - 301, SECRET).await.status,
        401
    );
    let ts = now.to_string();
    let sig = slack::sign(SECRET, &ts, body.as_bytes());
    let tampered = body.replace("1h", "90d");
    assert_eq!(
        post_raw(&app, &tampered, Some(&ts), Some(&sig))
            .await
            .status,
        401
    );
    assert!(
        app.store
            .silences(world.clock.now())
            .await
            .unwrap()
            .is_empty()
    );

    // The genuine request once, then its replay.
    assert_eq!(
        post_raw(&app, &body, Some(&ts), Some(&sig)).await.status,
        200
    );
    assert_eq!(
        post_raw(&app, &body, Some(&ts), Some(&sig)).await.status,
        401
    );
    assert_eq!(
        app.store.silences(world.clock.now()).await.unwrap().len(),
        1
    );
    app.stop().await;
}

/// An answer that takes longer than Slack's deadline is acknowledged at once
/// and delivered to the command's response_url.
#[tokio::test]
async fn a_slow_answer_is_acknowledged_then_sent_to_response_url() {
    let (world, app) = running().await;
    // A receiver for the late answer.
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let sink = Router::new().route(
        "/answer",
        post({
            let got = got.clone();
            move |axum::Json(v): axum::Json<serde_json::Value>| {
                let got = got.clone();
                let tx = tx.clone();
                async move {
                    got.lock().unwrap().push(v);
                    let _ = tx.send(()).await;
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });

    // The same endpoint as the daemon's, told to answer within no time at all.
    let chat = world.chat_ops(&app);
    let endpoint = Arc::new(slack::SlackEndpoint {
        verifier: slack::Verifier::new(purser::secret::Secret::from_value(SECRET)),
        clock: world.clock.clone(),
        app: Arc::new(slack::SlackApp {
            chat,
            http: reqwest::Client::new(),
            answer_within: std::time::Duration::ZERO,
            tasks: Default::default(),
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            purser::adapters::http::router(Some(endpoint), None, None),
        )
        .await
        .unwrap()
    });

    let body = form("U0ANA", "runway", &format!("http://{sink_addr}/answer"));
    let ts = world.clock.now().timestamp().to_string();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/slack/commands"))
        .header("X-Slack-Request-Timestamp", &ts)
        .header(
            "X-Slack-Signature",
            slack::sign(SECRET, &ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Working on it"));
    tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .unwrap();
    let late = got.lock().unwrap()[0].clone();
    assert!(late["blocks"].to_string().contains("acme"), "{late}");
    app.stop().await;
}

/// Answers about the whole fleet read the per-account views the poller
/// keeps; they must say what the answers for each account, read from its
/// history, say.
#[tokio::test]
async fn fleet_answers_from_the_kept_views_agree_with_each_accounts_history() {
    let scenario = r#"
[[accounts]]
id = "acme"
balance = "¥20,000"
burn_per_day = "1000"
report_spend = true

[[accounts]]
id = "beta"
balance = "¥9,000"
burn_per_day = "300"

[[accounts]]
id = "blind"
balance = "¥1"
fail = "unauthorized"
"#;
    let world = World::new(
        scenario,
        Setup {
            accounts: &["acme", "beta", "blind"],
            rules: &chat_config(),
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    let app = world.start().await;
    app.settle().await;
    // Two hours of polls: beta's burn comes from its balance falling.
    app.advance(chrono::Duration::hours(2)).await;

    let views = app.store.views().await.unwrap();
    assert_eq!(views.len(), 2, "the unreadable account has none: {views:?}");
    let beta = &views[&purser::domain::model::AccountId::parse("beta").unwrap()];
    let burn = beta.forecast.as_ref().unwrap().burn.per_day.to_string();
    assert_eq!(burn, "¥300.00");

    let now = world.clock.now().timestamp();
    let lines = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .trim_matches('`')
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    };
    for (i, verb) in ["balance", "runway"].into_iter().enumerate() {
        let ts = now + 10 * i as i64;
        let fleet = lines(
            &post_signed(&app, &form("U0VIC", verb, ""), ts, SECRET)
                .await
                .body,
        );
        assert_eq!(fleet.len(), 3, "{fleet:?}");
        // The account nobody can read comes first: it needs someone most.
        assert!(
            fleet[0].starts_with("blind · cannot be read (refused)"),
            "{fleet:?}"
        );
        for (j, account) in ["acme", "beta", "blind"].into_iter().enumerate() {
            let one = post_signed(
                &app,
                &form("U0VIC", &format!("{verb} {account}"), ""),
                ts + 1 + j as i64,
                SECRET,
            )
            .await;
            let one = lines(&one.body);
            assert_eq!(one.len(), 1, "{one:?}");
            assert!(
                fleet.contains(&one[0]),
                "{verb} {account}: {one:?} not in {fleet:?}"
            );
        }
    }
    // Polls since: the fleet's answer (from the views kept between
    // questions) moves with them, as the one account's (from its history).
    let before = lines(
        &post_signed(&app, &form("U0VIC", "balance", ""), now + 30, SECRET)
            .await
            .body,
    );
    app.advance(chrono::Duration::hours(2)).await;
    let now = world.clock.now().timestamp();
    let fleet = lines(
        &post_signed(&app, &form("U0VIC", "balance", ""), now, SECRET)
            .await
            .body,
    );
    let beta = lines(
        &post_signed(&app, &form("U0VIC", "balance beta", ""), now + 1, SECRET)
            .await
            .body,
    );
    assert!(fleet.contains(&beta[0]), "{beta:?} not in {fleet:?}");
    assert!(
        !before.contains(&beta[0]),
        "beta's balance moved: {beta:?} was in {before:?}"
    );
    app.stop().await;
}
