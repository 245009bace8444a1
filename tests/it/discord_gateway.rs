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
use crate::discord_shapes::{self as shapes, APP_ID};
use crate::helpers::World;
use crate::ws_peer::{WsPeer, WsServer};

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
            "/api/v10/gateway" | "/api/v10/gateway/bot" => {
                count.fetch_add(1, Ordering::SeqCst);
                (
                    200,
                    json!({"url": format!("ws://{ws}"), "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999,
                        "reset_after": 14400000, "max_concurrency": 1}}),
                )
            }
            p if p.ends_with("/commands") => (200, shapes::commands_stored(&c.body)),
            p => {
                let channel = p.split('/').nth(4).unwrap_or_default();
                (200, shapes::message("9001", channel, ""))
            }
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
    assert!(peer.target.starts_with("/?v=10"), "{}", peer.target);
    assert_eq!(located.load(Ordering::SeqCst), 1);
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    let identify = next_op(&mut peer, 2).await;
    assert!(
        identify["d"]["token"].as_str().unwrap().ends_with(BOT),
        "{identify}"
    );
    assert_eq!(identify["d"]["intents"], 0);
    peer.send(dispatch(
        1,
        "READY",
        shapes::ready("sess-1", &format!("ws://{ws}")),
    ))
    .await;
    app.settle().await;

    // A command, answered through the interaction's callback.
    let ask = json!([{"type": 3, "name": "account", "value": "acme"}]);
    peer.send(dispatch(
        2,
        "INTERACTION_CREATE",
        shapes::command("1300000000000000001", ANA, "balance", ask),
    ))
    .await;
    let answered = api
        .wait(
            "POST",
            "/api/v10/interactions/1300000000000000001/tok-1300000000000000001/callback",
            1,
        )
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
    peer.send(dispatch(
        3,
        "INTERACTION_CREATE",
        shapes::press("1300000000000000002", ANA, &ack, "9001", "5550001"),
    ))
    .await;
    let answered = api
        .wait(
            "POST",
            "/api/v10/interactions/1300000000000000002/tok-1300000000000000002/callback",
            1,
        )
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
    let runway = json!([{"type": 3, "name": "account", "value": "acme"}]);
    peer.send(dispatch(
        4,
        "INTERACTION_CREATE",
        shapes::command("1300000000000000004", ANA, "runway", runway),
    ))
    .await;
    let answered = api
        .wait(
            "POST",
            "/api/v10/interactions/1300000000000000004/tok-1300000000000000004/callback",
            1,
        )
        .await;
    assert!(answered[0].body.to_string().contains("acme"));
    let chart = api
        .wait(
            "POST",
            &format!("/api/v10/webhooks/{APP_ID}/tok-1300000000000000004"),
            1,
        )
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
    let beat = next_op(&mut peer, 1).await;
    assert_eq!(beat["d"], 4);
    peer.send(json!({"op": 11})).await;

    // Reconnect: the connection is replaced and the session resumed from
    // the last sequence number, without identifying again or locating anew.
    peer.send(json!({"op": 7, "d": null})).await;
    let mut old = peer;
    let mut peer = gateway.accept().await;
    old.closed().await;
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    let resume = next_op(&mut peer, 6).await;
    assert_eq!(resume["d"]["session_id"], "sess-1");
    assert_eq!(resume["d"]["seq"], 4);
    assert!(resume["d"]["token"].as_str().unwrap().ends_with(BOT));
    peer.send(dispatch(5, "RESUMED", json!({}))).await;
    peer.send(dispatch(
        6,
        "INTERACTION_CREATE",
        shapes::command("1300000000000000003", ANA, "whoami", json!([])),
    ))
    .await;
    let answered = api
        .wait(
            "POST",
            "/api/v10/interactions/1300000000000000003/tok-1300000000000000003/callback",
            1,
        )
        .await;
    assert!(answered[0].body.to_string().contains("ana"));
    assert_eq!(
        located.load(Ordering::SeqCst),
        1,
        "resuming needs no new URL"
    );

    // An invalid session that cannot be resumed: a new one, identified anew.
    peer.send(json!({"op": 9, "d": false})).await;
    let mut old = peer;
    let mut peer = gateway.accept().await;
    old.closed().await;
    peer.send(json!({"op": 10, "d": {"heartbeat_interval": 45000}}))
        .await;
    next_op(&mut peer, 2).await;

    // A refused token closes the connection for good: purser does not come
    // straight back, and still stops cleanly.
    peer.close(4004).await;
    app.stop().await;
}
