//! An unacknowledged alert walks its chain against a loopback mock of
//! Slack's Web API: the channel first, then a direct message to whoever is on
//! call, then the secondary; a restart mid-chain pages nobody twice; the
//! acknowledgement pressed in the direct message stops the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use purser::adapters::slack;
use purser::ports::{Clock, Escalations};
use serde_json::json;

use crate::chat_api::{Call, ChatApi};
use crate::helpers::{Setup, World};

const SECRET: &str = "slack-signing-secret-for-tests";
const TOKEN: &str = "xoxb-test-token";

async fn slack_mock() -> (Arc<ChatApi>, std::net::SocketAddr) {
    let posted = AtomicUsize::new(0);
    ChatApi::start(move |c| match c.path.as_str() {
        "/api/chat.postMessage" => {
            let n = posted.fetch_add(1, Ordering::SeqCst) + 1;
            let channel = c.body["channel"].as_str().unwrap_or("C0OPS").to_owned();
            (
                200,
                json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}")}),
            )
        }
        _ => (200, json!({"ok": true})),
    })
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

[rules.low_balance]
tiers = [{{ below = "3,000", severity = "A" }}]

[[people]]
name = "ana"
role = "approver"
slack = "U0ANA"

[[people]]
name = "bo"
role = "approver"
slack = "U0BO"

[[people]]
name = "lead"
role = "admin"
slack = "U0LEAD"

[[outputs]]
name = "ops"
kind = "slack"
channel = "C0OPS"
token = "file:slack.token"
api = "http://{addr}/api"

[[schedules]]
name = "ops"
rotation = "weekly"
handoff = "mon 10:00"
start = "2026-10-26"
people = ["ana", "bo"]

[escalation.A]
steps = [
  {{ after = "15m", notify = ["oncall:ops"] }},
  {{ after = "30m", notify = ["secondary:ops"] }},
  {{ after = "1h", notify = ["person:lead"] }},
]
"#
    )
}

fn to(calls: &[Call], channel: &str) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.body["channel"] == channel && c.body["thread_ts"].is_null())
        .cloned()
        .collect()
}

fn thread_lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !c.body["thread_ts"].is_null())
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unacknowledged_a_alert_walks_from_channel_to_dm_and_stops_at_the_ack() {
    let (mock, addr) = slack_mock().await;
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
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
    // Sunday 1 November, 08:00 in Beijing: A's clock runs on a day off.
    let calls = mock.wait("POST", "/api/chat.postMessage", 1).await;
    assert_eq!(
        to(&calls, "C0OPS").len(),
        1,
        "step 1: the alert in its channel"
    );
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(open.len(), 1);
    let fingerprint = open[0].fingerprint.clone();
    assert_eq!(open[0].due_at, world.clock.now() + Duration::hours(2));

    app.advance(Duration::minutes(14)).await;
    assert!(to(&mock.calls("POST", "/api/chat.postMessage"), "U0ANA").is_empty());
    app.advance(Duration::minutes(1)).await;
    let calls = mock.wait("POST", "/api/chat.postMessage", 3).await;
    let dm = to(&calls, "U0ANA");
    assert_eq!(dm.len(), 1, "ana, on call, is paged directly: {calls:?}");
    let text = dm[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("ana, you are paged as on call for ops"),
        "{text}"
    );
    assert!(text.contains("Respond by Sun 01 Nov 10:00 CST"), "{text}");
    let button = &dm[0].body["blocks"][1]["elements"][0];
    assert_eq!(
        (button["action_id"].as_str(), button["value"].as_str()),
        (Some("ack"), Some(fingerprint.as_str()))
    );
    assert_eq!(
        thread_lines(&calls),
        [
            "Paged ana (on call for ops) — not acknowledged after 15m; respond by Sun 01 Nov 10:00 CST"
        ],
        "the channel sees the step"
    );

    // A crash and a restart mid-chain: nobody already paged is paged again.
    app.crash();
    world.clock.advance(Duration::minutes(5));
    let app = world.start().await;
    app.settle().await;
    assert_eq!(
        to(&mock.calls("POST", "/api/chat.postMessage"), "U0ANA").len(),
        1
    );
    app.advance(Duration::minutes(10)).await;
    let calls = mock.wait("POST", "/api/chat.postMessage", 5).await;
    assert_eq!(to(&calls, "U0BO").len(), 1, "the secondary at 30 minutes");
    assert_eq!(to(&calls, "U0ANA").len(), 1);

    // bo acknowledges from the direct message itself.
    let payload = json!({"type": "block_actions", "user": {"id": "U0BO"},
        "trigger_id": "trigger-esc-1",
        "actions": [{"action_id": "ack", "value": fingerprint}],
        "response_url": format!("http://{addr}/respond"),
        "container": {"message_ts": "1700000000.000004", "channel_id": "D0BO"},
        "message": {"ts": "1700000000.000004", "blocks": []}});
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let stamp = world.clock.now().timestamp().to_string();
    let status = reqwest::Client::new()
        .post(format!("http://{}/slack/interactions", app.http.unwrap()))
        .header("X-Slack-Request-Timestamp", &stamp)
        .header(
            "X-Slack-Signature",
            slack::sign(SECRET, &stamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    mock.wait("POST", "/respond", 1).await;
    app.settle().await;
    app.advance(Duration::hours(2)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(
        to(&calls, "U0LEAD").is_empty(),
        "the chain stopped: {calls:?}"
    );
    let done = app
        .store
        .escalations_since(world.clock.now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(done[0].acked_by.as_deref(), Some("bo"));
    assert!(
        done[0].acked_at.unwrap() <= done[0].due_at,
        "within the 2-hour target"
    );
    app.stop().await;
}
