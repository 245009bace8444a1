//! Slack over Socket Mode, against loopback stand-ins for the Web API and
//! Slack's WebSocket: the connection is opened with the app-level token →
//! slash commands arrive as envelopes and are answered in their
//! acknowledgements → a button press is acknowledged, recorded and the
//! message edited → a retried envelope runs once → Slack asks for a new
//! connection and gets one, with a fresh URL → an envelope re-sent there
//! runs once too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use purser::ports::Clock;
use serde_json::{Value, json};

use crate::chat_api::ChatApi;
use crate::helpers::World;
use crate::ws_peer::{WsPeer, WsServer};

const APP_TOKEN: &str = "xapp-1-A0TEST-1-socket";
const BOT_TOKEN: &str = "xoxb-test-token";
const TS: &str = "1700000000.000100";

fn command(envelope: &str, user: &str, text: &str, respond: &str) -> Value {
    json!({"envelope_id": envelope, "type": "slash_commands", "accepts_response_payload": true,
           "retry_attempt": 0, "retry_reason": "",
           "payload": {"token": "legacy", "team_id": "T1", "user_id": user, "user_name": "someone",
                       "command": "/purser", "text": text, "response_url": respond,
                       "trigger_id": "1.2.3", "channel_id": "C0ALERTS", "api_app_id": "A0TEST"}})
}

/// The acknowledgement of `envelope`, which must come next.
async fn ack_of(peer: &mut WsPeer, envelope: &str) -> Value {
    let ack = peer.recv().await;
    assert_eq!(ack["envelope_id"], envelope, "{ack}");
    ack
}

#[tokio::test]
async fn commands_and_buttons_arrive_over_socket_mode() {
    let socket = WsServer::bind().await;
    let ws_addr = socket.addr;
    let opened = Arc::new(AtomicUsize::new(0));
    let tickets = opened.clone();
    let (mock, addr) = ChatApi::start(move |c| match c.path.as_str() {
        "/api/apps.connections.open" => {
            if c.authorization.as_deref() != Some(&format!("Bearer {APP_TOKEN}")) {
                return (200, json!({"ok": false, "error": "invalid_auth"}));
            }
            let n = tickets.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                json!({"ok": true, "url": format!("ws://{ws_addr}/link/?ticket={n}")}),
            )
        }
        "/api/chat.postMessage" => (200, json!({"ok": true, "channel": "C0ALERTS", "ts": TS})),
        _ => (200, json!({"ok": true})),
    })
    .await;
    let respond = format!("http://{addr}/respond");
    let config = format!(
        r#"
[slack]
app_token = "file:slack.app"
api = "http://{addr}/api"

[[people]]
name = "ana"
role = "requester"
slack = "U0ANA"

[[outputs]]
name = "ops"
kind = "slack"
channel = "C0ALERTS"
token = "file:slack.token"
api = "http://{addr}/api"
"#
    );
    let world = World::low_on_money(&config).await;
    std::fs::write(world.dir.path().join("slack.app"), APP_TOKEN).unwrap();
    std::fs::write(world.dir.path().join("slack.token"), BOT_TOKEN).unwrap();
    let app = world.start().await;
    assert_eq!(
        app.http, None,
        "no listener: Socket Mode needs no public URL"
    );

    let mut peer = socket.accept().await;
    assert_eq!(peer.target, "/link/?ticket=1");
    peer.send(json!({"type": "hello", "num_connections": 1,
                     "connection_info": {"app_id": "A0TEST"}}))
        .await;
    app.settle().await;

    // A command is answered in its acknowledgement.
    peer.send(command("e1", "U0ANA", "balance acme", &respond))
        .await;
    let ack = ack_of(&mut peer, "e1").await;
    let answer = ack["payload"].to_string();
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert!(
        answer.contains("acme") && answer.contains("2,000"),
        "{answer}"
    );

    // A stranger is refused and told nothing.
    peer.send(command("e2", "U0NOBODY", "balance", &respond))
        .await;
    let ack = ack_of(&mut peer, "e2").await;
    let refusal = ack["payload"].to_string();
    assert!(
        refusal.contains("U0NOBODY") && !refusal.contains("2,000"),
        "{refusal}"
    );

    // The alert was posted with buttons; a press arrives as an interactive
    // envelope, is acknowledged at once, and edits the message.
    let posted = mock.wait("POST", "/api/chat.postMessage", 1).await;
    let blocks = posted[0].body["blocks"].clone();
    let fp = blocks[2]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let press = json!({"envelope_id": "e3", "type": "interactive", "accepts_response_payload": false,
        "payload": {"type": "block_actions", "user": {"id": "U0ANA"},
                    "actions": [{"action_id": "ack", "value": fp}],
                    "response_url": respond, "container": {"message_ts": TS},
                    "channel": {"id": "C0ALERTS"}, "message": {"ts": TS, "blocks": blocks}}});
    peer.send(press.clone()).await;
    let ack = ack_of(&mut peer, "e3").await;
    assert!(ack.get("payload").is_none(), "{ack}");
    let answers = mock.wait("POST", "/respond", 1).await;
    assert_eq!(answers[0].body["replace_original"], true);
    assert!(
        answers[0].body["blocks"]
            .to_string()
            .contains("Acknowledged by ana")
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert_eq!(open[0].acknowledged.as_ref().unwrap().by, "ana");
    let updates = mock.wait("POST", "/api/chat.update", 1).await;
    assert!(
        updates[0].body["blocks"]
            .to_string()
            .contains("acknowledged by ana")
    );

    // A retried envelope is acknowledged again and runs once.
    let silence = command("e4", "U0ANA", "silence account=acme 1h wire sent", &respond);
    peer.send(silence.clone()).await;
    let ack = ack_of(&mut peer, "e4").await;
    assert!(
        ack["payload"].to_string().contains("Silence #1 set"),
        "{ack}"
    );
    peer.send(silence).await;
    let again = ack_of(&mut peer, "e4").await;
    assert!(again.get("payload").is_none(), "{again}");
    assert_eq!(
        app.store.silences(world.clock.now()).await.unwrap().len(),
        1
    );

    // Something that is not JSON, and an event purser does not use: the
    // connection carries on.
    peer.send(json!("not an envelope")).await;
    peer.send(json!({"envelope_id": "e5", "type": "events_api", "payload": {}}))
        .await;
    ack_of(&mut peer, "e5").await;

    // Slack asks for a new connection: purser closes this one and opens
    // another with a fresh URL.
    peer.send(json!({"type": "disconnect", "reason": "refresh_requested"}))
        .await;
    peer.closed().await;
    let mut peer = socket.accept().await;
    assert_eq!(peer.target, "/link/?ticket=2");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    peer.send(json!({"type": "hello", "num_connections": 1}))
        .await;
    peer.send(command("e6", "U0ANA", "whoami", &respond)).await;
    let ack = ack_of(&mut peer, "e6").await;
    assert!(ack["payload"].to_string().contains("ana"), "{ack}");

    // Slack re-sends an envelope on the new connection (its first copy's
    // acknowledgement was lost with the old one): acknowledged, not run again.
    let mut resent = command("e4", "U0ANA", "silence account=acme 1h wire sent", &respond);
    resent["retry_attempt"] = json!(1);
    resent["retry_reason"] = json!("timeout");
    peer.send(resent).await;
    let again = ack_of(&mut peer, "e4").await;
    assert!(again.get("payload").is_none(), "{again}");
    assert_eq!(
        app.store.silences(world.clock.now()).await.unwrap().len(),
        1,
        "the silence was set once"
    );

    // Every call to the Web API carried the right token for its purpose.
    for c in mock.calls("POST", "/api/apps.connections.open") {
        assert_eq!(
            c.authorization.as_deref(),
            Some(&*format!("Bearer {APP_TOKEN}"))
        );
    }
    app.stop().await;
    peer.closed().await;
}
