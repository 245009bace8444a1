//! The whole loop on Slack, against a loopback mock of its Web API: an alert
//! fires → a message with buttons is posted → a signed button press arrives →
//! the acknowledgement is recorded → the message is edited → the alert
//! resolves → the original message is edited again.

use std::sync::Arc;

use chrono::Duration;
use purser::ports::Clock;
use serde_json::{Value, json};

use crate::chat_api::{ChatApi, RETRY_AFTER_HEADER, slack_form, slack_interaction};
use crate::helpers::{SEVERAL, Setup, TestApp, World};

const SECRET: &str = "slack-signing-secret-for-tests";
const TOKEN: &str = "xoxb-test-token";
const TS: &str = "1700000000.000100";

/// Slack's Web API (bearer token checked), its file upload URL and a
/// `response_url`.
async fn start_mock() -> (Arc<ChatApi>, std::net::SocketAddr) {
    let here = Arc::new(std::sync::OnceLock::<std::net::SocketAddr>::new());
    let known = here.clone();
    let (api, addr) = ChatApi::start(move |c| {
        if c.path.starts_with("/api/")
            && c.authorization.as_deref() != Some(&format!("Bearer {TOKEN}"))
        {
            return (200, json!({"ok": false, "error": "invalid_auth"}));
        }
        match c.path.as_str() {
            "/api/chat.postMessage" => (200, json!({"ok": true, "channel": "C0ALERTS", "ts": TS})),
            "/api/files.getUploadURLExternal" => {
                let addr = known.get().unwrap();
                (
                    200,
                    json!({"ok": true, "file_id": "F0CHART",
                           "upload_url": format!("http://{addr}/upload/F0CHART")}),
                )
            }
            _ => (200, json!({"ok": true})),
        }
    })
    .await;
    here.set(addr).unwrap();
    (api, addr)
}

/// The JSON bodies of the calls to `path`, once there are `n`.
async fn wait(mock: &ChatApi, path: &str, n: usize) -> Vec<Value> {
    mock.wait("POST", path, n)
        .await
        .into_iter()
        .map(|c| c.body)
        .collect()
}

async fn press(app: &TestApp, world: &World, payload: &Value) -> u16 {
    slack_interaction(
        app.http.unwrap(),
        SECRET,
        world.clock.now().timestamp(),
        &slack_form(payload),
    )
    .await
}

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"

[slack]
mode = "http"
signing_secret = "file:slack.secret"

[[people]]
name = "ana"
role = "requester"
slack = "U0ANA"

[[people]]
name = "vic"
role = "viewer"
slack = "U0VIC"

[[outputs]]
name = "ops"
kind = "slack"
channel = "C0ALERTS"
token = "file:slack.token"
api = "http://{addr}/api"
"#
    )
}

#[tokio::test]
async fn alert_posted_button_pressed_acknowledged_edited_resolved() {
    let (mock, addr) = start_mock().await;
    let world = World::low_on_money(&config(addr)).await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    std::fs::write(world.dir.path().join("slack.token"), TOKEN).unwrap();
    let app = world.start().await;
    app.settle().await;

    // Posted, with buttons.
    let posted = wait(&mock, "/api/chat.postMessage", 1).await;
    let message = &posted[0];
    assert_eq!(message["channel"], "C0ALERTS");
    let blocks = message["blocks"].clone();
    let text = blocks.to_string();
    assert!(
        text.contains("low_balance") && text.contains("acme"),
        "{text}"
    );
    let buttons: Vec<String> = blocks[2]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["action_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(buttons, ["ack", "silence_1h", "silence_24h", "topup"]);
    let fp = blocks[2]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    // Money running out: the runway chart goes into the message's thread by
    // Slack's external upload (ask for a URL, send the bytes, share).
    let asked = mock
        .wait("POST", "/api/files.getUploadURLExternal", 1)
        .await;
    let length: usize = form_urlencoded::parse(asked[0].raw.as_bytes())
        .find(|(k, _)| k == "length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!(
        asked[0].raw.contains("filename=runway.png"),
        "{}",
        asked[0].raw
    );
    let uploaded = mock.wait("POST", "/upload/F0CHART", 1).await;
    assert_eq!(
        uploaded[0].authorization, None,
        "the token stays with Slack's API"
    );
    assert!(uploaded[0].raw.contains("PNG"));
    assert!(length > 1000 && uploaded[0].raw.len() >= length / 2);
    let shared = wait(&mock, "/api/files.completeUploadExternal", 1).await;
    assert_eq!(
        shared[0],
        json!({"files": [{"id": "F0CHART", "title": "Runway of acme"}],
               "channel_id": "C0ALERTS", "thread_ts": TS})
    );

    let pressed = |user: &str, action: &str, value: &str| {
        json!({"type": "block_actions", "user": {"id": user},
               "actions": [{"action_id": action, "value": value}],
               "response_url": format!("http://{addr}/respond"),
               "container": {"message_ts": TS}, "channel": {"id": "C0ALERTS"},
               "message": {"ts": TS, "blocks": blocks}})
    };

    // A viewer's press changes nothing and tells only them.
    assert_eq!(
        press(&app, &world, &pressed("U0VIC", "ack", &fp)).await,
        200
    );
    let answers = wait(&mock, "/respond", 1).await;
    assert_eq!(answers[0]["replace_original"], false);
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .contains("needs the requester role")
    );

    // The requester's press is recorded, and the message edited in place.
    assert_eq!(
        press(&app, &world, &pressed("U0ANA", "ack", &fp)).await,
        200
    );
    let answers = wait(&mock, "/respond", 2).await;
    let edit = &answers[1];
    assert_eq!(edit["replace_original"], true);
    let edited = edit["blocks"].to_string();
    assert!(edited.contains("Acknowledged by ana"), "{edited}");
    assert!(
        !edited.contains("\"ack\""),
        "the ack button is gone: {edited}"
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert_eq!(open[0].acknowledged.as_ref().unwrap().by, "ana");
    // The acknowledgement is also a notice: the output edits its message, as
    // it would for an ack typed as a command.
    let updates = wait(&mock, "/api/chat.update", 1).await;
    assert_eq!(updates[0]["ts"], TS);
    let acked = updates[0]["blocks"].to_string();
    assert!(acked.contains("acknowledged by ana"), "{acked}");
    assert!(!acked.contains("\"ack\""), "{acked}");

    // A forged press does nothing.
    let body = "payload=%7B%7D";
    let r = reqwest::Client::new()
        .post(format!("http://{}/slack/interactions", app.http.unwrap()))
        .header(
            "X-Slack-Request-Timestamp",
            world.clock.now().timestamp().to_string(),
        )
        .header("X-Slack-Signature", "v0=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Signed but meaningless: no payload is refused, an unknown button is
    // answered privately; neither changes anything.
    let status = slack_interaction(
        app.http.unwrap(),
        SECRET,
        world.clock.now().timestamp(),
        "nothing=here",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        press(&app, &world, &pressed("U0ANA", "explode", &fp)).await,
        200
    );
    let answers = wait(&mock, "/respond", 3).await;
    assert_eq!(answers[2]["replace_original"], false);
    assert!(
        answers[2]["text"]
            .as_str()
            .unwrap()
            .contains("does not know the button")
    );
    assert!(
        app.store
            .silences(world.clock.now())
            .await
            .unwrap()
            .is_empty()
    );

    // The remedy button says what it will do.
    assert_eq!(
        press(&app, &world, &pressed("U0ANA", "topup", &fp)).await,
        200
    );
    let answers = wait(&mock, "/respond", 4).await;
    assert!(
        answers[3]["text"]
            .as_str()
            .unwrap()
            .contains("How much should be paid into acme?")
    );

    // Silenced from the message: a silence on this account and rule, and
    // the message edited to say so, with no silence buttons left.
    assert_eq!(
        press(&app, &world, &pressed("U0ANA", "silence_24h", &fp)).await,
        200
    );
    let answers = wait(&mock, "/respond", 5).await;
    assert_eq!(answers[4]["replace_original"], true);
    let silences = app.store.silences(world.clock.now()).await.unwrap();
    assert_eq!(silences.len(), 1);
    assert_eq!(
        silences[0]
            .matchers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["account=acme", "rule=low_balance"]
    );
    let updates = wait(&mock, "/api/chat.update", 2).await;
    let silenced = updates[1]["blocks"].to_string();
    assert!(silenced.contains("silenced by ana until"), "{silenced}");
    assert!(!silenced.contains("silence_24h"), "{silenced}");

    // Resolved: the original message is edited, not followed by a new one.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    app.advance(Duration::minutes(1)).await;
    let updates = wait(&mock, "/api/chat.update", 3).await;
    assert_eq!(updates[2]["ts"], TS);
    assert_eq!(updates[2]["channel"], "C0ALERTS");
    assert!(updates[2]["blocks"].to_string().contains("Resolved"));
    assert_eq!(mock.calls("POST", "/api/chat.postMessage").len(), 1);
    app.stop().await;
}

/// Three alerts of one account from one poll: one message, whose buttons
/// act on all three.
#[tokio::test]
async fn one_poll_one_message_and_its_buttons_act_on_every_alert() {
    let (mock, addr) = start_mock().await;
    let world = World::new(
        SEVERAL,
        Setup {
            rules: &config(addr),
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    std::fs::write(world.dir.path().join("slack.token"), TOKEN).unwrap();
    let app = world.start().await;
    app.settle().await;

    let posted = wait(&mock, "/api/chat.postMessage", 1).await;
    assert_eq!(mock.calls("POST", "/api/chat.postMessage").len(), 1);
    let blocks = posted[0]["blocks"].clone();
    let text = blocks.to_string();
    assert!(text.contains("acme · 3 alerts firing"), "{text}");
    for what in ["low_balance", "ins-a", "ins-b"] {
        assert!(text.contains(what), "{what}: {text}");
    }
    let actions = blocks.as_array().unwrap().last().unwrap().clone();
    let buttons: Vec<(&str, &str)> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["action_id"].as_str().unwrap(),
                b["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        buttons,
        [
            ("ack", "all"),
            ("silence_1h", "all"),
            ("silence_24h", "all"),
            ("topup", "all"),
            ("renew", "all")
        ]
    );
    let pressed = |action: &str| {
        json!({"type": "block_actions", "user": {"id": "U0ANA"},
               "actions": [{"action_id": action, "value": "all"}],
               "response_url": format!("http://{addr}/respond"),
               "container": {"type": "message", "message_ts": TS, "channel_id": "C0ALERTS"},
               "channel": {"id": "C0ALERTS"}, "message": {"ts": TS, "blocks": blocks}})
    };

    // Acknowledge all: three acknowledgements, and the message redrawn
    // until it shows each.
    assert_eq!(press(&app, &world, &pressed("ack")).await, 200);
    let answers = wait(&mock, "/respond", 1).await;
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged 3 alerts"),
        "{}",
        answers[0]
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert_eq!(open.len(), 3);
    assert!(
        open.iter()
            .all(|a| a.acknowledged.as_ref().unwrap().by == "ana")
    );
    let count =
        |c: &crate::chat_api::Call, what: &str| c.body["blocks"].to_string().matches(what).count();
    let updates = mock
        .wait_until("POST", "/api/chat.update", |calls| {
            calls
                .last()
                .is_some_and(|c| count(c, "acknowledged by ana") == 3)
        })
        .await
        .expect("the message shows all three acknowledged");
    let last = &updates.last().unwrap().body;
    assert_eq!(last["ts"], TS);
    assert!(!last["blocks"].to_string().contains("\"ack\""), "{last}");

    // Silence all for 1 h: one silence per rule of the account.
    assert_eq!(press(&app, &world, &pressed("silence_1h")).await, 200);
    wait(&mock, "/respond", 2).await;
    let mut silences: Vec<String> = app
        .store
        .silences(world.clock.now())
        .await
        .unwrap()
        .iter()
        .map(|s| {
            s.matchers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    silences.sort();
    assert_eq!(
        silences,
        [
            "account=acme,rule=expiring",
            "account=acme,rule=low_balance"
        ]
    );
    mock.wait_until("POST", "/api/chat.update", |calls| {
        calls
            .last()
            .is_some_and(|c| count(c, "silenced by ana until") == 3)
    })
    .await
    .expect("the message shows all three silenced");

    // "Renew all…" opens one request naming both resources.
    assert_eq!(press(&app, &world, &pressed("renew")).await, 200);
    let answers = wait(&mock, "/respond", 3).await;
    let text = answers[2]["text"].as_str().unwrap();
    assert!(
        text.contains("R1 opened: renew ins-a, ins-b for 1 month."),
        "{}",
        answers[2]
    );
    assert!(
        text.contains("asked by ana: asked from the alert"),
        "{text}"
    );
    app.stop().await;
}

/// A 429 is a pause, not a failure: the notice waits out Slack's
/// Retry-After (nothing goes to the output meanwhile), then goes once, and
/// the pause did not count as an attempt.
#[tokio::test]
async fn a_rate_limit_is_waited_out_and_the_message_sent_once() {
    let throttled = std::sync::atomic::AtomicBool::new(false);
    let (mock, addr) = ChatApi::start(move |c| match c.path.as_str() {
        "/api/chat.postMessage" if !throttled.swap(true, std::sync::atomic::Ordering::SeqCst) => (
            429,
            json!({"ok": false, "error": "ratelimited", RETRY_AFTER_HEADER: 20}),
        ),
        "/api/chat.postMessage" => (200, json!({"ok": true, "channel": "C0ALERTS", "ts": TS})),
        _ => (
            200,
            json!({"ok": false, "error": "method_not_supported_for_channel_type"}),
        ),
    })
    .await;
    let world = World::low_on_money(&config(addr)).await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    std::fs::write(world.dir.path().join("slack.token"), TOKEN).unwrap();
    let app = world.start().await;
    app.settle().await;
    assert_eq!(mock.calls("POST", "/api/chat.postMessage").len(), 1);

    app.advance(Duration::seconds(19)).await;
    assert_eq!(
        mock.calls("POST", "/api/chat.postMessage").len(),
        1,
        "sent again before Slack's Retry-After ran out"
    );
    let waiting = app.store.undelivered(false).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].attempts, 0, "a pause is not an attempt");
    assert!(
        waiting[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("rate limited; retry after 20 s")),
        "{waiting:?}"
    );
    assert_eq!(
        waiting[0].at.timestamp_millis(),
        (world.clock.now() + Duration::seconds(1)).timestamp_millis()
    );

    app.advance(Duration::seconds(1)).await;
    let posted = wait(&mock, "/api/chat.postMessage", 2).await;
    assert!(
        posted[1].to_string().contains("low_balance"),
        "{}",
        posted[1]
    );
    app.advance(Duration::minutes(10)).await;
    assert_eq!(mock.calls("POST", "/api/chat.postMessage").len(), 2);
    assert!(app.store.undelivered(false).await.unwrap().is_empty());
    app.stop().await;
}
