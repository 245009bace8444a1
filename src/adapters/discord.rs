//! Discord's HTTP interactions endpoint, `POST /discord/interactions`: every
//! request is verified (Ed25519 over timestamp + raw body with the
//! application's public key, a 5-minute window, no replays) before anything
//! in it is read. PING is answered PONG; `/purser <subcommand> [options]`
//! becomes the shared command text, and the answer comes back within
//! Discord's 3 seconds, or deferred and then edited in.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::http::{Answer, Forged, ReplayGuard, answer_with, within_window};
use crate::domain::command::Verb;
use crate::engine::alert_view::Button;
use crate::engine::chatops::{Asker, ChatOps, Pick, Reply, RunwayChart};
use crate::engine::request_view::Choice;
use crate::ports::{Clock, MessageRef};
use crate::secret::Secret;

pub const DEFAULT_API: &str = "https://discord.com/api/v10/";
/// A message's content is at most 2,000 characters.
const CONTENT_CHARS: usize = 2000;
/// Only the asker sees the answer.
const EPHEMERAL: u64 = 1 << 6;

pub struct Verifier {
    key: VerifyingKey,
    replays: ReplayGuard,
}

impl Verifier {
    /// `public_key`: the application's, 64 hex digits (Developer Portal →
    /// General Information).
    pub fn new(public_key: &str) -> Result<Verifier, String> {
        let bytes: [u8; 32] = hex::decode(public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "a public key is 64 hex digits".to_owned())?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_owned())?;
        Ok(Verifier {
            key,
            replays: ReplayGuard::default(),
        })
    }

    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Forged> {
        let ts_text = timestamp.ok_or(Forged::Missing("X-Signature-Timestamp"))?;
        let sig_hex = signature.ok_or(Forged::Missing("X-Signature-Ed25519"))?;
        let ts = within_window(ts_text, now)?;
        let sig: [u8; 64] = hex::decode(sig_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(Forged::BadSignature)?;
        let mut message = Vec::with_capacity(ts_text.len() + body.len());
        message.extend_from_slice(ts_text.as_bytes());
        message.extend_from_slice(body);
        self.key
            .verify(&message, &Signature::from_bytes(&sig))
            .map_err(|_| Forged::BadSignature)?;
        self.replays
            .first_use(&sig_hex.trim().to_ascii_lowercase(), ts, now)
    }
}

/// Discord's commands and buttons, however they arrive: over HTTP
/// (`DiscordEndpoint`) or over the gateway (`discord_gateway`).
pub struct DiscordApp {
    pub chat: Arc<ChatOps>,
    pub http: reqwest::Client,
    /// The REST API's base URL (tests point it at a mock).
    pub api: reqwest::Url,
    pub application_id: String,
    /// How long to work before deferring; zero always defers.
    pub answer_within: StdDuration,
    /// Deferred answers and charts still being worked on.
    pub tasks: super::tasks::Tasks,
}

/// The first response to an interaction, and, when it was deferred, the
/// work whose reply is edited in after it.
pub struct Answered {
    pub response: Value,
    pub later: Option<tokio::task::JoinHandle<Reply>>,
    /// A chart that goes with an answer given at once.
    pub chart: Option<RunwayChart>,
}

impl DiscordApp {
    /// Answers a command (type 2) or a button press (type 3); `None` for
    /// another type. The caller sends `response` first, then `follow_up`.
    pub async fn answer(&self, v: &Value) -> Option<Answered> {
        match v["type"].as_u64() {
            Some(2) => Some(self.command(v).await),
            Some(3) => Some(self.component(v).await),
            _ => None,
        }
    }

    async fn command(&self, v: &Value) -> Answered {
        let asker = asker(v);
        info!(user = %asker.user, "discord command");
        let chat = self.chat.clone();
        let text = command_text(&v["data"]);
        self.respond(async move { chat.handle(&asker, &text).await })
            .await
    }

    /// A button on an alert message. The presser is answered privately; when
    /// the alert changed, the notice it queued edits the message for everyone.
    async fn component(&self, v: &Value) -> Answered {
        let asker = asker(v);
        let data = v["data"]["custom_id"].as_str().unwrap_or_default();
        // The message the button is on names its channel; the interaction
        // does too.
        let text = |a: &Value, b: &Value| a.as_str().or(b.as_str()).unwrap_or_default().to_owned();
        let at = MessageRef {
            channel: text(&v["message"]["channel_id"], &v["channel_id"]),
            message: text(&v["message"]["id"], &Value::Null),
        };
        if let Some((choice, request)) = Choice::parse_data(data) {
            info!(user = %asker.user, button = choice.id(), request = %request, "discord request button");
            let chat = self.chat.clone();
            // The presser hears how it went; the request board redraws the card.
            return self
                .respond(async move { chat.choose(&asker, choice, request, Some(&at)).await })
                .await;
        }
        let Some((button, on)) = Button::parse_data(data) else {
            return Answered {
                response: json!({"type": 4, "data": {"flags": EPHEMERAL,
                    "content": format!("purser does not know the button {:?}.", truncate(data.to_owned()))}}),
                later: None,
                chart: None,
            };
        };
        info!(user = %asker.user, button = button.id(), "discord button");
        let chat = self.chat.clone();
        let pick = Pick::of(on, at);
        self.respond(async move { chat.press(&asker, button, &pick).await.reply })
            .await
    }

    /// Answers privately within the deadline, or defers.
    async fn respond(
        &self,
        work: impl std::future::Future<Output = Reply> + Send + 'static,
    ) -> Answered {
        match answer_with(work, self.answer_within).await {
            Answer::Now(reply) => Answered {
                response: json!({"type": 4, "data": {"flags": EPHEMERAL,
                    "content": render(&reply)}}),
                later: None,
                chart: reply.chart,
            },
            // Deferred: Discord shows "thinking…" until the original is edited.
            Answer::Later(work) => Answered {
                response: json!({"type": 5, "data": {"flags": EPHEMERAL}}),
                later: Some(work),
                chart: None,
            },
        }
    }

    /// After the first response: edits a deferred answer in once its work
    /// is done, and sends the answer's chart, if any, as a private follow-up
    /// with the image attached.
    pub fn follow_up(&self, interaction: &Value, answered: Answered) {
        if answered.later.is_none() && answered.chart.is_none() {
            return;
        }
        let token = interaction["token"].as_str().unwrap_or_default().to_owned();
        let webhook = self
            .api
            .join(&format!("webhooks/{}/{token}", self.application_id));
        let http = self.http.clone();
        self.tasks.spawn("discord follow-up", async move {
            let Ok(webhook) = webhook else { return };
            let chart = match answered.later {
                None => answered.chart,
                Some(work) => {
                    let Ok(reply) = work.await else { return };
                    let Ok(original) = webhook.join(&format!("{token}/messages/@original")) else {
                        return;
                    };
                    let sent = http
                        .patch(original)
                        .json(&json!({"content": render(&reply)}))
                        .timeout(StdDuration::from_secs(10))
                        .send()
                        .await;
                    if let Err(e) = sent.and_then(|r| r.error_for_status()) {
                        warn!(error = %e.without_url(), "could not deliver a late discord answer");
                        return;
                    }
                    reply.chart
                }
            };
            let Some(chart) = chart else { return };
            let png = match super::chart::runway_png(&chart) {
                Ok(Some(png)) => png,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "could not draw a runway chart");
                    return;
                }
            };
            let Ok(file) = reqwest::multipart::Part::bytes(png)
                .file_name("runway.png")
                .mime_str("image/png")
            else {
                return;
            };
            let form = reqwest::multipart::Form::new()
                .text(
                    "payload_json",
                    json!({"flags": EPHEMERAL,
                           "attachments": [{"id": 0, "filename": "runway.png",
                                            "description": format!("Runway of {}", chart.account)}]})
                    .to_string(),
                )
                .part("files[0]", file);
            let sent = http
                .post(webhook)
                .multipart(form)
                .timeout(StdDuration::from_secs(30))
                .send()
                .await;
            if let Err(e) = sent.and_then(|r| r.error_for_status()) {
                warn!(error = %e.without_url(), "could not send a discord runway chart");
            }
        });
    }
}

pub struct DiscordEndpoint {
    pub verifier: Verifier,
    pub clock: Arc<dyn Clock>,
    pub app: Arc<DiscordApp>,
}

/// `POST /discord/interactions`.
pub async fn interaction(
    State(discord): State<Arc<DiscordEndpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = discord.verifier.verify(
        header("x-signature-timestamp"),
        header("x-signature-ed25519"),
        &body,
        discord.clock.now(),
    ) {
        warn!(route = "/discord/interactions", %why, "refused a request not signed by Discord");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    if v["type"] == 1 {
        return axum::Json(json!({"type": 1})).into_response();
    }
    match discord.app.answer(&v).await {
        Some(answered) => {
            let response = answered.response.clone();
            discord.app.follow_up(&v, answered);
            axum::Json(response).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "unknown interaction type").into_response(),
    }
}

/// Who sent an interaction: in a server under `member`, in a DM at the top.
fn asker(v: &Value) -> Asker {
    let user = v["member"]["user"]["id"]
        .as_str()
        .or_else(|| v["user"]["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    Asker {
        platform: "discord".into(),
        user,
    }
}

/// The `/purser` slash command, a subcommand per command with its arguments
/// as string options in usage order: what `register` publishes.
pub fn command_definition() -> Value {
    fn clip(text: &str) -> String {
        // Discord allows 100 characters; the summary's first clause suffices.
        super::cut(text.split(", e.g.").next().unwrap_or(text), 100)
    }
    let subcommands: Vec<Value> = Verb::ALL
        .iter()
        .map(|verb| {
            let options: Vec<Value> = verb
                .parameters()
                .iter()
                .map(|p| json!({"type": 3, "name": p.name, "description": p.about, "required": p.required}))
                .collect();
            json!({"type": 1, "name": verb.name(), "description": clip(verb.summary()), "options": options})
        })
        .collect();
    json!({"name": "purser", "type": 1,
           "description": "Balances, runway and alerts of the prepaid cloud accounts",
           "options": subcommands})
}

/// A REST request as the bot: its token, and the user agent Discord asks
/// bots to send.
pub(crate) fn as_bot(request: reqwest::RequestBuilder, token: &Secret) -> reqwest::RequestBuilder {
    request
        .header("authorization", format!("Bot {}", token.expose()))
        .header(
            "user-agent",
            concat!("DiscordBot (purser, ", env!("CARGO_PKG_VERSION"), ")"),
        )
}

/// Publishes `/purser` for the application (a bulk overwrite of its global
/// commands: running it again changes nothing).
pub async fn register(
    http: &reqwest::Client,
    api: &reqwest::Url,
    application_id: &str,
    token: &Secret,
) -> Result<(), String> {
    let url = api
        .join(&format!("applications/{application_id}/commands"))
        .map_err(|e| e.to_string())?;
    let r = as_bot(http.put(url), token)
        .json(&json!([command_definition()]))
        .timeout(StdDuration::from_secs(10))
        .send()
        .await
        .map_err(super::http::request_error)?;
    match r.status().as_u16() {
        200..=299 => Ok(()),
        401 => Err("401: check the bot token (Developer Portal → Bot → Reset Token)".into()),
        403 => Err("403: the token is not this application's bot (application_id)".into()),
        code => Err(format!("HTTP {code}")),
    }
}

/// `/purser balance account:acme` arrives as the command `purser` with a
/// subcommand `balance` and its options; they are joined, in the order the
/// command declares them, into the text every platform shares. A single
/// string option (`/purser text:balance acme`) passes through as is.
pub fn command_text(data: &Value) -> String {
    fn walk(options: &Value, verb: Option<Verb>, out: &mut Vec<String>) {
        for o in options.as_array().into_iter().flatten() {
            let name = o["name"].as_str().unwrap_or_default();
            match o["type"].as_u64() {
                // Subcommand groups and subcommands name themselves.
                Some(1 | 2) => {
                    out.push(name.to_owned());
                    walk(&o["options"], Verb::parse(name), out);
                }
                _ => {
                    let value = match &o["value"] {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    let keyed = verb
                        .and_then(|v| v.parameters().iter().find(|p| p.name == name))
                        .is_some_and(|p| p.keyed);
                    out.push(if keyed && !value.starts_with(&format!("{name}=")) {
                        format!("{name}={value}")
                    } else {
                        value
                    });
                }
            }
        }
    }
    let mut words = Vec::new();
    walk(&data["options"], None, &mut words);
    words.join(" ")
}

/// The title in bold, the lines in a code block, within 2,000 characters.
pub fn render(reply: &Reply) -> String {
    let icon = reply.kind.icon();
    let mut out = format!("{icon}**{}**", escape(&reply.title));
    if reply.lines.is_empty() {
        return truncate(out);
    }
    out.push_str("\n```\n");
    let budget = CONTENT_CHARS - 40;
    let mut shown = 0;
    for l in &reply.lines {
        // A fence inside would end the block early.
        let l = l.replace("```", "'''");
        if out.chars().count() + l.chars().count() + 1 > budget {
            break;
        }
        out.push_str(&l);
        out.push('\n');
        shown += 1;
    }
    out.push_str("```");
    if shown < reply.lines.len() {
        out.push_str(&format!(
            "…and {} more; narrow the question",
            reply.lines.len() - shown
        ));
    }
    truncate(out)
}

fn truncate(s: String) -> String {
    super::cut(&s, CONTENT_CHARS)
}

/// Discord markdown: a backslash keeps these literal.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chatops::ReplyKind;
    use chrono::TimeZone;
    use ed25519_dalek::{Signer, SigningKey};

    /// RFC 8032, section 7.1, TEST 1: the primitive, on the empty message.
    #[test]
    fn rfc_8032_test_1() {
        let secret: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_bytes(&secret);
        assert_eq!(
            hex::encode(key.verifying_key().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    fn keys() -> (SigningKey, Verifier) {
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let v = Verifier::new(&hex::encode(signing.verifying_key().to_bytes())).unwrap();
        (signing, v)
    }

    fn sign(key: &SigningKey, ts: &str, body: &[u8]) -> String {
        let mut m = ts.as_bytes().to_vec();
        m.extend_from_slice(body);
        hex::encode(key.sign(&m).to_bytes())
    }

    #[test]
    fn genuine_requests_pass_once_and_forgeries_never() {
        let (key, v) = keys();
        let now = Utc.timestamp_opt(1_763_900_000, 0).unwrap();
        let ts = "1763900000";
        let body = br#"{"type":1}"#;
        let sig = sign(&key, ts, body);
        assert_eq!(v.verify(Some(ts), Some(&sig), body, now), Ok(()));
        assert_eq!(
            v.verify(Some(ts), Some(&sig), body, now),
            Err(Forged::Replayed)
        );
        let sig2 = sign(&key, ts, br#"{"type":2}"#);
        assert_eq!(
            v.verify(Some(ts), Some(&sig2), br#"{"type":3}"#, now),
            Err(Forged::BadSignature),
            "tampered"
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = sign(&other, ts, body);
        assert_eq!(
            v.verify(Some(ts), Some(&forged), body, now),
            Err(Forged::BadSignature)
        );
        let stale = sign(&key, "1763899000", body);
        assert_eq!(
            v.verify(Some("1763899000"), Some(&stale), body, now),
            Err(Forged::Stale(1000))
        );
        assert_eq!(
            v.verify(Some(ts), Some("00"), body, now),
            Err(Forged::BadSignature)
        );
        assert_eq!(
            v.verify(None, Some(&sig), body, now),
            Err(Forged::Missing("X-Signature-Timestamp"))
        );
        assert!(Verifier::new("not hex").is_err());
        assert!(Verifier::new(&"ab".repeat(31)).is_err());
    }

    #[test]
    fn subcommands_and_options_become_the_shared_text() {
        let data = json!({"name": "purser", "options": [
            {"name": "silence", "type": 1, "options": [
                {"name": "matchers", "type": 3, "value": "account=acme,rule=expiring"},
                {"name": "duration", "type": 3, "value": "24h"},
                {"name": "reason", "type": 3, "value": "renewal booked"}]}]});
        assert_eq!(
            command_text(&data),
            "silence account=acme,rule=expiring 24h renewal booked"
        );
        let data = json!({"name": "purser", "options": [
            {"name": "expiring", "type": 1, "options": [{"name": "days", "type": 4, "value": 7}]}]});
        assert_eq!(command_text(&data), "expiring 7");
        assert_eq!(command_text(&json!({"name": "purser"})), "");
    }

    #[test]
    fn the_published_command_fills_in_as_the_shared_language() {
        let def = command_definition();
        let subs = def["options"].as_array().unwrap();
        assert_eq!(subs.len(), Verb::ALL.len());
        for sub in subs {
            let d = sub["description"].as_str().unwrap();
            assert!((1..=100).contains(&d.chars().count()), "{d}");
            // Every option filled with a plausible value, in order, as Discord
            // sends them back: the text parses as that command.
            let filled: Vec<Value> = sub["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    let value = match o["name"].as_str().unwrap() {
                        "account" => "acme",
                        "days" => "7",
                        "alert" => "abcdef12",
                        "matchers" => "account=acme",
                        "duration" => "1h",
                        "reason" => "wire sent",
                        "silence" => "3",
                        "amount" => "¥1,000",
                        "command" => "ack",
                        "resources" | "resource" => "ins-a",
                        "period" => "1m",
                        "orders" => "2024110100001",
                        "coupon" => "c1",
                        "discount" => "d1",
                        "setting" => "on",
                        "contract" => "COC-1",
                        "method" => "wire",
                        "request" => "R12",
                        "code" => "123456",
                        "all" => "all",
                        "schedule" => "ops",
                        "outcome" => "done",
                        "note" => "the order shows paid",
                        other => panic!("no sample for {other}"),
                    };
                    json!({"type": 3, "name": o["name"], "value": value})
                })
                .collect();
            let data = json!({"name": "purser", "options": [
                {"type": 1, "name": sub["name"], "options": filled}]});
            let text = command_text(&data);
            let parsed =
                crate::domain::command::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(parsed.verb().name(), sub["name"], "{text}");
        }
    }

    #[test]
    fn answers_fit_discord_and_escape_markdown() {
        let reply = Reply {
            kind: ReplyKind::Done,
            title: "a *b* _c_".into(),
            lines: (0..500).map(|i| format!("line {i} ```")).collect(),
            chart: None,
        };
        let r = render(&reply);
        assert!(r.chars().count() <= 2000, "{}", r.len());
        assert!(r.starts_with("**a \\*b\\* \\_c\\_**\n```\n"), "{r}");
        assert!(r.contains("more; narrow the question"));
        assert_eq!(r.matches("```").count(), 2, "one code block, closed");
    }
}
