//! Discord's HTTP interactions endpoint against the running daemon: Ed25519
//! signatures checked before anything is read, PING answered, commands
//! answered from the store, slow answers deferred and edited in.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::patch;
use ed25519_dalek::{Signer, SigningKey};
use purser::ports::Clock;
use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, World};

const APP_ID: &str = "1234567890";
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
public_key = "{public}"
application_id = "{APP_ID}"

[[people]]
name = "ana"
role = "viewer"
discord = "{ANA}"
"#
    );
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
        Setup {
            rules: &config,
            ..Setup::default()
        },
    )
    .await;
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
    json!({"type": 2, "token": "tok", "application_id": APP_ID,
           "member": {"user": {"id": user}},
           "data": {"name": "purser", "options": [{"name": sub, "type": 1, "options": options}]}})
}

#[tokio::test]
async fn ping_commands_strangers_and_forgeries() {
    let (world, app) = running().await;
    let addr = app.http.unwrap();
    let now = world.clock.now().timestamp();

    let ping = signed(&json!({"type": 1}), now, &key());
    assert_eq!(send(addr, &ping).await, (200, json!({"type": 1})));
    // Discord probes with bad signatures; so does anyone else.
    let forged = signed(
        &json!({"type": 1}),
        now,
        &SigningKey::from_bytes(&[9u8; 32]),
    );
    assert_eq!(send(addr, &forged).await.0, 401);
    assert_eq!(send(addr, &ping).await.0, 401, "a replay");
    let stale = signed(&json!({"type": 1}), now - 600, &key());
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
        "/api/webhooks/{app}/{token}/messages/@original",
        patch({
            let got = got.clone();
            let arrived = arrived.clone();
            move |uri: axum::http::Uri, axum::Json(v): axum::Json<Value>| {
                let got = got.clone();
                let arrived = arrived.clone();
                async move {
                    got.lock().unwrap().push((uri.path().to_owned(), v));
                    arrived.notify_waiters();
                    axum::Json(json!({"id": "1"}))
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
        chat,
        clock: world.clock.clone(),
        http: reqwest::Client::new(),
        api: format!("http://{api_addr}/api/").parse().unwrap(),
        application_id: APP_ID.into(),
        answer_within: std::time::Duration::ZERO,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            purser::adapters::http::router(None, Some(endpoint)),
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
        format!("/api/webhooks/{APP_ID}/tok/messages/@original")
    );
    assert!(body["content"].as_str().unwrap().contains("acme"), "{body}");
    app.stop().await;
}
