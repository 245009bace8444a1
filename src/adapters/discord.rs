//! Discord, through serenity: the bot's REST client (with serenity's
//! per-route and global rate limiter), its model of interactions, and the
//! HTTP interactions endpoint, `POST /discord/interactions`. Every request
//! there is verified (Ed25519 over timestamp + raw body with the
//! application's public key, a 5-minute window, no replays) before anything
//! in it is read. PING is answered PONG; `/purser <subcommand> [options]`
//! becomes the shared command text, and the answer comes back within
//! Discord's 3 seconds, or deferred and then edited in. The gateway
//! (`discord_gateway`) hands its interactions to the same `DiscordApp`.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serenity::all::{
    Builder as _, CommandDataOption, CommandDataOptionValue, CommandInteraction, CommandOptionType,
    ComponentInteraction, CreateAttachment, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    EditInteractionResponse, Http, HttpBuilder, Interaction,
};
use tracing::{info, warn};

use super::http::{Answer, Forged, ReplayGuard, answer_with, within_window};
use crate::domain::command::Verb;
use crate::engine::alert_view::Button;
use crate::engine::chatops::{Asker, ChatOps, Pick, Reply, RunwayChart};
use crate::engine::request_view::Choice;
use crate::ports::{Clock, MessageRef, SendError};
use crate::secret::Secret;

pub const DEFAULT_API: &str = "https://discord.com/api/v10/";
/// A message's content is at most 2,000 characters.
const CONTENT_CHARS: usize = 2000;
/// The longest one call may take, its rate-limit waits included: past it,
/// the call is given up and retried later like any failed delivery.
pub(crate) const CALL_WITHIN: StdDuration = StdDuration::from_secs(60);

/// A wait in serenity's rate limiter. Its path can hold an interaction's
/// token: only the method and the wait are told.
pub(crate) fn log_ratelimit(hit: &serenity::http::RatelimitInfo) {
    warn!(
        method = ?hit.method,
        global = hit.global,
        wait_ms = hit.timeout.as_millis() as u64,
        "discord rate limit: waiting before the next call"
    );
}

/// The bot's REST client. One per bot token, shared by the outputs, the
/// gateway and the interactions that use it, so that one rate limiter sees
/// all of the bot's calls (Discord's limits are the bot's, not a channel's).
///
/// `api` is Discord's (`DEFAULT_API`) or an API proxy in front of it such as
/// twilight-http-proxy, served under `/api/v10`. A proxy keeps the limits
/// for every process that shares it, so serenity's own limiter is off there,
/// as serenity prescribes; a 429 from it comes back as `RateLimited`.
pub fn rest_client(
    token: &Secret,
    application_id: Option<u64>,
    api: &reqwest::Url,
) -> Result<Http, String> {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(StdDuration::from_secs(10))
        .timeout(StdDuration::from_secs(30))
        .build()
        .map_err(|e| format!("the HTTP client: {e}"))?;
    let mut builder = HttpBuilder::new(token.expose()).client(client);
    if let Some(id) = application_id.filter(|id| *id != 0) {
        builder = builder.application_id(id.into());
    }
    if api.as_str() != DEFAULT_API {
        if api.path().trim_end_matches('/') != "/api/v10" {
            return Err(format!(
                "{api}: Discord's API is served under /api/v10 (a proxy in front of it too)"
            ));
        }
        let origin = api.origin().ascii_serialization();
        builder = builder.proxy(origin).ratelimiter_disabled(true);
    }
    let mut http = builder.build();
    if let Some(limiter) = http.ratelimiter.as_mut() {
        limiter.set_ratelimit_callback(Box::new(|hit| log_ratelimit(&hit)));
    }
    Ok(http)
}

/// What a failed call means: what waiting mends, and what a person must fix.
pub(crate) fn failure(what: &str, e: serenity::Error) -> SendError {
    use serenity::http::HttpError;
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            classify(what, r.status_code.as_u16(), r.error.code, &r.error.message)
        }
        serenity::Error::Http(HttpError::Request(e)) => {
            SendError::transient(format!("{what}: {}", e.without_url()))
        }
        // A message over Discord's limits, say: sending it again cannot help.
        serenity::Error::Model(e) => SendError::refused(format!("{what}: {e}")),
        serenity::Error::Json(e) => SendError::transient(format!("{what}: unreadable answer: {e}")),
        other => SendError::transient(format!("{what}: {other}")),
    }
}

/// Discord's JSON error code for a message that no longer exists.
pub(crate) const UNKNOWN_MESSAGE: &str = "10008";

/// An unsuccessful answer by status and Discord's JSON error code. A 429
/// reaches here only through an API proxy (serenity's limiter waits them out
/// itself), and serenity keeps no `retry_after` for it: Discord's shortest
/// sensible pause is assumed.
pub(crate) fn classify(what: &str, status: u16, code: isize, message: &str) -> SendError {
    if status == 429 {
        return SendError::rate_limited(format!("{what}: rate limited"), StdDuration::from_secs(1));
    }
    if status >= 500 {
        return SendError::transient(format!("{what}: HTTP {status}"));
    }
    let hint = match (status, code) {
        (401, _) => "check the bot token (Developer Portal → Bot → Reset Token)",
        (403, 50001) => "add the bot to the server and let it view the channel",
        (403, 50013) => "give the bot View Channel, Send Messages and Embed Links in the channel",
        (404, 10003) => "check the output's channel id (Developer Mode → Copy Channel ID)",
        (403, 50007) => {
            "the person must share a server with the bot and allow direct messages from its members"
        }
        _ => "",
    };
    let message = if code == -1 {
        "an answer that is not Discord's JSON"
    } else {
        message
    };
    let said = format!("{what}: HTTP {status}, code {code}: {message}");
    SendError::Refused {
        code: (code > 0).then(|| code.to_string()),
        what: if hint.is_empty() {
            said
        } else {
            format!("{said}: {hint}")
        },
    }
}

/// Runs one call within `CALL_WITHIN`, its failure translated.
pub(crate) async fn within<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, serenity::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(CALL_WITHIN, call).await {
        Ok(done) => done.map_err(|e| failure(what, e)),
        Err(_) => Err(SendError::transient(format!(
            "{what}: no answer within {} s (slow, or rate limited all along)",
            CALL_WITHIN.as_secs()
        ))),
    }
}

pub struct Verifier {
    key: serenity::interactions_endpoint::Verifier,
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
        let key = serenity::interactions_endpoint::Verifier::try_new(bytes)
            .map_err(|_| "not an Ed25519 public key".to_owned())?;
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
        self.key
            .verify(sig_hex.trim(), ts_text, body)
            .map_err(|()| Forged::BadSignature)?;
        self.replays
            .first_use(&sig_hex.trim().to_ascii_lowercase(), ts, now)
    }
}

/// Discord's commands and buttons, however they arrive: over HTTP
/// (`DiscordEndpoint`) or over the gateway (`discord_gateway`).
pub struct DiscordApp {
    pub chat: Arc<ChatOps>,
    /// The bot's REST client (`rest_client`), which knows the application.
    pub http: Arc<Http>,
    /// How long to work before deferring; zero always defers.
    pub answer_within: StdDuration,
    /// Deferred answers and charts still being worked on.
    pub tasks: super::tasks::Tasks,
}

/// The first response to an interaction, and, when it was deferred, the
/// work whose reply is edited in after it.
pub struct Answered {
    pub response: CreateInteractionResponse,
    pub later: Option<tokio::task::JoinHandle<Reply>>,
    /// A chart that goes with an answer given at once.
    pub chart: Option<RunwayChart>,
}

/// Only the asker sees it.
fn private(content: String) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .ephemeral(true)
            .content(content),
    )
}

impl DiscordApp {
    /// Answers a command or a button press; `None` for another kind. The
    /// caller sends `response` first, then `follow_up`.
    pub async fn answer(&self, interaction: &Interaction) -> Option<Answered> {
        match interaction {
            Interaction::Command(c) => Some(self.command(c).await),
            Interaction::Component(c) => Some(self.component(c).await),
            _ => None,
        }
    }

    async fn command(&self, c: &CommandInteraction) -> Answered {
        let asker = asker(c.user.id.get());
        info!(user = %asker.user, "discord command");
        let chat = self.chat.clone();
        let text = command_text(&c.data.options);
        self.respond(async move { chat.handle(&asker, &text).await })
            .await
    }

    /// A button on an alert message. The presser is answered privately; when
    /// the alert changed, the notice it queued edits the message for everyone.
    async fn component(&self, c: &ComponentInteraction) -> Answered {
        let asker = asker(c.user.id.get());
        let data = c.data.custom_id.as_str();
        let at = MessageRef {
            channel: c.message.channel_id.to_string(),
            message: c.message.id.to_string(),
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
                response: private(format!(
                    "purser does not know the button {:?}.",
                    truncate(data.to_owned())
                )),
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
                response: private(render(&reply)),
                later: None,
                chart: reply.chart,
            },
            // Deferred: Discord shows "thinking…" until the original is edited.
            Answer::Later(work) => Answered {
                response: CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(true),
                ),
                later: Some(work),
                chart: None,
            },
        }
    }

    /// After the first response: edits a deferred answer in once its work
    /// is done, and sends the answer's chart, if any, as a private follow-up
    /// with the image attached. `token` is the interaction's.
    pub fn follow_up(&self, token: String, answered: Answered) {
        if answered.later.is_none() && answered.chart.is_none() {
            return;
        }
        let http = self.http.clone();
        self.tasks.spawn("discord follow-up", async move {
            let chart = match answered.later {
                None => answered.chart,
                Some(work) => {
                    let Ok(reply) = work.await else { return };
                    let edit = EditInteractionResponse::new().content(render(&reply));
                    if let Err(e) =
                        within("Discord: a late answer", edit.execute(&*http, &token)).await
                    {
                        warn!(error = %e, "could not deliver a late discord answer");
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
            let follow = CreateInteractionResponseFollowup::new()
                .ephemeral(true)
                .add_file(
                    CreateAttachment::bytes(png, "runway.png")
                        .description(format!("Runway of {}", chart.account)),
                );
            if let Err(e) = within(
                "Discord: a runway chart",
                follow.execute(&*http, (None, &token)),
            )
            .await
            {
                warn!(error = %e, "could not send a discord runway chart");
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
    let interaction = match serde_json::from_slice::<Interaction>(&body) {
        Ok(i) => i,
        Err(e) => {
            warn!(route = "/discord/interactions", error = %e, "a signed body that is not an interaction");
            return (StatusCode::BAD_REQUEST, "not a Discord interaction").into_response();
        }
    };
    if let Interaction::Ping(_) = interaction {
        return axum::Json(CreateInteractionResponse::Pong).into_response();
    }
    match discord.app.answer(&interaction).await {
        Some(answered) => {
            let response = axum::Json(&answered.response).into_response();
            discord
                .app
                .follow_up(interaction.token().to_owned(), answered);
            response
        }
        None => (StatusCode::BAD_REQUEST, "unknown interaction type").into_response(),
    }
}

/// Who sent an interaction (serenity fills `user` from `member` in a server).
fn asker(user: u64) -> Asker {
    Asker {
        platform: "discord".into(),
        user: user.to_string(),
    }
}

/// The `/purser` slash command, a subcommand per command with its arguments
/// as string options in usage order: what `register` publishes.
pub fn command_definition() -> CreateCommand {
    fn clip(text: &str) -> String {
        // Discord allows 100 characters; the summary's first clause suffices.
        super::cut(text.split(", e.g.").next().unwrap_or(text), 100)
    }
    Verb::ALL.iter().fold(
        CreateCommand::new("purser")
            .description("Balances, runway and alerts of the prepaid cloud accounts"),
        |command, verb| {
            let sub = verb.parameters().iter().fold(
                CreateCommandOption::new(
                    CommandOptionType::SubCommand,
                    verb.name(),
                    clip(verb.summary()),
                ),
                |sub, p| {
                    sub.add_sub_option(
                        CreateCommandOption::new(CommandOptionType::String, p.name, p.about)
                            .required(p.required),
                    )
                },
            );
            command.add_option(sub)
        },
    )
}

/// Publishes `/purser` for the application (a bulk overwrite of its global
/// commands: running it again changes nothing).
pub async fn register(http: &Http) -> Result<(), SendError> {
    within(
        "Discord: publishing /purser",
        serenity::all::Command::set_global_commands(http, vec![command_definition()]),
    )
    .await
    .map(|_| ())
}

/// `/purser balance account:acme` arrives as the command `purser` with a
/// subcommand `balance` and its options; they are joined, in the order the
/// command declares them, into the text every platform shares. A single
/// string option (`/purser text:balance acme`) passes through as is.
pub fn command_text(options: &[CommandDataOption]) -> String {
    fn walk(options: &[CommandDataOption], verb: Option<Verb>, out: &mut Vec<String>) {
        for o in options {
            let name = o.name.as_str();
            let value = match &o.value {
                // Subcommand groups and subcommands name themselves.
                CommandDataOptionValue::SubCommand(inner)
                | CommandDataOptionValue::SubCommandGroup(inner) => {
                    out.push(name.to_owned());
                    walk(inner, Verb::parse(name), out);
                    continue;
                }
                CommandDataOptionValue::String(s) => s.clone(),
                CommandDataOptionValue::Integer(i) => i.to_string(),
                CommandDataOptionValue::Boolean(b) => b.to_string(),
                CommandDataOptionValue::Number(n) => n.to_string(),
                _ => continue,
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
    let mut words = Vec::new();
    walk(options, None, &mut words);
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
    use serde_json::json;

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

    fn options(v: serde_json::Value) -> Vec<CommandDataOption> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn subcommands_and_options_become_the_shared_text() {
        let o = options(json!([
            {"name": "silence", "type": 1, "options": [
                {"name": "matchers", "type": 3, "value": "account=acme,rule=expiring"},
                {"name": "duration", "type": 3, "value": "24h"},
                {"name": "reason", "type": 3, "value": "renewal booked"}]}]));
        assert_eq!(
            command_text(&o),
            "silence account=acme,rule=expiring 24h renewal booked"
        );
        let o = options(json!([
            {"name": "expiring", "type": 1, "options": [{"name": "days", "type": 4, "value": 7}]}]));
        assert_eq!(command_text(&o), "expiring 7");
        assert_eq!(command_text(&[]), "");
    }

    #[test]
    fn the_published_command_fills_in_as_the_shared_language() {
        let def = serde_json::to_value(command_definition()).unwrap();
        assert_eq!(def["name"], "purser");
        let subs = def["options"].as_array().unwrap();
        assert_eq!(subs.len(), Verb::ALL.len());
        for sub in subs {
            assert_eq!(sub["type"], 1, "a subcommand");
            let d = sub["description"].as_str().unwrap();
            assert!((1..=100).contains(&d.chars().count()), "{d}");
            // Every option filled with a plausible value, in order, as Discord
            // sends them back: the text parses as that command.
            let filled: Vec<serde_json::Value> = sub["options"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| {
                    assert_eq!(o["type"], 3, "a string option");
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
                        "page" => "2",
                        other => panic!("no sample for {other}"),
                    };
                    json!({"type": 3, "name": o["name"], "value": value})
                })
                .collect();
            let o = options(json!([{"type": 1, "name": sub["name"], "options": filled}]));
            let text = command_text(&o);
            let parsed =
                crate::domain::command::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(parsed.verb().name(), sub["name"], "{text}");
        }
    }

    #[test]
    fn discord_errors_say_what_to_fix() {
        let what = "Discord: posting";
        assert_eq!(
            classify(what, 429, 0, "You are being rate limited."),
            SendError::rate_limited("Discord: posting: rate limited", StdDuration::from_secs(1))
        );
        assert!(classify(what, 404, 10008, "Unknown Message").refused_with(UNKNOWN_MESSAGE));
        assert!(matches!(
            classify(what, 502, -1, "not JSON"),
            SendError::Transient { .. }
        ));
        let hint = |status, code, message| match classify(what, status, code, message) {
            SendError::Refused { what, .. } => what,
            other => panic!("{other:?}"),
        };
        assert!(hint(403, 50013, "Missing Permissions").contains("Embed Links"));
        assert!(hint(404, 10003, "Unknown Channel").contains("channel id"));
        // A page to someone the bot cannot write to.
        assert!(
            hint(403, 50007, "Cannot send messages to this user")
                .contains("share a server with the bot")
        );
        assert!(hint(401, 0, "401: Unauthorized").contains("bot token"));
        // An answer serenity could not read is not shown as Discord's words.
        let m = hint(400, -1, "[Serenity] Could not decode json");
        assert!(
            m.contains("not Discord's JSON") && !m.contains("Serenity"),
            "{m}"
        );
    }

    #[test]
    fn a_proxy_must_serve_discords_api_path() {
        let token = Secret::from_value("t");
        let at = |u: &str| rest_client(&token, Some(1), &u.parse().unwrap());
        assert!(at(DEFAULT_API).unwrap().ratelimiter.is_some());
        let proxied = at("http://127.0.0.1:3000/api/v10").unwrap();
        assert!(proxied.ratelimiter.is_none(), "the proxy keeps the limits");
        assert_eq!(proxied.proxy.as_deref(), Some("http://127.0.0.1:3000"));
        assert!(
            at("http://127.0.0.1:3000/v9/")
                .unwrap_err()
                .contains("/api/v10")
        );
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
