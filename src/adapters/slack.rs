//! Slack's slash commands and buttons. Over HTTP, at `POST /slack/commands`
//! and `POST /slack/interactions`, each request is verified (signature,
//! 5-minute window, no replays) before anything in it is read; over Socket
//! Mode (`slack_socket`) the same payloads arrive on an authenticated
//! connection. Either way a command is answered within Slack's 3-second
//! deadline, or acknowledged and answered through its `response_url`.
//!
//! The verifier is written here, on the `hmac` crate, rather than taken from
//! a Slack client library: those read the wall clock (so the official worked
//! example cannot be checked with injected time) and do not refuse replays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tracing::{info, warn};

use super::block_kit::{Block, ButtonElement, Element};
use super::http::{Answer, ReplayGuard, answer, deliver_later, within_window};
use super::tasks::Tasks;
use crate::engine::alert_view::{Button, On};
use crate::engine::chatops::{Asker, ChatOps, Pick, Reply, ReplyKind};
use crate::engine::request_view::Choice;
use crate::ports::{Clock, MessageRef};
use crate::secret::Secret;

/// A section's text is at most 3,000 characters; a message at most 50 blocks.
const SECTION_CHARS: usize = 2900;
const MAX_BLOCKS: usize = 50;

pub use super::http::Forged;

pub struct Verifier {
    secret: Secret,
    replays: ReplayGuard,
}

impl Verifier {
    pub fn new(secret: Secret) -> Verifier {
        Verifier {
            secret,
            replays: ReplayGuard::default(),
        }
    }

    /// Checks a request's raw body against its `X-Slack-Request-Timestamp`
    /// and `X-Slack-Signature` headers at `now`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Forged> {
        let ts_text = timestamp.ok_or(Forged::Missing("X-Slack-Request-Timestamp"))?;
        let sig = signature.ok_or(Forged::Missing("X-Slack-Signature"))?;
        let ts = within_window(ts_text, now)?;
        let hex_sig = sig.strip_prefix("v0=").ok_or(Forged::BadSignature)?;
        let given = hex::decode(hex_sig).map_err(|_| Forged::BadSignature)?;
        // verify_slice compares in constant time.
        mac(self.secret.expose(), ts_text, body)
            .verify_slice(&given)
            .map_err(|_| Forged::BadSignature)?;
        self.replays
            .first_use(&hex_sig.to_ascii_lowercase(), ts, now)
    }
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// `v0=<hex>`: how Slack signs `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Slack's slash commands and buttons, however they arrive: over HTTP
/// (`SlackEndpoint`) or over Socket Mode (`slack_socket`).
pub struct SlackApp {
    pub chat: Arc<ChatOps>,
    pub http: reqwest::Client,
    /// How long to work on an answer before acknowledging and answering later.
    pub answer_within: StdDuration,
    /// Answers still being worked on after the acknowledgement.
    pub tasks: Tasks,
}

/// A slash command's fields, the same over HTTP (a form) and Socket Mode (JSON).
#[derive(Debug, Clone, Default)]
pub struct SlashCommand {
    pub user: String,
    pub command: String,
    pub text: String,
    pub response_url: String,
}

impl SlashCommand {
    pub fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> SlashCommand {
        let get = |k: &str| field(k).unwrap_or_default().to_owned();
        SlashCommand {
            user: get("user_id"),
            command: get("command"),
            text: get("text"),
            response_url: get("response_url"),
        }
    }
}

impl SlackApp {
    /// Runs a slash command and returns the message that acknowledges it:
    /// the answer itself when it is ready within `answer_within`, otherwise
    /// "Working on it…", with the answer sent to `response_url` when ready.
    pub async fn command(&self, c: SlashCommand) -> Value {
        let asker = Asker {
            platform: "slack".into(),
            user: c.user,
        };
        info!(user = %asker.user, command = %c.command, "slack command");
        match answer(self.chat.clone(), asker, c.text, self.answer_within).await {
            Answer::Now(reply) => render(&reply),
            Answer::Later(work) => {
                let http = self.http.clone();
                let response_url = c.response_url;
                deliver_later(&self.tasks, work, move |reply| {
                    (!response_url.is_empty())
                        .then(|| http.post(&response_url).json(&render(&reply)))
                });
                json!({"response_type": "ephemeral", "text": "Working on it…"})
            }
        }
    }

    /// A button pressed on an alert message (`block_actions`): acknowledged
    /// by the caller at once; the action runs here, and the message is
    /// edited (or the presser told why not) through the payload's
    /// `response_url`. Other interaction types are ignored.
    pub fn interaction(&self, payload: &Value) {
        if payload["type"] != "block_actions" {
            return;
        }
        let Some(action) = payload["actions"].get(0).cloned() else {
            return;
        };
        let asker = Asker {
            platform: "slack".into(),
            user: payload["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let response_url = payload["response_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let blocks = payload["message"]["blocks"].clone();
        let text = |a: &Value, b: &Value| a.as_str().or(b.as_str()).unwrap_or_default().to_owned();
        let message = MessageRef {
            channel: text(
                &payload["container"]["channel_id"],
                &payload["channel"]["id"],
            ),
            message: text(
                &payload["container"]["message_ts"],
                &payload["message"]["ts"],
            ),
        };
        let chat = self.chat.clone();
        let http = self.http.clone();
        self.tasks.spawn("slack button", async move {
            let answer = press(&chat, &asker, &action, message, &blocks).await;
            if response_url.is_empty() {
                return;
            }
            let sent = http
                .post(&response_url)
                .json(&answer)
                .timeout(StdDuration::from_secs(10))
                .send()
                .await;
            if let Err(e) = sent.and_then(|r| r.error_for_status()) {
                warn!(error = %e.without_url(), "could not answer a slack button");
            }
        });
    }
}

/// What the `/slack/*` routes share.
pub struct SlackEndpoint {
    pub verifier: Verifier,
    pub clock: Arc<dyn Clock>,
    pub app: Arc<SlackApp>,
}

impl SlackEndpoint {
    /// Verifies a request before anything in it is read; logs a refusal.
    fn refuses(&self, route: &str, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match self.verifier.verify(
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
            self.clock.now(),
        ) {
            Ok(()) => false,
            Err(why) => {
                warn!(route, %why, "refused a request not signed by Slack");
                true
            }
        }
    }
}

/// `POST /slack/commands`.
pub async fn command(
    State(slack): State<Arc<SlackEndpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if slack.refuses("/slack/commands", &headers, &body) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let c = SlashCommand::from_fields(|k| form.get(k).map(String::as_str));
    axum::Json(slack.app.command(c).await).into_response()
}

/// `POST /slack/interactions`: a button pressed on an alert message.
pub async fn interaction(
    State(slack): State<Arc<SlackEndpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if slack.refuses("/slack/interactions", &headers, &body) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let payload = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned());
    let Some(payload) = payload.and_then(|p| serde_json::from_str::<Value>(&p).ok()) else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    slack.app.interaction(&payload);
    StatusCode::OK.into_response()
}

/// Runs a pressed button as the command it stands for, and says how the
/// message should change: edited in place when it worked, or a note only the
/// presser sees when it did not.
async fn press(
    chat: &ChatOps,
    asker: &Asker,
    action: &Value,
    message: MessageRef,
    blocks: &Value,
) -> Value {
    let id = action["action_id"].as_str().unwrap_or_default();
    // Messages posted by earlier versions carry more after a `|`.
    let value = action["value"].as_str().unwrap_or_default();
    let what = value.split('|').next().unwrap_or_default();
    // Approve or Deny on a request's card: the presser hears how it went;
    // the card itself is redrawn for everyone by the request board.
    if let Some((choice, request)) = Choice::parse_data(&format!("{id}:{what}")) {
        let reply = chat.choose(asker, choice, request, Some(&message)).await;
        return json!({"response_type": "ephemeral", "replace_original": false, "text": reply.text()});
    }
    let (Some(button), Some(on)) = (Button::from_id(id), On::parse(what)) else {
        return json!({"response_type": "ephemeral", "replace_original": false,
                      "text": format!("purser does not know the button {id:?}.")});
    };
    let pressed = chat.press(asker, button, &Pick::of(on, message)).await;
    if !pressed.changed {
        return json!({"response_type": "ephemeral", "replace_original": false, "text": pressed.reply.text()});
    }
    let done = match button {
        Button::Ack => "Acknowledged",
        Button::Silence1h => "Silenced for 1 h",
        _ => "Silenced for 24 h",
    };
    // The same message, with the pressed kind of button gone and a line
    // saying who did what.
    let who = chat
        .directory
        .lookup(&asker.platform, &asker.user)
        .map_or(asker.user.clone(), |p| p.name.clone());
    let gone: &[&str] = if button == Button::Ack {
        &["ack"]
    } else {
        &["silence_1h", "silence_24h"]
    };
    let said = Block::context(format!(
        "{done} by {} at {}",
        escape(&who),
        chat.clock.now().format("%H:%M UTC")
    ));
    // The message's blocks as Slack sent them back; one purser did not draw
    // (none should be there) is kept as it came.
    let mut out: Vec<Value> = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        match serde_json::from_value::<Block>(b.clone()) {
            Ok(Block::Actions { elements }) => {
                let kept: Vec<ButtonElement> = elements
                    .into_iter()
                    .map(|Element::Button(e)| e)
                    .filter(|e| !gone.contains(&e.action_id.as_str()))
                    .collect();
                out.push(json!(said));
                if !kept.is_empty() {
                    out.push(json!(Block::actions(kept)));
                }
            }
            Ok(block) => out.push(json!(block)),
            Err(_) => out.push(b.clone()),
        }
    }
    json!({"replace_original": true, "text": pressed.reply.title, "blocks": out})
}

/// A reply as a Slack message: the title, then the lines in code blocks of at
/// most 2,900 characters, within 50 blocks. Only the asker sees it.
pub fn render(reply: &Reply) -> Value {
    let icon = match reply.kind {
        ReplyKind::Done => "",
        ReplyKind::Usage => ":grey_question: ",
        ReplyKind::Refused => ":no_entry: ",
        ReplyKind::Failed => ":warning: ",
    };
    let title = format!("{icon}{}", escape(&reply.title));
    let mut blocks = vec![Block::section(title)];
    let mut chunk = String::new();
    let mut chunks = Vec::new();
    for line in &reply.lines {
        let line: String = line.chars().take(SECTION_CHARS).collect();
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > SECTION_CHARS {
            chunks.push(std::mem::take(&mut chunk));
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&line);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    let room = MAX_BLOCKS - 2;
    let more = chunks.len().saturating_sub(room);
    for c in chunks.into_iter().take(room) {
        blocks.push(Block::section(format!("```{}```", escape(&c))));
    }
    if more > 0 {
        blocks.push(Block::context(format!(
            "…and {more} more sections; narrow the question"
        )));
    }
    json!({
        "response_type": "ephemeral",
        "text": reply.title,
        "blocks": blocks,
    })
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(Secret::from_value(SECRET))
    }

    #[test]
    fn the_official_example_signs_and_verifies() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()), SIG);
        let v = verifier();
        assert_eq!(
            v.verify(Some(TS), Some(SIG), BODY.as_bytes(), at(1531420618 + 60)),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_tampered_and_replayed_requests_are_refused() {
        let now = at(1531420618);
        let v = verifier();
        let body = BODY.as_bytes();
        assert_eq!(
            v.verify(None, Some(SIG), body, now),
            Err(Forged::Missing("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            v.verify(Some(TS), None, body, now),
            Err(Forged::Missing("X-Slack-Signature"))
        );
        assert_eq!(
            v.verify(Some("soon"), Some(SIG), body, now),
            Err(Forged::BadTimestamp)
        );
        assert_eq!(
            v.verify(Some(TS), Some(SIG), body, at(1531420618 + 301)),
            Err(Forged::Stale(301))
        );
        assert_eq!(
            v.verify(Some(TS), Some(SIG), body, at(1531420618 - 400)),
            Err(Forged::Stale(-400))
        );
        let tampered = BODY.replace("text=", "text=balance");
        assert_eq!(
            v.verify(Some(TS), Some(SIG), tampered.as_bytes(), now),
            Err(Forged::BadSignature)
        );
        // The right signature under another timestamp.
        assert_eq!(
            v.verify(Some("1531420619"), Some(SIG), body, now),
            Err(Forged::BadSignature)
        );
        assert_eq!(
            v.verify(Some(TS), Some("a2114d57"), body, now),
            Err(Forged::BadSignature)
        );
        assert_eq!(
            v.verify(Some(TS), Some("v0=zz"), body, now),
            Err(Forged::BadSignature)
        );
        let other = Verifier::new(Secret::from_value("another-secret"));
        assert_eq!(
            other.verify(Some(TS), Some(SIG), body, now),
            Err(Forged::BadSignature)
        );
        // Genuine once; the same request again is a replay.
        assert_eq!(v.verify(Some(TS), Some(SIG), body, now), Ok(()));
        assert_eq!(
            v.verify(Some(TS), Some(SIG), body, now),
            Err(Forged::Replayed)
        );
    }

    #[test]
    fn replies_stay_within_slacks_limits_and_escape_markup() {
        let reply = Reply {
            kind: ReplyKind::Done,
            title: "a <b> & c".into(),
            lines: (0..5000)
                .map(|i| format!("line {i} {}", "x".repeat(40)))
                .collect(),
            chart: None,
        };
        let v = render(&reply);
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert_eq!(blocks[0]["text"]["text"], "a &lt;b&gt; &amp; c");
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000, "{}", t.len());
            }
        }
        assert!(
            blocks.last().unwrap()["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("more sections")
        );
        assert_eq!(v["response_type"], "ephemeral");
    }
}
