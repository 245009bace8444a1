//! A loopback stand-in for a chat platform's REST API: records every call
//! (method, path, authorization, JSON body) and answers as the test says.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The query string, empty when there is none.
    pub query: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// The body as text (a multipart form, say), binary parts mangled.
    pub raw: String,
}

type Answer = dyn Fn(&Call) -> (u16, Value) + Send + Sync;

pub struct ChatApi {
    calls: Mutex<Vec<Call>>,
    arrived: Notify,
    answer: Box<Answer>,
}

/// A reply's `Retry-After` header, as the platform sends it with a 429: a
/// reply body holding this key has it taken out and sent as the header.
pub const RETRY_AFTER_HEADER: &str = "__retry_after_header";

impl ChatApi {
    /// Serves on a loopback port; `answer` decides each reply.
    pub async fn start(
        answer: impl Fn(&Call) -> (u16, Value) + Send + Sync + 'static,
    ) -> (Arc<ChatApi>, std::net::SocketAddr) {
        let api = Arc::new(ChatApi {
            calls: Mutex::default(),
            arrived: Notify::new(),
            answer: Box::new(answer),
        });
        let app = Router::new().fallback(record).with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (api, addr)
    }

    /// The calls so far to `method path`.
    pub fn calls(&self, method: &str, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .cloned()
            .collect()
    }

    /// Waits (without sleeping) until `method path` has had `n` calls.
    pub async fn wait(&self, method: &str, path: &str, n: usize) -> Vec<Call> {
        self.wait_until(method, path, |calls| calls.len() >= n)
            .await
            .unwrap_or_else(|| panic!("{method} {path}: fewer than {n} calls"))
    }

    /// Waits (without sleeping) until the calls to `method path` satisfy
    /// `done`; `None` if they do not within 30 s.
    pub async fn wait_until(
        &self,
        method: &str,
        path: &str,
        done: impl Fn(&[Call]) -> bool,
    ) -> Option<Vec<Call>> {
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let arrived = self.arrived.notified();
                let got = self.calls(method, path);
                if done(&got) {
                    return got;
                }
                arrived.await;
            }
        })
        .await
        .ok()
    }
}

async fn record(
    State(api): State<Arc<ChatApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let call = Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, mut reply) = (api.answer)(&call);
    api.calls.lock().unwrap().push(call);
    api.arrived.notify_waiters();
    let mut headers = HeaderMap::new();
    if let Some(after) = reply
        .as_object_mut()
        .and_then(|o| o.remove(RETRY_AFTER_HEADER))
    {
        headers.insert("retry-after", after.to_string().parse().unwrap());
    }
    (
        StatusCode::from_u16(status).unwrap(),
        headers,
        axum::Json(reply),
    )
}

/// `payload` as Slack posts an interaction: a form with one field.
pub fn slack_form(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Posts `body` to the daemon's Slack interactions route at `http`, signed
/// with `secret` at Unix time `stamp`; the HTTP status.
pub async fn slack_interaction(
    http: std::net::SocketAddr,
    secret: &str,
    stamp: i64,
    body: &str,
) -> u16 {
    let stamp = stamp.to_string();
    reqwest::Client::new()
        .post(format!("http://{http}/slack/interactions"))
        .header("X-Slack-Request-Timestamp", &stamp)
        .header(
            "X-Slack-Signature",
            purser::adapters::slack::sign(secret, &stamp, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
