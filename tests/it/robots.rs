//! The group robots against loopback stand-ins that check each platform's
//! signature as the platform does: one poll that fires several alerts on one
//! account makes one message per robot, not one per alert.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use purser::ports::Clock;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{SEVERAL, Setup, World};

const DING_SECRET: &str = "SECd1ngtalk-test-secret";
const FEISHU_SECRET: &str = "feishu-test-secret";

#[derive(Default)]
struct Robots {
    /// (which robot, what it was sent) for each accepted message.
    got: Mutex<Vec<(String, Value)>>,
    refused: Mutex<Vec<String>>,
    now_ms: Mutex<i64>,
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

fn query(uri: &Uri) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn dingtalk(
    State(r): State<Arc<Robots>>,
    uri: Uri,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let q = query(&uri);
    let ts = q.get("timestamp").cloned().unwrap_or_default();
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (t - *r.now_ms.lock().unwrap()).abs() < 3_600_000);
    let expected = hmac_b64(
        DING_SECRET.as_bytes(),
        format!("{ts}\n{DING_SECRET}").as_bytes(),
    );
    if q.get("access_token").map(String::as_str) != Some("ding-token")
        || !fresh
        || q.get("sign") != Some(&expected)
    {
        r.refused.lock().unwrap().push("dingtalk".into());
        return axum::Json(json!({"errcode": 310000, "errmsg": "sign not match"}));
    }
    r.got.lock().unwrap().push(("dingtalk".into(), body));
    axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn wecom(
    State(r): State<Arc<Robots>>,
    uri: Uri,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let q = query(&uri);
    if q.get("key").map(String::as_str) != Some("wecom-key") {
        r.refused.lock().unwrap().push("wecom".into());
        return axum::Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"}));
    }
    r.got.lock().unwrap().push(("wecom".into(), body));
    axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn feishu(
    State(r): State<Arc<Robots>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let ts = body["timestamp"].as_str().unwrap_or_default().to_owned();
    let expected = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (t * 1000 - *r.now_ms.lock().unwrap()).abs() < 3_600_000);
    if !fresh || body["sign"].as_str() != Some(&expected) {
        r.refused.lock().unwrap().push("feishu".into());
        return axum::Json(
            json!({"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}),
        );
    }
    r.got.lock().unwrap().push(("feishu".into(), body));
    axum::Json(json!({"code": 0, "data": {}, "msg": "success"}))
}

#[tokio::test]
async fn one_poll_one_message_per_robot_each_signed() {
    let robots = Arc::new(Robots::default());
    let app = Router::new()
        .route("/robot/send", post(dingtalk))
        .route("/cgi-bin/webhook/send", post(wecom))
        .route("/open-apis/bot/v2/hook/{id}", post(feishu))
        .with_state(robots.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let world = World::new(
        SEVERAL,
        Setup {
            rules: r#"
[[outputs]]
name = "ding"
kind = "dingtalk"
url = "file:ding.url"
secret = "file:ding.secret"

[[outputs]]
name = "wecom"
kind = "wecom"
url = "file:wecom.url"

[[outputs]]
name = "lark"
kind = "feishu"
url = "file:feishu.url"
secret = "file:feishu.secret"
"#,
            ..Setup::default()
        },
    )
    .await;
    let dir = world.dir.path();
    std::fs::write(
        dir.join("ding.url"),
        format!("http://{addr}/robot/send?access_token=ding-token"),
    )
    .unwrap();
    std::fs::write(dir.join("ding.secret"), DING_SECRET).unwrap();
    std::fs::write(
        dir.join("wecom.url"),
        format!("http://{addr}/cgi-bin/webhook/send?key=wecom-key"),
    )
    .unwrap();
    std::fs::write(
        dir.join("feishu.url"),
        format!("http://{addr}/open-apis/bot/v2/hook/abc-123"),
    )
    .unwrap();
    std::fs::write(dir.join("feishu.secret"), FEISHU_SECRET).unwrap();
    *robots.now_ms.lock().unwrap() = world.clock.now().timestamp_millis();

    let app = world.start().await;
    app.settle().await;

    assert!(
        robots.refused.lock().unwrap().is_empty(),
        "{:?}",
        robots.refused.lock().unwrap()
    );
    let got = robots.got.lock().unwrap().clone();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "dingtalk").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "wecom").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "feishu").count(),
        1,
        "{names:?}"
    );
    // The webhook output (per alert) saw how many alerts fired.
    let fired = world.hook.received().len();
    assert!(fired >= 3, "several alerts: {fired}");
    for (name, body) in &got {
        let text = if name == "feishu" {
            body["content"]["text"].as_str().unwrap()
        } else {
            body["text"]["content"].as_str().unwrap()
        };
        assert!(
            text.starts_with(&format!("purser · acme: {fired} alerts")),
            "{name}: {text}"
        );
        assert!(
            text.contains("ins-a") && text.contains("ins-b") && text.contains("low_balance"),
            "{text}"
        );
    }
    app.stop().await;
}
