//! Discord's HTTP interactions endpoint against the running daemon: Ed25519
//! signatures checked before anything is read, PING answered, commands
//! answered from the store, slow answers deferred and edited in.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::patch;
use ed25519_dalek::{Signer, SigningKey};
use purser::ports::Clock;
use serde_json::{Value, json};

use crate::chat_api::ChatApi;
use crate::discord_shapes::{self as shapes, APP_ID};
use crate::helpers::{ANA_ON_CALL, SEVERAL, Setup, TestApp, World};

const ANA: &str = "80351110224678912";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

async fn running() -> (World, TestApp) {
    let public = hex::encode(key().verifying_key().to_bytes());
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:0"

[discord]
mode = "http"
public_key = "{public}"
application_id = "{APP_ID}"

[[people]]
name = "ana"
role = "viewer"
discord = "{ANA}"
"#
    );
    let world = World::low_on_money(&config).await;
    let app = world.start().await;
    app.settle().await;
    (world, app)
}

fn signed(body: &Value, ts: i64, signer: &SigningKey) -> (String, String, String) {
    let body = body.to_string();
    let ts = ts.to_string();
    let mut m = ts.as_bytes().to_vec();
    m.extend_from_slice(body.as_bytes());
    (body, ts, hex::encode(signer.sign(&m).to_bytes()))
}

async fn send(
    addr: std::net::SocketAddr,
    (body, ts, sig): &(String, String, String),
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/discord/interactions"))
        .header("Content-Type", "application/json")
        .header("X-Signature-Timestamp", ts)
        .header("X-Signature-Ed25519", sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn command(user: &str, sub: &str, options: Value) -> Value {
    shapes::command("1300000000000000001", user, sub, options)
}

#[tokio::test]
async fn ping_commands_strangers_and_forgeries() {
    let (world, app) = running().await;
    let addr = app.http.unwrap();
    let now = world.clock.now().timestamp();

    let ping = signed(&shapes::ping("1300000000000000000"), now, &key());
    let (status, pong) = send(addr, &ping).await;
    assert_eq!((status, &pong["type"]), (200, &json!(1)), "PONG: {pong}");
    // Discord probes with bad signatures; so does anyone else.
    let forged = signed(
        &shapes::ping("1300000000000000000"),
        now,
        &SigningKey::from_bytes(&[9u8; 32]),
    );
    assert_eq!(send(addr, &forged).await.0, 401);
    assert_eq!(send(addr, &ping).await.0, 401, "a replay");
    let stale = signed(&shapes::ping("1300000000000000000"), now - 600, &key());
    assert_eq!(send(addr, &stale).await.0, 401);

    let ask = signed(
        &command(
            ANA,
            "balance",
            json!([{"name": "account", "type": 3, "value": "acme"}]),
        ),
        now + 1,
        &key(),
    );
    let (status, v) = send(addr, &ask).await;
    assert_eq!(status, 200);
    assert_eq!(v["type"], 4);
    assert_eq!(v["data"]["flags"], 64);
    let content = v["data"]["content"].as_str().unwrap();
    assert!(content.contains("acme · ¥2,000.00"), "{content}");

    let denied = signed(
        &command(
            ANA,
            "silence",
            json!([{"name": "matchers", "type": 3, "value": "account=acme"},
                                        {"name": "duration", "type": 3, "value": "1h"}]),
        ),
        now + 2,
        &key(),
    );
    let (_, v) = send(addr, &denied).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("needs the requester role")
    );

    // Signed but not an interaction: refused, nothing run.
    let garbage = ("not json".to_owned(), (now + 4).to_string(), {
        let mut m = (now + 4).to_string().into_bytes();
        m.extend_from_slice(b"not json");
        hex::encode(key().sign(&m).to_bytes())
    });
    assert_eq!(send(addr, &garbage).await.0, 400);
    let unknown = signed(&json!({"type": 99}), now + 5, &key());
    assert_eq!(send(addr, &unknown).await.0, 400);
    // An interaction missing what Discord always sends (its id, token…).
    let partial = signed(
        &json!({"type": 2, "data": {"name": "purser"}}),
        now + 6,
        &key(),
    );
    assert_eq!(send(addr, &partial).await.0, 400);

    let stranger = signed(&command("42", "balance", json!([])), now + 3, &key());
    let (_, v) = send(addr, &stranger).await;
    let content = v["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("does not know you") && !content.contains("acme"),
        "{content}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_slow_answer_is_deferred_then_edited_in() {
    let (world, app) = running().await;
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let api = Router::new().route(
        "/api/v10/webhooks/{app}/{token}/messages/@original",
        patch({
            let got = got.clone();
            let arrived = arrived.clone();
            move |uri: axum::http::Uri, axum::Json(v): axum::Json<Value>| {
                let got = got.clone();
                let arrived = arrived.clone();
                async move {
                    got.lock().unwrap().push((uri.path().to_owned(), v));
                    arrived.notify_waiters();
                    axum::Json(shapes::message("1", "5550001", ""))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });

    let chat = world.chat_ops(&app);
    let endpoint = Arc::new(purser::adapters::discord::DiscordEndpoint {
        verifier: purser::adapters::discord::Verifier::new(&hex::encode(
            key().verifying_key().to_bytes(),
        ))
        .unwrap(),
        clock: world.clock.clone(),
        app: Arc::new(purser::adapters::discord::DiscordApp {
            chat,
            http: Arc::new(
                purser::adapters::discord::rest_client(
                    &purser::secret::Secret::from_value(BOT),
                    Some(APP_ID.parse().unwrap()),
                    &format!("http://{api_addr}/api/v10").parse().unwrap(),
                )
                .unwrap(),
            ),
            answer_within: std::time::Duration::ZERO,
            tasks: Default::default(),
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            purser::adapters::http::router(None, Some(endpoint), None),
        )
        .await
        .unwrap()
    });

    let waiting = arrived.notified();
    let ask = signed(
        &command(ANA, "runway", json!([])),
        world.clock.now().timestamp(),
        &key(),
    );
    let (status, v) = send(addr, &ask).await;
    assert_eq!((status, v["type"].clone()), (200, json!(5)));
    tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .unwrap();
    let (path, body) = got.lock().unwrap()[0].clone();
    assert_eq!(
        path,
        format!("/api/v10/webhooks/{APP_ID}/tok-1300000000000000001/messages/@original")
    );
    assert!(body["content"].as_str().unwrap().contains("acme"), "{body}");
    app.stop().await;
}

const BOT: &str = "discord-bot-token-for-tests";

/// Discord's REST API for the bot (its token checked): every message it is
/// sent becomes message 9001 in the channel it was sent to, and every DM
/// channel opened is channel 9001.
async fn discord_api() -> (Arc<ChatApi>, std::net::SocketAddr) {
    ChatApi::start(|c| {
        if c.authorization.as_deref() != Some(&format!("Bot {BOT}")) {
            return (401, json!({"message": "401: Unauthorized", "code": 0}));
        }
        if c.path == "/api/v10/users/@me/channels" {
            let to = c.body["recipient_id"].as_str().unwrap_or_default();
            return (200, shapes::dm_channel("9001", to));
        }
        let channel = c.path.split('/').nth(4).unwrap_or_default();
        (200, shapes::message("9001", channel, ""))
    })
    .await
}

/// HTTP interactions, ana (requester) and vic (viewer), and an output to
/// channel 5550001 through the API at `api_addr`.
fn channel_config(api_addr: std::net::SocketAddr) -> String {
    let public = hex::encode(key().verifying_key().to_bytes());
    format!(
        r#"
[http]
listen = "127.0.0.1:0"

[discord]
mode = "http"
public_key = "{public}"
application_id = "{APP_ID}"
api = "http://{api_addr}/api/v10"

[[people]]
name = "ana"
role = "requester"
discord = "{ANA}"

[[people]]
name = "vic"
role = "viewer"
discord = "222"

[[outputs]]
name = "ops"
kind = "discord"
channel = "5550001"
token = "file:discord.token"
api = "http://{api_addr}/api/v10"
"#
    )
}

/// Starts purser in `world` with the bot token in place.
async fn with_channel(world: World) -> (World, TestApp) {
    std::fs::write(world.dir.path().join("discord.token"), BOT).unwrap();
    let app = world.start().await;
    app.settle().await;
    (world, app)
}

/// The whole loop: an alert is posted to the channel with buttons, a signed
/// button press acknowledges it, the message is edited; a silence button and
/// the resolution edit it again, never posting a second message.
#[tokio::test]
async fn alert_posted_pressed_acknowledged_silenced_resolved() {
    let (api, api_addr) = discord_api().await;
    let (world, app) = with_channel(World::low_on_money(&channel_config(api_addr)).await).await;
    let addr = app.http.unwrap();

    let posted = api
        .wait("POST", "/api/v10/channels/5550001/messages", 1)
        .await;
    let embed = &posted[0].body["embeds"][0];
    assert!(
        embed["title"]
            .as_str()
            .unwrap()
            .contains("low\\_balance · acme"),
        "{embed}"
    );
    let buttons: Vec<String> = posted[0].body["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(buttons.len(), 4);
    assert!(buttons[0].starts_with("ack:") && buttons[3].starts_with("topup:"));
    let fp = buttons[0].trim_start_matches("ack:").to_owned();

    // Money running out: the runway chart follows, a reply with the image.
    let posted = api
        .wait("POST", "/api/v10/channels/5550001/messages", 2)
        .await;
    let form = &posted[1].raw;
    for part in [
        "name=\"payload_json\"",
        "\"message_id\":\"9001\"",
        "\"fail_if_not_exists\":false",
        "name=\"files[0]\"; filename=\"runway.png\"",
        "image/png",
        "PNG\r\n",
    ] {
        assert!(form.contains(part), "{part:?} not in {form}");
    }
    assert_eq!(
        posted[1].authorization.as_deref(),
        Some(&*format!("Bot {BOT}"))
    );

    let now = world.clock.now().timestamp();
    let press = |user: &str, custom_id: &str, ts: i64| {
        signed(
            &shapes::press(&format!("14{ts}"), user, custom_id, "9001", "5550001"),
            ts,
            &key(),
        )
    };

    // A viewer's press changes nothing and tells only them.
    let (status, v) = send(addr, &press("222", &buttons[0], now)).await;
    assert_eq!((status, v["type"].clone()), (200, json!(4)));
    assert_eq!(v["data"]["flags"], 64);
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("needs the requester role")
    );
    // A forged press is refused before it is read.
    let forged = signed(
        &shapes::press("1400000000000000000", ANA, &buttons[0], "9001", "5550001"),
        now,
        &SigningKey::from_bytes(&[9u8; 32]),
    );
    assert_eq!(send(addr, &forged).await.0, 401);
    assert!(
        app.store.all_open_alerts().await.unwrap()[0]
            .acknowledged
            .is_none()
    );

    // The requester acknowledges: told privately, the message edited for all.
    let (_, v) = send(addr, &press(ANA, &buttons[0], now + 1)).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Acknowledged"),
        "{v}"
    );
    let edits = api
        .wait("PATCH", "/api/v10/channels/5550001/messages/9001", 1)
        .await;
    let footer = edits[0].body["embeds"][0]["footer"]["text"].to_string();
    assert!(footer.contains("acknowledged by ana"), "{footer}");
    let left: Vec<&str> = edits[0].body["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["Silence 1 h", "Silence 24 h", "Top up…"]);
    // Pressed twice (a double click, or Discord retrying): counted once.
    let (_, v) = send(addr, &press(ANA, &buttons[0], now + 2)).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Already acknowledged by ana"),
        "{v}"
    );

    // A button that is not purser's, and the remedy, change nothing.
    let (_, v) = send(addr, &press(ANA, "explode:00", now + 3)).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("does not know the button")
    );
    let (_, v) = send(addr, &press(ANA, &format!("topup:{fp}"), now + 4)).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("How much should be paid into acme?")
    );

    // Silenced from the message.
    let (_, v) = send(addr, &press(ANA, &buttons[1], now + 5)).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Silence #1 set"),
        "{v}"
    );
    let edits = api
        .wait("PATCH", "/api/v10/channels/5550001/messages/9001", 2)
        .await;
    let footer = edits[1].body["embeds"][0]["footer"]["text"].to_string();
    assert!(footer.contains("silenced by ana until"), "{footer}");

    // Resolved: edited once more, its buttons gone; still one message.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    app.advance(chrono::Duration::minutes(1)).await;
    let edits = api
        .wait("PATCH", "/api/v10/channels/5550001/messages/9001", 3)
        .await;
    assert!(
        edits[2].body["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains("Resolved")
    );
    assert_eq!(edits[2].body["components"], json!([]));
    assert_eq!(
        api.calls("POST", "/api/v10/channels/5550001/messages")
            .len(),
        2,
        "the alert and its chart, nothing new"
    );
    app.stop().await;
}

/// Three alerts from one poll: one Discord message, and "Acknowledge all"
/// pressed on it acknowledges each, found through the message pressed on.
#[tokio::test]
async fn one_poll_one_message_and_acknowledge_all() {
    let (api, api_addr) = discord_api().await;
    let (world, app) = with_channel(
        World::new(
            SEVERAL,
            Setup {
                rules: &channel_config(api_addr),
                ..Setup::default()
            },
        )
        .await,
    )
    .await;

    let posted = api
        .wait("POST", "/api/v10/channels/5550001/messages", 1)
        .await;
    let message = &posted[0].body;
    assert_eq!(message["content"], "**acme · 3 alerts firing**");
    assert_eq!(message["embeds"].as_array().unwrap().len(), 3);
    assert_eq!(
        message["components"][0]["components"][0]["custom_id"],
        "ack:all"
    );

    let press = shapes::press("1400000000000000001", ANA, "ack:all", "9001", "5550001");
    let now = world.clock.now().timestamp();
    let (status, answer) = send(app.http.unwrap(), &signed(&press, now, &key())).await;
    assert_eq!(status, 200);
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Acknowledged 3 alerts"),
        "{answer}"
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert_eq!(open.len(), 3);
    assert!(open.iter().all(|a| a.acknowledged.is_some()), "{open:?}");
    api.wait_until(
        "PATCH",
        "/api/v10/channels/5550001/messages/9001",
        |calls| {
            calls.last().is_some_and(|c| {
                c.body["embeds"]
                    .to_string()
                    .matches("acknowledged by ana")
                    .count()
                    == 3
            })
        },
    )
    .await
    .expect("the message shows all three acknowledged");
    app.stop().await;
}

/// A request's card in the channel: Approve pressed by an approver decides
/// it, the card is redrawn without buttons and a reply tells the channel.
#[tokio::test]
async fn a_request_card_is_approved_by_its_button() {
    let (api, api_addr) = discord_api().await;
    let bo = "\n[[people]]\nname = \"bo\"\nrole = \"approver\"\ndiscord = \"333\"\n";
    let (world, app) =
        with_channel(World::low_on_money(&(channel_config(api_addr) + bo)).await).await;
    let addr = app.http.unwrap();
    let chat = world.chat_ops(&app);
    let ana = purser::engine::chatops::Asker {
        platform: "discord".into(),
        user: ANA.into(),
    };
    let asked = chat.handle(&ana, "topup acme 1,000 alipay").await;
    assert!(asked.title.starts_with("R1 opened"), "{}", asked.text());
    app.settle().await;
    let card = api
        .calls("POST", "/api/v10/channels/5550001/messages")
        .into_iter()
        .find(|c| {
            c.body["embeds"][0]["title"]
                .to_string()
                .contains("R1 · top up")
        })
        .expect("a card for R1");
    let row = &card.body["components"][0]["components"];
    assert_eq!(row[0]["custom_id"], "approve:R1");
    assert_eq!(row[1]["custom_id"], "deny:R1");

    let now = world.clock.now().timestamp();
    let press = |user: &str, custom_id: &str| {
        signed(
            &shapes::press(&format!("15{user}"), user, custom_id, "9001", "5550001"),
            now,
            &key(),
        )
    };
    // The requester cannot decide; an approver can, privately told.
    let (_, v) = send(addr, &press(ANA, "approve:R1")).await;
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("needs the approver role"),
        "{v}"
    );
    let (status, v) = send(addr, &press("333", "approve:R1")).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["flags"], 64);
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .contains("R1 approved."),
        "{v}"
    );

    app.settle().await;
    let redrawn: Vec<_> = api
        .calls("PATCH", "/api/v10/channels/5550001/messages/9001")
        .into_iter()
        .filter(|c| {
            c.body["embeds"][0]["title"]
                .to_string()
                .contains("R1 · top up")
        })
        .collect();
    assert_eq!(redrawn.len(), 1);
    assert_eq!(redrawn[0].body["components"], json!([]));
    let told: Vec<_> = api
        .calls("POST", "/api/v10/channels/5550001/messages")
        .into_iter()
        .filter(|c| c.body["content"].to_string().contains("R1 approved by bo"))
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].body["message_reference"]["message_id"], "9001");
}

/// The on-call person is paged by direct message: the DM channel opened,
/// the page posted with an Acknowledge button, and the press there (a DM
/// interaction names `user`, not `member`) stops the chain.
#[tokio::test]
async fn a_page_arrives_as_a_direct_message_and_its_button_acknowledges() {
    let (api, api_addr) = discord_api().await;
    let config = channel_config(api_addr) + ANA_ON_CALL;
    let (world, app) = with_channel(World::low_on_money(&config).await).await;
    api.wait("POST", "/api/v10/channels/5550001/messages", 1)
        .await;
    app.advance(chrono::Duration::minutes(15)).await;
    let opened = api.wait("POST", "/api/v10/users/@me/channels", 1).await;
    assert_eq!(opened[0].body, json!({"recipient_id": ANA}));
    // The mock names every channel 9001: the DM goes there.
    let dm = api
        .wait_until("POST", "/api/v10/channels/9001/messages", |c| {
            c.iter().any(|c| {
                c.body["content"]
                    .as_str()
                    .is_some_and(|t| t.contains("you are paged"))
            })
        })
        .await
        .expect("the page in the DM");
    let page = dm.last().unwrap();
    assert!(
        page.body["content"]
            .as_str()
            .unwrap()
            .contains("ana, you are paged as on call for ops"),
        "{}",
        page.body
    );
    let custom_id = page.body["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(custom_id.starts_with("ack:"), "{custom_id}");

    let press = signed(
        &shapes::press_in_dm("1600000000000000000", ANA, &custom_id, "9002", "9001"),
        world.clock.now().timestamp(),
        &key(),
    );
    let (status, v) = send(app.http.unwrap(), &press).await;
    assert_eq!(status, 200);
    assert!(
        v["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("**Acknowledged"),
        "{v}"
    );
    app.settle().await;
    let open = purser::ports::Escalations::open_escalations(&*app.store)
        .await
        .unwrap();
    assert_eq!(open[0].acked_by.as_deref(), Some("ana"));
    app.stop().await;
}
