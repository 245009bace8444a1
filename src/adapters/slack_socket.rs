//! Slack Socket Mode: purser opens a WebSocket to Slack (no public URL, the
//! usual choice behind a firewall) and slash commands and button presses
//! arrive on it as envelopes. Each is acknowledged with its `envelope_id`
//! within Slack's 3 seconds — a command's answer rides in the acknowledgement
//! when it is ready in time — and handled by the same `SlackApp` as over HTTP.
//!
//! The connection is opened with `apps.connections.open` and an app-level
//! token; its URL is single-use, so every reconnection asks for a new one.
//! Slack asks for a reconnection with a `disconnect` message; a connection
//! that goes quiet is replaced too.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

use super::http::request_error;
use super::slack::{SlackApp, SlashCommand};
use super::ws::{Backoff, Quiet, stopped};
use crate::ports::{Clock, Receipts};
use crate::secret::Secret;

pub struct SlackSocket {
    /// The Web API's base URL (tests point it at a mock).
    pub api: reqwest::Url,
    /// The app-level token (`xapp-…`, scope `connections:write`).
    pub app_token: Secret,
    pub app: Arc<SlackApp>,
    /// Envelope ids taken, across reconnections, restarts and replicas.
    pub receipts: Arc<dyn Receipts>,
    pub clock: Arc<dyn Clock>,
}

/// The receipts' name for Socket Mode envelopes.
const SOURCE: &str = "slack-envelope";

/// How long an envelope id is remembered: Slack re-sends an envelope that
/// was not acknowledged a few times within minutes.
const REMEMBER: chrono::Duration = chrono::Duration::hours(1);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("apps.connections.open: {0}")]
    Open(String),
    #[error(
        "apps.connections.open refused the app token ({0}): give an app-level token (xapp-…) with the connections:write scope, and turn Socket Mode on in the app's settings"
    )]
    Refused(String),
    #[error("the connection failed: {0}")]
    Connection(String),
    #[error("Slack disabled the connection (Socket Mode was turned off for the app)")]
    Disabled,
    #[error("no message from Slack for {0} s")]
    Quiet(u64),
}

impl SocketError {
    /// Errors a retry soon will not mend: retried slowly.
    fn lasting(&self) -> bool {
        matches!(self, SocketError::Refused(_) | SocketError::Disabled)
    }
}

/// Keeps a Socket Mode connection open until `stop`.
pub async fn run(socket: Arc<SlackSocket>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    loop {
        let ended = tokio::select! {
            r = session(&socket, &mut backoff) => r,
            _ = stopped(&mut stop) => return,
        };
        let wait = match ended {
            // Slack asked for a fresh connection: open one at once.
            Ok(()) => StdDuration::ZERO,
            Err(e) if e.lasting() => {
                error!(error = %e, "slack socket mode");
                backoff.lasting()
            }
            Err(e) => {
                warn!(error = %e, "slack socket mode; reconnecting");
                backoff.failed()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// The single-use WebSocket URL for one connection.
async fn open(socket: &SlackSocket) -> Result<String, SocketError> {
    let url = socket
        .api
        .join("apps.connections.open")
        .map_err(|e| SocketError::Open(e.to_string()))?;
    let answer: Value = socket
        .app
        .http
        .post(url)
        .bearer_auth(socket.app_token.expose())
        .timeout(StdDuration::from_secs(10))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| SocketError::Open(request_error(e)))?
        .json()
        .await
        .map_err(|e| SocketError::Open(format!("not JSON: {}", e.without_url())))?;
    if answer["ok"] != true {
        let code = answer["error"]
            .as_str()
            .unwrap_or("no error given")
            .to_owned();
        return Err(match code.as_str() {
            "invalid_auth"
            | "not_authed"
            | "not_allowed_token_type"
            | "account_inactive"
            | "token_revoked"
            | "missing_scope" => SocketError::Refused(code),
            _ => SocketError::Open(code),
        });
    }
    answer["url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SocketError::Open("the answer has no url".into()))
}

/// One connection, from opening to Slack's `disconnect` (Ok) or a failure.
async fn session(socket: &SlackSocket, backoff: &mut Backoff) -> Result<(), SocketError> {
    let url = open(socket).await?;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| SocketError::Connection(e.to_string()))?;
    let (mut sink, mut stream) = ws.split();
    // Acknowledgements are written by handlers running beside the reader.
    let (acks, mut outgoing) = mpsc::channel::<Value>(64);
    let mut quiet = Quiet::new(StdDuration::from_secs(30));
    // The last few ids, so a quick re-send costs no store call.
    let mut seen: VecDeque<String> = VecDeque::new();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    None => return Err(SocketError::Connection("closed".into())),
                    Some(Err(e)) => return Err(SocketError::Connection(e.to_string())),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        return Err(SocketError::Connection(format!("closed by Slack: {c:?}")));
                    }
                    // Pings are answered by the WebSocket layer; any frame
                    // shows the connection is alive.
                    Some(Ok(_)) => { quiet.heard(); continue; }
                };
                quiet.heard();
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                    warn!("slack socket mode: a message that is not JSON; ignored");
                    continue;
                };
                match message["type"].as_str() {
                    Some("hello") => {
                        backoff.reset();
                        info!(connections = %message["num_connections"], "slack socket mode connected");
                    }
                    Some("disconnect") => {
                        let reason = message["reason"].as_str().unwrap_or_default();
                        if reason == "link_disabled" {
                            return Err(SocketError::Disabled);
                        }
                        debug!(reason, "slack asked for a new connection");
                        let _ = sink.close().await;
                        return Ok(());
                    }
                    _ => envelope(socket, message, &mut seen, &acks).await,
                }
            }
            Some(ack) = outgoing.recv() => {
                sink.send(Message::text(ack.to_string()))
                    .await
                    .map_err(|e| SocketError::Connection(e.to_string()))?;
            }
            silent = quiet.check() => {
                if let Some(secs) = silent {
                    return Err(SocketError::Quiet(secs));
                }
                // Our own ping: Slack's pong counts as hearing from it.
                let _ = sink.send(Message::Ping(Vec::new())).await;
            }
        }
    }
}

/// Whether the envelope `id` is new. When the store cannot say, it is taken
/// as new (the connection's own memory still catches a quick re-send):
/// answering a command twice beats dropping it.
async fn first_time(socket: &SlackSocket, id: &str) -> bool {
    let now = socket.clock.now();
    match socket
        .receipts
        .first_receipt(SOURCE, id, now, REMEMBER)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            error!(error = %e, envelope = %id, "slack socket mode: cannot record the envelope; handling it as new");
            true
        }
    }
}

/// Handles one envelope: acknowledged with its id, and run once even if
/// Slack sends it again (a retry carries the same id), on this connection
/// or a later one.
async fn envelope(
    socket: &SlackSocket,
    m: Value,
    seen: &mut VecDeque<String>,
    acks: &mpsc::Sender<Value>,
) {
    let Some(id) = m["envelope_id"].as_str().map(str::to_owned) else {
        debug!(kind = %m["type"], "slack socket mode: ignored a message");
        return;
    };
    let ack = |payload: Option<Value>| {
        let mut a = json!({"envelope_id": id});
        if let Some(p) = payload {
            a["payload"] = p;
        }
        // The channel holds 64; a full one means the writer is gone.
        let _ = acks.try_send(a);
    };
    if seen.contains(&id) || !first_time(socket, &id).await {
        debug!(envelope = %id, "slack socket mode: a retried envelope, acknowledged again");
        ack(None);
        return;
    }
    seen.push_back(id.clone());
    if seen.len() > 256 {
        seen.pop_front();
    }
    match m["type"].as_str() {
        Some("slash_commands") => {
            let p = &m["payload"];
            let c = SlashCommand::from_fields(|k| p[k].as_str());
            let app = socket.app.clone();
            let acks = acks.clone();
            socket.app.tasks.spawn("slack command", async move {
                let answer = app.command(c).await;
                let _ = acks
                    .send(json!({"envelope_id": id, "payload": answer}))
                    .await;
            });
        }
        Some("interactive") => {
            ack(None);
            socket.app.interaction(&m["payload"]);
        }
        // Events and anything newer: acknowledged so Slack does not retry.
        _ => ack(None),
    }
}
