//! Discord over the gateway, against loopback stand-ins for the REST API and
//! the gateway's WebSocket: `/purser` is published → Hello, Identify, Ready →
//! a command arrives as INTERACTION_CREATE and is answered through its
//! callback → an alert's button press is recorded and the message edited →
//! heartbeats are sent when asked → Reconnect resumes the session where it
//! stopped → an invalid session starts a new one → a refused token stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::chat_api::ChatApi;
use crate::helpers::World;
use crate::ws_peer::{WsPeer, WsServer};

const APP_ID: &str = "1234567890";
const ANA: &str = "80351110224678912";
const BOT: &str = "discord-bot-token-for-tests";

/// The next message purser sends with opcode `op`; heartbeats (op 1) that
/// come on their own schedule are passed over unless asked for.
async fn next_op(peer: &mut WsPeer, op: u64) -> Value {
    loop {
        let m = peer.recv().await;
        if m["op"] == op {
            return m;
        }
        assert_eq!(m["op"], 1, "expected op {op}, got {m}");
    }
}

fn interaction(id: &str, user: &str, data: Value, kind: u64) -> Value {
    json!({"id": id, "token": format!("tok-{id}"), "type": kind, "application_id": APP_ID,
           "member": {"user": {"id": user}}, "channel_id": "5550001", "data": data})
}

fn dispatch(seq: u64, t: &str, d: Value) -> Value {
    json!({"op": 0, "s": seq, "t": t, "d": d})
}

#[tokio::test]
async fn interactions_arrive_over_the_gateway_and_the_session_resumes() {
    let gateway = WsServer::bind().await;
    let ws = gateway.addr;
    let located = Arc::new(AtomicUsize::new(0));
    let count = located.clone();
    let (api, api_addr) = ChatApi::start(move |c| {
        if c.path.contains("/interactions/") {
            // Callbacks are authorized by the interaction's token.
            return (204, Value::Null);
        }
        if c.authorization.as_deref() != Some(&format!("Bot {BOT}")) {
            return (401, json!({"message": "401: Unauthorized", "code": 0}));
        }
        match c.path.as_str() {
            "/api/v10/gateway/bot" => {
                count.fetch_add(1, Ordering::SeqCst);
                (200, json!({"url": format!("ws://{ws}"), "shards": 1}))
            }
            _ => (200, json!({"id": "9001", "channel_id": "5550001"})),
        }
    })
    .await;
    let config = format!(
        r#"
[discord]
token = "file:discord.token"
application_id = "{APP_ID}"
api = "http://{api_addr}/api/v10"

[[people]]
name = "ana"
role = "requester"
discord = "{ANA}"

[[outputs]]
name = "ops"
kind = "discord"
channel = "5550001"
token = "file:discord.token"
api = "http://{api_addr}/api/v10"
"#
    );
    let world = World::low_on_money(&config).await;
    std::fs::write(world.dir.path().join("discord.token"), BOT).unwrap();
    let app = world.start().await;
    assert_eq!(
        app.http, None,
        "no listener: the gateway needs no public URL"
    );

    // `/purser` is published with a subcommand per command.
    let put = api
        .wait(
            "PUT",
            &format!("/api/v10/applications/{APP_ID}/commands"),
            1,
        )
        .await;
    let command = &put[0].body[0];
    assert_eq!(command["name"], "purser");
    let subs: Vec<&str> = command["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        subs.contains(&"balance") && subs.contains(&"silence"),
        "{subs:?}"
    );

    // Hello → Identify (the token, no intents) → Ready.
    let mut peer = gateway.accept().await;
    assert_eq!(peer.target, "/?v=10&encoding=json");
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    let identify = next_op(&mut peer, 2).await;
    assert_eq!(identify["d"]["token"], BOT);
    assert_eq!(identify["d"]["intents"], 0);
    peer.send(dispatch(
        1,
        "READY",
        json!({"session_id": "sess-1",
        "resume_gateway_url": format!("ws://{ws}/resume"), "user": {"username": "purser"}}),
    ))
    .await;
    app.settle().await;

    // A command, answered through the interaction's callback.
    let ask = json!({"name": "purser", "options": [{"type": 1, "name": "balance",
        "options": [{"type": 3, "name": "account", "value": "acme"}]}]});
    peer.send(dispatch(
        2,
        "INTERACTION_CREATE",
        interaction("i1", ANA, ask, 2),
    ))
    .await;
    let answered = api
        .wait("POST", "/api/v10/interactions/i1/tok-i1/callback", 1)
        .await;
    assert_eq!(answered[0].body["type"], 4);
    assert_eq!(answered[0].body["data"]["flags"], 64);
    let content = answered[0].body["data"]["content"].as_str().unwrap();
    assert!(content.contains("acme · ¥2,000.00"), "{content}");

    // The alert's Acknowledge button, pressed: recorded, message edited.
    let posted = api
        .wait("POST", "/api/v10/channels/5550001/messages", 1)
        .await;
    let ack = posted[0].body["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let press = json!({"component_type": 2, "custom_id": ack});
    peer.send(dispatch(
        3,
        "INTERACTION_CREATE",
        interaction("i2", ANA, press, 3),
    ))
    .await;
    let answered = api
        .wait("POST", "/api/v10/interactions/i2/tok-i2/callback", 1)
        .await;
    assert_eq!(answered[0].body["type"], 4);
    let edits = api
        .wait("PATCH", "/api/v10/channels/5550001/messages/9001", 1)
        .await;
    assert!(edits[0].body.to_string().contains("acknowledged by ana"));
    let open = app.store.all_open_alerts().await.unwrap();
    assert_eq!(open[0].acknowledged.as_ref().unwrap().by, "ana");

    // One account's runway: the answer, then the chart as a private
    // follow-up with the image attached.
    let runway = json!({"name": "purser", "options": [{"type": 1, "name": "runway",
        "options": [{"type": 3, "name": "account", "value": "acme"}]}]});
    peer.send(dispatch(
        4,
        "INTERACTION_CREATE",
        interaction("i4", ANA, runway, 2),
    ))
    .await;
    let answered = api
        .wait("POST", "/api/v10/interactions/i4/tok-i4/callback", 1)
        .await;
    assert!(answered[0].body.to_string().contains("acme"));
    let chart = api
        .wait("POST", &format!("/api/v10/webhooks/{APP_ID}/tok-i4"), 1)
        .await;
    for part in [
        "name=\"payload_json\"",
        "\"flags\":64",
        "\"filename\":\"runway.png\"",
        "name=\"files[0]\"; filename=\"runway.png\"",
        "image/png",
        "PNG\r\n",
    ] {
        assert!(chart[0].raw.contains(part), "{part:?} not in the form");
    }

    // Discord asks for a heartbeat: it carries the last sequence number.
    peer.send(json!({"op": 1, "d": null})).await;
    // A heartbeat purser sent on its own (jittered) schedule before the
    // last dispatch may still be queued ahead of the answer: older numbers
    // are skipped, never newer ones.
    let beat = loop {
        let beat = next_op(&mut peer, 1).await;
        let seq = beat["d"].as_u64().unwrap_or(0);
        assert!(seq <= 4, "{beat}");
        if seq == 4 {
            break beat;
        }
    };
    assert_eq!(beat["d"], 4);
    peer.send(json!({"op": 11})).await;

    // Reconnect: purser closes and resumes the session at its resume URL,
    // from the last sequence number, without identifying again.
    peer.send(json!({"op": 7, "d": null})).await;
    peer.closed().await;
    let mut peer = gateway.accept().await;
    assert_eq!(peer.target, "/resume?v=10&encoding=json");
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    let resume = next_op(&mut peer, 6).await;
    assert_eq!(
        resume["d"],
        json!({"token": BOT, "session_id": "sess-1", "seq": 4})
    );
    peer.send(dispatch(5, "RESUMED", json!({}))).await;
    let who = json!({"name": "purser", "options": [{"type": 1, "name": "whoami", "options": []}]});
    peer.send(dispatch(
        5,
        "INTERACTION_CREATE",
        interaction("i3", ANA, who, 2),
    ))
    .await;
    let answered = api
        .wait("POST", "/api/v10/interactions/i3/tok-i3/callback", 1)
        .await;
    assert!(answered[0].body.to_string().contains("ana"));
    assert_eq!(
        located.load(Ordering::SeqCst),
        1,
        "resuming needs no new URL"
    );

    // An invalid session that cannot be resumed: a new one, identified anew
    // at a freshly located URL.
    peer.send(json!({"op": 9, "d": false})).await;
    peer.closed().await;
    let mut peer = gateway.accept().await;
    assert_eq!(peer.target, "/?v=10&encoding=json");
    assert_eq!(located.load(Ordering::SeqCst), 2);
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    next_op(&mut peer, 2).await;

    // A refused token closes the connection for good: purser does not come
    // straight back, and still stops cleanly.
    peer.close(4004).await;
    app.stop().await;
}
