//! Requests shown where people decide them, against a loopback mock of
//! Slack's Web API: a card with Approve and Deny is posted when a request is
//! opened, signed presses decide it (a second press by the same person counts
//! once), the card is edited as the request moves and its thread is told of
//! each change of state, including an expiry nobody acted on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use purser::engine::chatops::{Asker, ReplyKind};
use purser::ports::Clock;
use serde_json::{Value, json};

use crate::chat_api::{Call, ChatApi, slack_form, slack_interaction};
use crate::helpers::{Setup, TestApp, World};

const SECRET: &str = "slack-signing-secret-for-tests";
const TOKEN: &str = "xoxb-test-token";

const SCENARIO: &str = r#"
[[accounts]]
id = "acme"
balance = "¥8,000"
burn_per_day = "100"

[[accounts.resources]]
id = "ins-web"
product = "cvm"
expires_in = "40d"
renewal = "manual"
renewal_price = "¥600"
"#;

/// Slack's Web API, each posted message with its own `ts`, and a
/// `response_url` for answers to presses.
async fn start_mock() -> (Arc<ChatApi>, std::net::SocketAddr) {
    start_mock_failing(0).await
}

/// The same, refusing the first `failures` posts as rate limited.
async fn start_mock_failing(failures: usize) -> (Arc<ChatApi>, std::net::SocketAddr) {
    let tries = AtomicUsize::new(0);
    let posted = AtomicUsize::new(0);
    ChatApi::start(move |c| {
        if c.path.starts_with("/api/")
            && c.authorization.as_deref() != Some(&format!("Bearer {TOKEN}"))
        {
            return (200, json!({"ok": false, "error": "invalid_auth"}));
        }
        match c.path.as_str() {
            "/api/chat.postMessage" if tries.fetch_add(1, Ordering::SeqCst) < failures => {
                (200, json!({"ok": false, "error": "ratelimited"}))
            }
            "/api/chat.postMessage" => {
                let n = posted.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    200,
                    json!({"ok": true, "channel": "C0APPROVE", "ts": format!("1700000000.{n:06}")}),
                )
            }
            _ => (200, json!({"ok": true})),
        }
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

[[people]]
name = "rex"
role = "requester"
slack = "U0REX"

[[people]]
name = "ana"
role = "approver"
slack = "U0ANA"

[[people]]
name = "bo"
role = "approver"
slack = "U0BO"

[[people]]
name = "vic"
role = "viewer"
slack = "U0VIC"

[[outputs]]
name = "approvals"
kind = "slack"
channel = "C0APPROVE"
token = "file:slack.token"
api = "http://{addr}/api"

[approvals]
channels = ["approvals"]
"#
    )
}

async fn running(mock_addr: std::net::SocketAddr) -> (World, TestApp) {
    let world = World::new(
        SCENARIO,
        Setup {
            rules: &config(mock_addr),
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(world.dir.path().join("slack.secret"), SECRET).unwrap();
    std::fs::write(world.dir.path().join("slack.token"), TOKEN).unwrap();
    let app = world.start().await;
    app.settle().await;
    (world, app)
}

static TRIGGERS: AtomicUsize = AtomicUsize::new(0);

/// Presses `action` on the card `ts` as `user`, signed as Slack signs; each
/// press is its own delivery, as Slack's are.
async fn press(
    app: &TestApp,
    world: &World,
    mock: std::net::SocketAddr,
    user: &str,
    action: &str,
    value: &str,
    ts: &str,
) {
    assert_eq!(
        deliver(app, world, &pressed(mock, user, action, value, ts)).await,
        200
    );
}

/// The form body of one press, with a trigger id of its own.
fn pressed(mock: std::net::SocketAddr, user: &str, action: &str, value: &str, ts: &str) -> String {
    let trigger = TRIGGERS.fetch_add(1, Ordering::SeqCst);
    let payload = json!({"type": "block_actions", "user": {"id": user},
        "trigger_id": format!("trigger-{trigger}"),
        "actions": [{"action_id": action, "value": value}],
        "response_url": format!("http://{mock}/respond"),
        "container": {"message_ts": ts, "channel_id": "C0APPROVE"},
        "message": {"ts": ts, "blocks": []}});
    slack_form(&payload)
}

/// Sends a signed interaction body; the HTTP status.
async fn deliver(app: &TestApp, world: &World, body: &str) -> u16 {
    slack_interaction(
        app.http.unwrap(),
        SECRET,
        world.clock.now().timestamp(),
        body,
    )
    .await
}

/// The answers to presses so far, once there are `n`: what each presser saw.
async fn answers(mock: &ChatApi, n: usize) -> Vec<String> {
    mock.wait("POST", "/respond", n)
        .await
        .iter()
        .map(|c| {
            assert_eq!(c.body["response_type"], "ephemeral", "{}", c.raw);
            c.body["text"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn cards(calls: &[Call], id: &str) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.body["thread_ts"].is_null())
        .filter(|c| c.body["blocks"].to_string().contains(&format!("*{id} ·")))
        .map(|c| c.body.clone())
        .collect()
}

fn buttons(blocks: &Value) -> Vec<(String, String)> {
    blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_request_is_decided_from_its_card_and_the_channel_hears_how_it_ended() {
    let (mock, addr) = start_mock().await;
    let (world, app) = running(addr).await;
    let chat = world.chat_ops(&app);
    let rex = Asker {
        platform: "slack".into(),
        user: "U0REX".into(),
    };

    // Above ¥5,000: two approvers. The card goes to the approvals channel.
    let r = chat
        .handle(&rex, "topup acme 6,000 wire for the quarter")
        .await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    app.settle().await;
    let posted = mock.wait("POST", "/api/chat.postMessage", 1).await;
    let card = cards(&posted, "R1");
    assert_eq!(card.len(), 1, "one card: {posted:?}");
    let text = card[0]["blocks"].to_string();
    assert!(
        text.contains("top up ¥6,000.00 by wire transfer on acme"),
        "{text}"
    );
    assert!(text.contains("asked by rex: for the quarter"), "{text}");
    assert!(
        text.contains("waiting for 2 more approvals (not rex's)"),
        "{text}"
    );
    assert_eq!(
        buttons(&card[0]["blocks"]),
        [
            ("approve".into(), "R1".into()),
            ("deny".into(), "R1".into())
        ]
    );
    let ts = "1700000000.000001";

    // Strangers and viewers are refused; a forged value is not a request.
    press(&app, &world, addr, "U0NOBODY", "approve", "R1", ts).await;
    press(&app, &world, addr, "U0VIC", "approve", "R1", ts).await;
    press(&app, &world, addr, "U0ANA", "approve", "R1; R2", ts).await;
    let said = answers(&mock, 3).await;
    let joined = said.join("\n");
    assert!(joined.contains("purser does not know you"), "{joined}");
    assert!(joined.contains("needs the approver role"), "{joined}");
    assert!(
        joined.contains("purser does not know the button"),
        "{joined}"
    );

    // The requester's press decides nothing (here, a requester may not
    // approve at all; an approver who asked is refused as the requester).
    press(&app, &world, addr, "U0REX", "approve", "R1", ts).await;
    let said = answers(&mock, 4).await;
    assert!(said[3].contains("you are requester"), "{}", said[3]);
    // ana's two presses count once.
    press(&app, &world, addr, "U0ANA", "approve", "R1", ts).await;
    let said = answers(&mock, 5).await;
    assert!(
        said[4].starts_with("Your approval of R1 is counted"),
        "{}",
        said[4]
    );
    press(&app, &world, addr, "U0ANA", "approve", "R1", ts).await;
    let said = answers(&mock, 6).await;
    assert!(said[5].contains("a decision counts once"), "{}", said[5]);
    app.settle().await;
    let updates = mock.wait("POST", "/api/chat.update", 1).await;
    let last = updates.last().unwrap().body.clone();
    assert_eq!(last["ts"], ts);
    assert!(
        last["blocks"].to_string().contains("approved by ana"),
        "{last}"
    );
    assert_eq!(
        buttons(&last["blocks"]).len(),
        2,
        "still waiting for one more"
    );

    // bo's press approves it: the buttons go and the thread is told. Slack
    // retrying that very delivery is refused before it is read.
    let body = pressed(addr, "U0BO", "approve", "R1", ts);
    assert_eq!(deliver(&app, &world, &body).await, 200);
    assert_eq!(deliver(&app, &world, &body).await, 401);
    let said = answers(&mock, 7).await;
    assert!(said[6].starts_with("R1 approved."), "{}", said[6]);
    app.settle().await;
    let updates = mock.calls("POST", "/api/chat.update");
    let last = updates.last().unwrap().body.clone();
    assert!(buttons(&last["blocks"]).is_empty(), "{last}");
    assert!(
        last["blocks"]
            .to_string()
            .contains("waiting for the payment"),
        "{last}"
    );
    let thread: Vec<String> = mock
        .calls("POST", "/api/chat.postMessage")
        .iter()
        .filter(|c| c.body["thread_ts"] == ts)
        .map(|c| c.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(thread.len(), 1, "{thread:?}");
    assert!(
        thread[0].starts_with("R1 approved by ana and bo: now a task for a person"),
        "{thread:?}"
    );

    // Each decision records the card it was pressed on.
    let request = app
        .approvals
        .requests
        .request(purser::domain::request::RequestId(1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        request
            .decisions
            .iter()
            .all(|d| d.via.message.as_deref() == Some(&format!("C0APPROVE/{ts}")[..]))
    );

    // A request nobody decides expires, and its card and thread say so.
    let r = chat.handle(&rex, "renew ins-web 1m").await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    app.settle().await;
    let posted = mock.calls("POST", "/api/chat.postMessage");
    assert_eq!(cards(&posted, "R2").len(), 1);
    let ts2 = posted.len();
    let ts2 = format!("1700000000.{ts2:06}");
    let edits_before = mock.calls("POST", "/api/chat.update").len();
    app.advance(Duration::hours(24) + Duration::minutes(1))
        .await;
    let updates = mock.calls("POST", "/api/chat.update");
    let expired: Vec<&Call> = updates[edits_before..]
        .iter()
        .filter(|c| c.body["ts"] == ts2.as_str())
        .collect();
    assert_eq!(expired.len(), 1, "{updates:?}");
    assert!(buttons(&expired[0].body["blocks"]).is_empty());
    assert!(expired[0].body["blocks"].to_string().contains("expired"));
    let told: Vec<String> = mock
        .calls("POST", "/api/chat.postMessage")
        .iter()
        .filter(|c| c.body["thread_ts"] == ts2.as_str())
        .map(|c| c.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with("R2 expired: nobody decided it by"),
        "{told:?}"
    );
    // A late press on the expired card is refused, and nothing is redrawn.
    press(&app, &world, addr, "U0ANA", "approve", "R2", &ts2).await;
    let said = answers(&mock, 8).await;
    assert!(said[7].contains("expired"), "{}", said[7]);
    app.settle().await;
    assert_eq!(mock.calls("POST", "/api/chat.update").len(), updates.len());
}

#[tokio::test]
async fn a_card_slack_refused_is_posted_on_the_retry_and_only_once() {
    let (mock, addr) = start_mock_failing(1).await;
    let (world, app) = running(addr).await;
    let chat = world.chat_ops(&app);
    let rex = Asker {
        platform: "slack".into(),
        user: "U0REX".into(),
    };
    let r = chat.handle(&rex, "renew ins-web 1m").await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    app.settle().await;
    assert_eq!(
        mock.calls("POST", "/api/chat.postMessage").len(),
        1,
        "tried once, refused"
    );
    // Nothing else changes the request; the retry is due 30 s later.
    app.advance(Duration::seconds(31)).await;
    let posted = mock.calls("POST", "/api/chat.postMessage");
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(cards(&posted, "R1").len(), 2, "the same card, tried twice");
    // Later changes edit the one card that landed; none is posted again.
    let ana = Asker {
        platform: "slack".into(),
        user: "U0ANA".into(),
    };
    let r = chat.handle(&ana, "deny R1 not now").await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    app.settle().await;
    let updates = mock.calls("POST", "/api/chat.update");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].body["ts"], "1700000000.000001");
    let thread: Vec<Call> = mock
        .calls("POST", "/api/chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == "1700000000.000001")
        .collect();
    assert_eq!(thread.len(), 1);
    assert_eq!(thread[0].body["text"], "R1 denied by ana: not now.");
    assert_eq!(
        cards(&mock.calls("POST", "/api/chat.postMessage"), "R1").len(),
        2
    );
}
