//! Discord's gateway: purser keeps a WebSocket to Discord open as its bot (no
//! public URL needed) and interactions — `/purser` commands and button
//! presses — arrive on it as `INTERACTION_CREATE` events carrying the same
//! interaction document as the HTTP endpoint, answered by the same
//! `DiscordApp` through the interaction's callback.
//!
//! The session follows Discord's protocol: Hello → Identify (no intents:
//! interactions arrive without any) → Ready; heartbeats at the interval
//! Hello gives, a connection whose heartbeat goes unacknowledged is a zombie
//! and is replaced; Reconnect, a dropped connection and resumable closes
//! resume the session where it stopped (so no event is lost); closes that
//! mean the token or settings are wrong stop and say so.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, error, info, warn};

use super::discord::{self, DiscordApp};
use super::http::request_error;
use super::ws::{Backoff, stopped};
use crate::secret::Secret;

/// How long opening a connection, and its Hello, may take.
const OPENING: StdDuration = StdDuration::from_secs(10);

pub struct DiscordGateway {
    pub token: Secret,
    pub app: Arc<DiscordApp>,
}

/// What lets a dropped connection resume instead of starting over.
#[derive(Debug, Clone)]
struct Session {
    id: String,
    resume_url: String,
    seq: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("GET gateway/bot: {0}")]
    Locate(String),
    #[error("the connection failed: {0}")]
    Connection(String),
    #[error("closed by Discord ({0}): {1}")]
    Closed(u16, String),
    #[error("Discord closed the connection for good ({0}): {1}")]
    Refused(u16, &'static str),
    #[error("no heartbeat acknowledgement: the connection is a zombie")]
    Zombie,
    #[error("Discord said the session is no longer valid")]
    InvalidSession,
    #[error("the gateway spoke out of turn: {0}")]
    Protocol(String),
}

/// Close codes after which reconnecting cannot help; each says what to fix.
fn lasting(code: u16) -> Option<&'static str> {
    Some(match code {
        4004 => "the bot token was refused (Developer Portal → Bot → Reset Token)",
        4010 | 4011 => "sharding is required for this many servers",
        4012 => "the gateway version is no longer supported",
        4013 | 4014 => "the intents asked for are not allowed",
        _ => return None,
    })
}

/// Keeps the gateway connection up until `stop`; publishes `/purser` first.
pub async fn run(gw: Arc<DiscordGateway>, mut stop: watch::Receiver<bool>) {
    let app = &gw.app;
    match discord::register(&app.http, &app.api, &app.application_id, &gw.token).await {
        Ok(()) => info!("discord /purser command published"),
        Err(e) => warn!(error = %e, "could not publish the discord /purser command"),
    }
    let mut session: Option<Session> = None;
    let mut backoff = Backoff::default();
    loop {
        // The connection watches `stop` itself, to close cleanly.
        let ended = connection(&gw, &mut session, &mut backoff, &mut stop).await;
        let wait = match ended {
            Ok(true) => return,
            Ok(false) => StdDuration::ZERO,
            Err(e @ GatewayError::Refused(..)) => {
                error!(error = %e, "discord gateway");
                backoff.lasting()
            }
            Err(e) => {
                warn!(error = %e, resuming = session.is_some(), "discord gateway; reconnecting");
                backoff.failed()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Where to connect: the session's resume URL, or a fresh one from the API.
async fn locate(gw: &DiscordGateway, session: Option<&Session>) -> Result<String, GatewayError> {
    let base = match session {
        Some(s) => s.resume_url.clone(),
        None => {
            let url = gw
                .app
                .api
                .join("gateway/bot")
                .map_err(|e| GatewayError::Locate(e.to_string()))?;
            let r = discord::as_bot(gw.app.http.get(url), &gw.token)
                .timeout(StdDuration::from_secs(10))
                .send()
                .await
                .map_err(|e| GatewayError::Locate(request_error(e)))?;
            if r.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(GatewayError::Refused(
                    401,
                    "the bot token was refused (Developer Portal → Bot → Reset Token)",
                ));
            }
            let v: Value = r
                .error_for_status()
                .map_err(|e| GatewayError::Locate(request_error(e)))?
                .json()
                .await
                .map_err(|e| GatewayError::Locate(format!("not JSON: {}", e.without_url())))?;
            v["url"]
                .as_str()
                .ok_or_else(|| GatewayError::Locate("the answer has no url".into()))?
                .to_owned()
        }
    };
    let mut url =
        reqwest::Url::parse(&base).map_err(|e| GatewayError::Locate(format!("{base:?}: {e}")))?;
    url.query_pairs_mut()
        .clear()
        .append_pair("v", "10")
        .append_pair("encoding", "json");
    Ok(url.to_string())
}

/// One connection. `Ok(true)` when stopped, `Ok(false)` when Discord asked
/// for a reconnection.
async fn connection(
    gw: &DiscordGateway,
    session: &mut Option<Session>,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, GatewayError> {
    let url = locate(gw, session.as_ref()).await?;
    let (ws, _) = tokio::time::timeout(OPENING, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .map_err(|_| GatewayError::Connection("no answer within 10 s".into()))?
        .map_err(|e| GatewayError::Connection(e.to_string()))?;
    let (mut sink, mut stream) = ws.split();
    let send = |v: Value| Message::text(v.to_string());

    // Hello comes first and sets the heartbeat.
    let first = tokio::time::timeout(OPENING, stream.next())
        .await
        .map_err(|_| GatewayError::Protocol("no Hello within 10 s".into()))?;
    let hello = match first {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).unwrap_or_default(),
        other => {
            return Err(GatewayError::Protocol(format!(
                "expected Hello, got {other:?}"
            )));
        }
    };
    let interval = hello["d"]["heartbeat_interval"]
        .as_u64()
        .filter(|_| hello["op"] == 10)
        .ok_or_else(|| GatewayError::Protocol(format!("expected Hello, got op {}", hello["op"])))?;
    let interval = StdDuration::from_millis(interval.max(1000));

    let greeting = match session.as_ref() {
        Some(s) => {
            json!({"op": 6, "d": {"token": gw.token.expose(), "session_id": s.id, "seq": s.seq}})
        }
        None => json!({"op": 2, "d": {
            "token": gw.token.expose(),
            // Interactions arrive without any intent.
            "intents": 0,
            "properties": {"os": std::env::consts::OS, "browser": "purser", "device": "purser"}}}),
    };
    sink.send(send(greeting))
        .await
        .map_err(|e| GatewayError::Connection(e.to_string()))?;

    // Discord asks for the first beat after a random part of the interval.
    let first = interval.mul_f64(jitter());
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
    let mut acked = true;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    None => return Err(GatewayError::Connection("closed".into())),
                    Some(Err(e)) => return Err(GatewayError::Connection(e.to_string())),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        let (code, reason) = c.map_or((1005, String::new()), |c| (u16::from(c.code), c.reason.to_string()));
                        if let Some(why) = lasting(code) {
                            return Err(GatewayError::Refused(code, why));
                        }
                        // The sequence or session is gone: start a new one.
                        if matches!(code, 4007 | 4009) {
                            *session = None;
                        }
                        return Err(GatewayError::Closed(code, reason));
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(m) = serde_json::from_str::<Value>(text.as_str()) else {
                    warn!("discord gateway: a message that is not JSON; ignored");
                    continue;
                };
                match m["op"].as_u64() {
                    Some(0) => {
                        if let (Some(s), Some(session)) = (m["s"].as_u64(), session.as_mut()) {
                            session.seq = Some(s);
                        }
                        match m["t"].as_str() {
                            Some("READY") => {
                                *session = Some(Session {
                                    id: m["d"]["session_id"].as_str().unwrap_or_default().to_owned(),
                                    resume_url: m["d"]["resume_gateway_url"].as_str().unwrap_or(&url).to_owned(),
                                    seq: m["s"].as_u64(),
                                });
                                backoff.reset();
                                info!(user = %m["d"]["user"]["username"], "discord gateway ready");
                            }
                            Some("RESUMED") => {
                                backoff.reset();
                                info!("discord gateway resumed");
                            }
                            Some("INTERACTION_CREATE") => interaction(gw.app.clone(), m["d"].clone()),
                            _ => {}
                        }
                    }
                    // Discord wants a beat now.
                    Some(1) => {
                        let seq = session.as_ref().and_then(|s| s.seq);
                        sink.send(send(json!({"op": 1, "d": seq}))).await.map_err(|e| GatewayError::Connection(e.to_string()))?;
                    }
                    Some(7) => {
                        debug!("discord asked for a reconnection");
                        let _ = sink.send(Message::Close(Some(resumable()))).await;
                        return Ok(false);
                    }
                    Some(9) => {
                        if m["d"] != true {
                            *session = None;
                        }
                        let _ = sink.send(Message::Close(Some(resumable()))).await;
                        return Err(GatewayError::InvalidSession);
                    }
                    Some(11) => acked = true,
                    _ => {}
                }
            }
            _ = beat.tick() => {
                if !acked {
                    let _ = sink.send(Message::Close(Some(resumable()))).await;
                    return Err(GatewayError::Zombie);
                }
                acked = false;
                let seq = session.as_ref().and_then(|s| s.seq);
                sink.send(send(json!({"op": 1, "d": seq}))).await.map_err(|e| GatewayError::Connection(e.to_string()))?;
            }
            _ = stopped(stop) => {
                // A normal close ends the session; nothing is left to resume.
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
                return Ok(true);
            }
        }
    }
}

/// A close that keeps the session resumable (any code but 1000 and 1001).
fn resumable() -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(4000),
        reason: "reconnecting".into(),
    }
}

/// A fraction in [0, 1) that differs from one start to the next.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos) / 1e9
}

/// Answers one interaction through its callback, then edits in a deferred
/// answer.
fn interaction(app: Arc<DiscordApp>, v: Value) {
    let tasks = app.tasks.clone();
    tasks.spawn("discord interaction", async move {
        let (Some(id), Some(token)) = (v["id"].as_str(), v["token"].as_str()) else {
            return;
        };
        let Some(answered) = app.answer(&v).await else {
            return;
        };
        let Ok(url) = app.api.join(&format!("interactions/{id}/{token}/callback")) else {
            return;
        };
        let sent = app
            .http
            .post(url)
            .json(&answered.response)
            .timeout(StdDuration::from_secs(10))
            .send()
            .await;
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            warn!(error = %e.without_url(), "could not answer a discord interaction");
            return;
        }
        app.follow_up(&v, answered);
    });
}
