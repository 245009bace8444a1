//! Telegram: the Bot API client, and the bot's side of the conversation.
//! Updates arrive by long polling (`getUpdates`, no public URL needed) or at
//! `POST /telegram/webhook`, where the secret token Telegram echoes in
//! `X-Telegram-Bot-Api-Secret-Token` is checked before anything is read.
//! `/purser <command>` and the per-command shortcuts (`/balance acme`) run as
//! the sender; a press on an alert's button is answered with a toast, and the
//! notice it queues edits the message.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::Mac;
use serde_json::{Value, json};
use tracing::{debug, error, info, warn};

use super::pace::Pacer;
use crate::domain::command::Verb;
use crate::engine::alert_view::Button;
use crate::engine::chatops::{Asker, ChatOps, Pick, Reply};
use crate::engine::request_view::Choice;
use crate::ports::{Clock, MessageRef, Receipts, SendError};
use crate::secret::Secret;

pub const DEFAULT_API: &str = "https://api.telegram.org/";
/// A message's text is at most 4,096 characters; a photo's caption 1,024.
const TEXT_CHARS: usize = 4096;
const CAPTION_CHARS: usize = 1024;
/// How long one `getUpdates` waits for something to happen.
const POLL_SECS: u64 = 30;

/// The Bot API for one bot. Its URL holds the token, so it is never printed.
/// Calls that send to a chat are paced per chat as Telegram allows a group:
/// one a second, twenty a minute; every sender through this client shares
/// the pace, so answers and alerts together stay within it.
pub struct BotApi {
    base: reqwest::Url,
    http: reqwest::Client,
    pacers: Mutex<std::collections::HashMap<String, Arc<Pacer>>>,
}

/// Whether `token` has a bot token's shape, `123456789:AA…` (never echoed).
pub fn token_shape_ok(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

impl BotApi {
    pub fn new(api: &reqwest::Url, token: &Secret) -> Result<BotApi, String> {
        // "./": the token's colon would otherwise read as a URL scheme.
        let base = api
            .join(&format!("./bot{}/", token.expose()))
            .map_err(|_| "the bot token does not fit in a URL".to_owned())?;
        Ok(BotApi {
            base,
            http: reqwest::Client::new(),
            pacers: Mutex::default(),
        })
    }

    fn pacer(&self, chat: &Value) -> Option<Arc<Pacer>> {
        let key = match chat {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut pacers = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            pacers
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Pacer::every_within(
                        StdDuration::from_secs(1),
                        20,
                        StdDuration::from_secs(60),
                    ))
                })
                .clone(),
        )
    }

    /// Calls `method`; returns its `result` when `ok`.
    pub async fn call(
        &self,
        method: &str,
        body: &Value,
        timeout: StdDuration,
    ) -> Result<Value, SendError> {
        let url = self
            .base
            .join(method)
            .map_err(|e| SendError::refused(format!("Telegram API URL: {e}")))?;
        if let Some(pacer) = self.pacer(&body["chat_id"]) {
            pacer.wait().await;
        }
        let request = self.http.post(url).json(body).timeout(timeout);
        Self::finish(method, request).await
    }

    /// Sends a PNG to `chat` (`sendPhoto`, multipart), under the same pace as
    /// messages.
    pub async fn send_photo(
        &self,
        chat: &Value,
        png: Vec<u8>,
        caption: &str,
        reply_to: &Value,
    ) -> Result<Value, SendError> {
        let url = self
            .base
            .join("sendPhoto")
            .map_err(|e| SendError::refused(format!("Telegram API URL: {e}")))?;
        if let Some(pacer) = self.pacer(chat) {
            pacer.wait().await;
        }
        let chat_id = match chat {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let photo = reqwest::multipart::Part::bytes(png)
            .file_name("runway.png")
            .mime_str("image/png")
            .map_err(|e| SendError::refused(format!("Telegram sendPhoto: {e}")))?;
        let mut form = reqwest::multipart::Form::new()
            .text("chat_id", chat_id)
            .text(
                "caption",
                caption.chars().take(CAPTION_CHARS).collect::<String>(),
            )
            .part("photo", photo);
        if !reply_to.is_null() {
            form = form.text(
                "reply_parameters",
                json!({"message_id": reply_to, "allow_sending_without_reply": true}).to_string(),
            );
        }
        let request = self
            .http
            .post(url)
            .multipart(form)
            .timeout(StdDuration::from_secs(30));
        Self::finish("sendPhoto", request).await
    }

    async fn finish(method: &str, request: reqwest::RequestBuilder) -> Result<Value, SendError> {
        let response = request
            .send()
            .await
            // without_url: the URL carries the token.
            .map_err(|e| SendError::transient(format!("Telegram {method}: {}", e.without_url())))?;
        let status = response.status();
        let v: Value = match response.json().await {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(SendError::transient(format!(
                    "Telegram {method}: HTTP {status}"
                )));
            }
            Err(e) => {
                return Err(SendError::transient(format!(
                    "Telegram {method}: unreadable answer (HTTP {status}): {}",
                    e.without_url()
                )));
            }
        };
        if v["ok"].as_bool() == Some(true) {
            return Ok(v["result"].clone());
        }
        Err(classify(method, &v))
    }
}

/// Names for the Bot API refusals purser acts on (the API gives only a
/// number and a sentence; these are the sentences' stable parts).
pub mod refusal {
    pub const NOT_MODIFIED: &str = "message_not_modified";
    pub const TO_EDIT_NOT_FOUND: &str = "message_to_edit_not_found";
    pub const CANNOT_INITIATE: &str = "cant_initiate_conversation";
}

/// The Bot API's errors: what waiting mends, and what a person must fix.
pub fn classify(method: &str, v: &Value) -> SendError {
    let code = v["error_code"].as_u64().unwrap_or(0);
    let description = v["description"].as_str().unwrap_or("no description given");
    let what = format!("Telegram {method}: {code} {description}");
    if code == 429 {
        let after = v["parameters"]["retry_after"]
            .as_u64()
            .map_or(StdDuration::from_secs(5), StdDuration::from_secs);
        return SendError::rate_limited(what, after);
    }
    if code >= 500 || code == 0 {
        return SendError::transient(what);
    }
    let lower = description.to_ascii_lowercase();
    let named = [
        ("message is not modified", refusal::NOT_MODIFIED),
        ("message to edit not found", refusal::TO_EDIT_NOT_FOUND),
        ("can't initiate conversation", refusal::CANNOT_INITIATE),
    ]
    .into_iter()
    .find(|(text, _)| lower.contains(text))
    .map(|(_, name)| name.to_owned());
    // A wrong token is answered 401, or 404 "Not Found" (no such bot).
    let hint = if code == 401 || (code == 404 && lower == "not found") {
        "check the bot token (from @BotFather)"
    } else if lower.contains("chat not found") {
        "check the output's chat id (a group's is negative, e.g. -1001234567890)"
    } else if lower.contains("kicked") || lower.contains("not a member") {
        "add the bot to the group"
    } else if lower.contains("not enough rights") {
        "let the bot send messages in the group"
    } else if lower.contains("webhook is active") || code == 409 {
        "a webhook is set for this bot: choose mode = \"webhook\", or remove it (deleteWebhook) to poll"
    } else {
        ""
    };
    SendError::Refused {
        code: named,
        what: if hint.is_empty() {
            what
        } else {
            format!("{what}: {hint}")
        },
    }
}

/// The bot: turns updates into commands and button presses.
pub struct TelegramBot {
    pub api: Arc<BotApi>,
    pub chat: Arc<ChatOps>,
    /// The bot's @username, once `getMe` has said it: commands addressed to
    /// another bot in the same group are not ours.
    pub username: Mutex<Option<String>>,
    /// Update ids handled, and where polling read up to: Telegram
    /// redelivers a webhook update it did not see answered, and a restart
    /// must neither replay a batch nor skip one.
    receipts: Arc<dyn Receipts>,
    clock: Arc<dyn Clock>,
    /// Webhook updates being handled after Telegram was answered.
    tasks: super::tasks::Tasks,
}

/// The receipts' names for update ids and for the polling offset.
const UPDATES: &str = "telegram-update";
const OFFSET: &str = "telegram-offset";

/// Telegram keeps an update for 24 hours; its id is remembered as long.
const REMEMBER: chrono::Duration = chrono::Duration::hours(24);

impl TelegramBot {
    pub fn new(
        api: Arc<BotApi>,
        chat: Arc<ChatOps>,
        receipts: Arc<dyn Receipts>,
        clock: Arc<dyn Clock>,
        tasks: super::tasks::Tasks,
    ) -> TelegramBot {
        TelegramBot {
            api,
            chat,
            username: Mutex::new(None),
            receipts,
            clock,
            tasks,
        }
    }

    /// Learns the bot's name and publishes the command menu; a failure is
    /// logged, the bot works without them.
    pub async fn introduce(&self) {
        match self
            .api
            .call("getMe", &json!({}), StdDuration::from_secs(10))
            .await
        {
            Ok(me) => {
                let name = me["username"].as_str().map(str::to_owned);
                info!(bot = name.as_deref().unwrap_or("?"), "telegram bot ready");
                *self.username.lock().unwrap_or_else(|p| p.into_inner()) = name;
            }
            Err(e) => warn!(error = %e, "telegram getMe failed"),
        }
        let mut commands =
            vec![json!({"command": "purser", "description": "any purser command: /purser help"})];
        commands.extend(Verb::ALL.iter().map(|v| {
            json!({"command": v.name(), "description": v.summary().chars().take(256).collect::<String>()})
        }));
        if let Err(e) = self
            .api
            .call(
                "setMyCommands",
                &json!({"commands": commands}),
                StdDuration::from_secs(10),
            )
            .await
        {
            warn!(error = %e, "telegram setMyCommands failed; the command menu is not published");
        }
    }

    /// Handles one update, once. When the store cannot say whether it was
    /// handled, it is handled: answering twice beats dropping a command.
    pub async fn handle(&self, update: &Value) {
        if let Some(id) = update["update_id"].as_i64() {
            let now = self.clock.now();
            match self
                .receipts
                .first_receipt(UPDATES, &id.to_string(), now, REMEMBER)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    debug!(
                        update = id,
                        "telegram update seen before; not handled again"
                    );
                    return;
                }
                Err(e) => {
                    error!(error = %e, update = id, "telegram: cannot record the update; handling it");
                }
            }
        }
        if update["message"].is_object() {
            self.on_message(&update["message"]).await;
        } else if update["callback_query"].is_object() {
            self.on_press(&update["callback_query"]).await;
        }
    }

    async fn on_message(&self, m: &Value) {
        let Some(text) = m["text"].as_str() else {
            return;
        };
        let username = self
            .username
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(command) = command_text(text, username.as_deref()) else {
            return;
        };
        let asker = Asker {
            platform: "telegram".into(),
            user: m["from"]["id"]
                .as_i64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        };
        info!(user = %asker.user, "telegram command");
        let reply = self.chat.handle(&asker, &command).await;
        let body = json!({
            "chat_id": m["chat"]["id"],
            "text": render(&reply),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
            "reply_parameters": {"message_id": m["message_id"], "allow_sending_without_reply": true},
        });
        if let Err(e) = self
            .api
            .call("sendMessage", &body, StdDuration::from_secs(10))
            .await
        {
            warn!(error = %e, "could not answer a telegram command");
            return;
        }
        // The runway chart, when the answer has one, follows as a photo.
        let Some(chart) = &reply.chart else { return };
        match super::chart::runway_png(chart) {
            Ok(Some(png)) => {
                let caption = format!("Runway of {}", chart.account);
                if let Err(e) = self
                    .api
                    .send_photo(&m["chat"]["id"], png, &caption, &m["message_id"])
                    .await
                {
                    warn!(error = %e, "could not send a telegram runway chart");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not draw a runway chart"),
        }
    }

    async fn on_press(&self, q: &Value) {
        let asker = Asker {
            platform: "telegram".into(),
            user: q["from"]["id"]
                .as_i64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        };
        let data = q["data"].as_str().unwrap_or_default();
        let number = |v: &Value| v.as_i64().map(|n| n.to_string()).unwrap_or_default();
        if let Some((choice, request)) = Choice::parse_data(data) {
            info!(user = %asker.user, button = choice.id(), request = %request, "telegram request button");
            let at = MessageRef {
                channel: number(&q["message"]["chat"]["id"]),
                message: number(&q["message"]["message_id"]),
            };
            let reply = self.chat.choose(&asker, choice, request, Some(&at)).await;
            // The card is redrawn by the request board; the presser gets the
            // outcome, as a dialog when nothing was done.
            let failed = reply.kind != crate::engine::chatops::ReplyKind::Done;
            return self.answer_press(q, reply.text(), failed).await;
        }
        let (text, alert) = match Button::parse_data(data) {
            None => (format!("purser does not know the button {data:?}."), true),
            Some((button, on)) => {
                info!(user = %asker.user, button = button.id(), "telegram button");
                let at = MessageRef {
                    channel: number(&q["message"]["chat"]["id"]),
                    message: number(&q["message"]["message_id"]),
                };
                let pressed = self.chat.press(&asker, button, &Pick::of(on, at)).await;
                (pressed.reply.title, !pressed.changed)
            }
        };
        self.answer_press(q, text, alert).await;
    }

    /// Until answered, the presser's client shows a spinner. A refusal is
    /// a dialog they must dismiss; a success a passing toast.
    async fn answer_press(&self, q: &Value, text: String, alert: bool) {
        let body = json!({
            "callback_query_id": q["id"],
            "text": text.chars().take(200).collect::<String>(),
            "show_alert": alert,
        });
        if let Err(e) = self
            .api
            .call("answerCallbackQuery", &body, StdDuration::from_secs(10))
            .await
        {
            warn!(error = %e, "could not answer a telegram button press");
        }
    }
}

/// The command in a message: `/purser balance acme`, `/balance acme`,
/// `/balance@purser_bot acme`. Anything else, or a command for another bot,
/// is not for purser.
pub fn command_text(text: &str, username: Option<&str>) -> Option<String> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (head, args) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(h, a)| (h, a.trim()));
    let (name, to) = head
        .split_once('@')
        .map_or((head, None), |(n, b)| (n, Some(b)));
    if let (Some(to), Some(me)) = (to, username)
        && !to.eq_ignore_ascii_case(me)
    {
        return None;
    }
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "purser" => Some(args.to_owned()),
        // What a new user presses first.
        "start" => Some("help".to_owned()),
        _ if Verb::parse(&name).is_some() => Some(format!("{name} {args}").trim().to_owned()),
        _ => None,
    }
}

/// HTML text: only `<`, `>` and `&` need escaping.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A reply as Telegram HTML: the title in bold, the lines preformatted (they
/// line up on a phone), within 4,096 characters.
pub fn render(reply: &Reply) -> String {
    let icon = reply.kind.icon();
    let mut out = format!("{icon}<b>{}</b>", escape(&reply.title));
    if reply.lines.is_empty() {
        return out;
    }
    out.push_str("\n<pre>");
    let budget = TEXT_CHARS - 60;
    let mut used = out.chars().count();
    let mut shown = 0;
    for l in &reply.lines {
        let l = escape(l);
        let n = l.chars().count() + 1;
        if used + n > budget {
            break;
        }
        if shown > 0 {
            out.push('\n');
        }
        out.push_str(&l);
        used += n;
        shown += 1;
    }
    out.push_str("</pre>");
    if shown < reply.lines.len() {
        out.push_str(&format!(
            "\n…and {} more; narrow the question",
            reply.lines.len() - shown
        ));
    }
    out
}

/// The webhook's state: the bot, and the secret Telegram was given.
pub struct TelegramWebhook {
    pub bot: Arc<TelegramBot>,
    pub secret: Secret,
}

/// `POST /telegram/webhook`.
pub async fn webhook(
    State(hook): State<Arc<TelegramWebhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, hook.secret.expose().as_bytes()) {
        let why = if given.is_empty() {
            "no X-Telegram-Bot-Api-Secret-Token header"
        } else {
            "the secret token does not match"
        };
        warn!(
            route = "/telegram/webhook",
            why, "refused a request not from Telegram"
        );
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(update) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    // Answered at once: Telegram waits for nothing, and retries what it
    // thinks failed (the update id keeps a retry from running twice).
    let bot = hook.bot.clone();
    hook.bot
        .tasks
        .spawn("telegram update", async move { bot.handle(&update).await });
    StatusCode::OK.into_response()
}

/// Compares in constant time, so timing does not reveal the secret.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    // Equal-length MACs of both, compared by the hmac crate in constant time.
    let key = b"purser-telegram-secret-compare";
    let mac = |b: &[u8]| {
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(b);
        m
    };
    let tag = mac(expected).finalize().into_bytes();
    mac(given).verify_slice(&tag).is_ok()
}

/// Registers the webhook with Telegram (with its secret), so updates come to
/// `url` instead of waiting to be polled.
pub async fn set_webhook(bot: &TelegramBot, url: &str, secret: &Secret) -> Result<(), SendError> {
    bot.api
        .call(
            "setWebhook",
            &json!({"url": url, "secret_token": secret.expose(),
                    "allowed_updates": ["message", "callback_query"]}),
            StdDuration::from_secs(10),
        )
        .await
        .map(|_| ())
}

/// Long polling until `stop`: each `getUpdates` confirms the ones before it.
pub async fn poll(bot: Arc<TelegramBot>, mut stop: tokio::sync::watch::Receiver<bool>) {
    bot.introduce().await;
    let mut offset: Option<i64> = bot.receipts.cursor(OFFSET).await.unwrap_or_else(|e| {
        error!(error = %e, "telegram: cannot read where polling stopped; Telegram's own offset is used");
        None
    });
    let mut failures: u32 = 0;
    loop {
        let mut body =
            json!({"timeout": POLL_SECS, "allowed_updates": ["message", "callback_query"]});
        if let Some(o) = offset {
            body["offset"] = json!(o);
        }
        let call = bot
            .api
            .call("getUpdates", &body, StdDuration::from_secs(POLL_SECS + 15));
        let got = tokio::select! {
            got = call => Some(got),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(got) = got else {
            confirm(&bot, offset).await;
            return;
        };
        match got {
            Ok(updates) => {
                failures = 0;
                for u in updates.as_array().into_iter().flatten() {
                    bot.handle(u).await;
                    // Stored after each one: a crash mid-batch resumes
                    // after the last update handled.
                    if let Some(next) = u["update_id"].as_i64().and_then(|id| id.checked_add(1)) {
                        offset = Some(offset.map_or(next, |o| o.max(next)));
                        if let Err(e) = bot.receipts.advance_cursor(OFFSET, next).await {
                            warn!(error = %e, "telegram: cannot store the polling offset");
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    SendError::Refused { .. } => StdDuration::from_secs(60),
                    SendError::RateLimited { retry_after, .. } => *retry_after,
                    SendError::Transient { .. } => {
                        StdDuration::from_secs((1u64 << failures.min(6)).min(60))
                    }
                };
                warn!(error = %e, retry_in_s = wait.as_secs(), "telegram getUpdates failed");
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopped {
                    confirm(&bot, offset).await;
                    return;
                }
            }
        }
    }
}

/// Tells Telegram, on the way out, which updates were handled, so that a
/// restart does not see them again (the next poll would have said it).
async fn confirm(bot: &TelegramBot, offset: Option<i64>) {
    let Some(offset) = offset else { return };
    let body = json!({"offset": offset, "timeout": 0, "limit": 1});
    if let Err(e) = bot
        .api
        .call("getUpdates", &body, StdDuration::from_secs(5))
        .await
    {
        warn!(error = %e, "could not confirm the last telegram updates; they may be seen again after the restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chatops::ReplyKind;

    #[test]
    fn commands_and_shortcuts_become_the_shared_text() {
        let me = Some("purser_bot");
        for (text, want) in [
            ("/purser balance acme", Some("balance acme")),
            ("/purser", Some("")),
            ("/balance acme", Some("balance acme")),
            ("/Balance@purser_bot  acme ", Some("balance acme")),
            ("/runway", Some("runway")),
            ("/start", Some("help")),
            (
                "/silence account=acme 1h wire sent",
                Some("silence account=acme 1h wire sent"),
            ),
            ("/balance@other_bot acme", None),
            ("/weather", None),
            ("balance acme", None),
            ("", None),
        ] {
            assert_eq!(command_text(text, me).as_deref(), want, "{text:?}");
        }
        // Before getMe has answered, a command for any name is taken.
        assert_eq!(
            command_text("/alerts@whoever", None).as_deref(),
            Some("alerts")
        );
    }

    #[test]
    fn replies_escape_html_and_fit() {
        let reply = Reply {
            kind: ReplyKind::Refused,
            title: "No account <b>&</b>".into(),
            lines: (0..1000).map(|i| format!("row {i} <x> & y")).collect(),
            chart: None,
        };
        let r = render(&reply);
        assert!(
            r.starts_with(
                "⛔ <b>No account &lt;b&gt;&amp;&lt;/b&gt;</b>\n<pre>row 0 &lt;x&gt; &amp; y\n"
            ),
            "{r}"
        );
        assert!(r.chars().count() <= TEXT_CHARS);
        assert!(r.contains("</pre>\n…and "), "{r}");
    }

    #[test]
    fn the_token_goes_into_the_path() {
        let api = BotApi::new(
            &reqwest::Url::parse("https://api.telegram.org/").unwrap(),
            &Secret::from_value("123:AA-b_c".to_owned()),
        )
        .unwrap();
        assert_eq!(
            api.base.join("getMe").unwrap().as_str(),
            "https://api.telegram.org/bot123:AA-b_c/getMe"
        );
        assert!(token_shape_ok("123456789:AAH-x_9"));
        for bad in ["", "123", ":abc", "12a:abc", "123:", "123:a/b", "123:a b"] {
            assert!(!token_shape_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret_token-1", b"s3cret_token-1"));
        assert!(!same_secret(b"s3cret_token-", b"s3cret_token-1"));
        assert!(!same_secret(b"", b"s3cret_token-1"));
        assert!(!same_secret(b"s3cret_token-2", b"s3cret_token-1"));
    }

    #[test]
    fn bot_api_errors_say_what_to_fix() {
        let e = |v: Value| classify("sendMessage", &v).to_string();
        assert!(
            e(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}))
                .contains("chat id")
        );
        assert!(
            e(json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was kicked from the group chat"}))
                .contains("add the bot")
        );
        assert!(
            e(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}))
                .contains("bot token")
        );
        assert!(matches!(
            classify(
                "sendMessage",
                &json!({"ok": false, "error_code": 429,
                "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}})
            ),
            SendError::RateLimited { retry_after, .. } if retry_after == StdDuration::from_secs(3)
        ));
        assert!(
            classify(
                "editMessageText",
                &json!({"ok": false, "error_code": 400,
                "description": "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"})
            )
            .refused_with(refusal::NOT_MODIFIED)
        );
    }
}
