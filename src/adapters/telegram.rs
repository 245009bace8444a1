//! Telegram: the Bot API through teloxide's client, and the bot's side of
//! the conversation. Updates arrive by long polling (`getUpdates`, no public
//! URL needed) or at `POST /telegram/webhook`, where the secret token
//! Telegram echoes in `X-Telegram-Bot-Api-Secret-Token` is checked before
//! anything is read. `/purser <command>` and the per-command shortcuts
//! (`/balance acme`) run as the sender; a press on an alert's button is
//! answered with a toast, and the notice it queues edits the message.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::Mac;
use teloxide_core::adaptors::throttle::{Limits, Throttle};
use teloxide_core::payloads::{
    AnswerCallbackQuerySetters, GetUpdatesSetters, SendMessageSetters, SendPhotoSetters,
    SetWebhookSetters,
};
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    AllowedUpdate, BotCommand, CallbackQuery, ChatId, InputFile, LinkPreviewOptions, Message,
    MessageId, ParseMode, Recipient, ReplyParameters, Update, UpdateKind,
};
use teloxide_core::{ApiError, Bot, RequestError};
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
const POLL_SECS: u32 = 30;
/// How long any other call may take.
const CALL_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// What keeps a bot's messages within Telegram's limits; it must run for
/// the bot to send (the composition root runs it, and notices if it ends).
pub type Pacing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The Bot API for one bot. Messages go through teloxide's `Throttle`, which
/// holds each within the limits Telegram documents (Bots FAQ): one message a
/// second and twenty a minute in a chat or group, thirty a second in all;
/// on a 429 it waits the `retry_after` Telegram gave, stops that chat
/// meanwhile, and sends again. Every sender through this client shares the
/// pace, so answers and alerts together stay within it. The token is in
/// every URL, so errors are told without them.
pub struct BotApi {
    sender: Throttle<Bot>,
    /// Long polls, on a client whose timeout outlasts `getUpdates`' wait.
    poller: Bot,
    /// A pace per chat 3 % under one message a second. `Throttle` keeps
    /// the limit exactly, measured as it sends, so the jitter between
    /// sending and arriving could put two in Telegram's second; and a
    /// 429 then counts against its minute, holding the chat back a minute.
    chats: Mutex<std::collections::HashMap<String, Arc<Pacer>>>,
}

/// One message a second in a chat, and 3 % more.
const PER_CHAT: StdDuration = StdDuration::from_millis(1_030);

/// Telegram's documented limits for one bot.
pub fn limits() -> Limits {
    Limits {
        messages_per_sec_chat: 1,
        messages_per_min_chat: 20,
        messages_per_min_channel_or_supergroup: 20,
        messages_per_sec_overall: 30,
    }
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
    /// The client for the bot with `token` at `api`, and the pacing that
    /// must run beside it.
    pub fn new(api: &reqwest::Url, token: &Secret) -> Result<(BotApi, Pacing), String> {
        if !token_shape_ok(token.expose()) {
            return Err("the bot token does not have a bot token's shape".to_owned());
        }
        if api.cannot_be_a_base() {
            return Err(format!("the Bot API URL {api} cannot have a path"));
        }
        // teloxide adds `/bot<token>/<method>` to the URL's path: a trailing
        // slash there would double.
        let mut base = api.clone();
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let client = |timeout: StdDuration| {
            reqwest::Client::builder()
                .connect_timeout(StdDuration::from_secs(5))
                .timeout(timeout)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| format!("the HTTP client for Telegram: {e}"))
        };
        let bot = |timeout| -> Result<Bot, String> {
            Ok(Bot::with_client(token.expose(), client(timeout)?).set_api_url(base.clone()))
        };
        let (sender, pacing) = Throttle::new(bot(CALL_TIMEOUT)?, limits());
        let poller = bot(StdDuration::from_secs(u64::from(POLL_SECS) + 15))?;
        Ok((
            BotApi {
                sender,
                poller,
                chats: Default::default(),
            },
            Box::pin(pacing),
        ))
    }

    /// Waits for `chat`'s turn.
    async fn pace(&self, chat: &Recipient) {
        let pacer = {
            let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
            chats
                .entry(chat.to_string())
                .or_insert_with(|| Arc::new(Pacer::every(PER_CHAT)))
                .clone()
        };
        pacer.wait().await;
    }

    /// Sends HTML `text` to `chat`, with its keyboard or in reply.
    pub async fn send_html(
        &self,
        chat: Recipient,
        text: String,
        keyboard: Option<teloxide_core::types::InlineKeyboardMarkup>,
        reply_to: Option<MessageId>,
    ) -> Result<Message, SendError> {
        self.pace(&chat).await;
        let mut request = self
            .sender
            .send_message(chat, text)
            .parse_mode(ParseMode::Html)
            .link_preview_options(no_preview());
        if let Some(k) = keyboard {
            request = request.reply_markup(k);
        }
        if let Some(to) = reply_to {
            request =
                request.reply_parameters(ReplyParameters::new(to).allow_sending_without_reply());
        }
        request.await.map_err(|e| failure("sendMessage", e))
    }

    /// Replaces a message's HTML text and keyboard.
    pub async fn edit_html(
        &self,
        chat: Recipient,
        message: MessageId,
        text: String,
        keyboard: teloxide_core::types::InlineKeyboardMarkup,
    ) -> Result<(), SendError> {
        use teloxide_core::payloads::EditMessageTextSetters;
        self.sender
            .edit_message_text(chat, message, text)
            .parse_mode(ParseMode::Html)
            .link_preview_options(no_preview())
            .reply_markup(keyboard)
            .await
            .map(|_| ())
            .map_err(|e| failure("editMessageText", e))
    }

    /// Sends a PNG to `chat` (`sendPhoto`), under the same pace as messages.
    pub async fn send_photo(
        &self,
        chat: Recipient,
        png: Vec<u8>,
        caption: &str,
        reply_to: Option<MessageId>,
    ) -> Result<(), SendError> {
        self.pace(&chat).await;
        let photo = InputFile::memory(png).file_name("runway.png");
        let mut request = self
            .sender
            .send_photo(chat, photo)
            .caption(caption.chars().take(CAPTION_CHARS).collect::<String>());
        if let Some(to) = reply_to {
            request =
                request.reply_parameters(ReplyParameters::new(to).allow_sending_without_reply());
        }
        request
            .await
            .map(|_| ())
            .map_err(|e| failure("sendPhoto", e))
    }

    /// Answers a button press: a toast, or a dialog the presser dismisses.
    async fn answer_press(
        &self,
        q: &CallbackQuery,
        text: String,
        alert: bool,
    ) -> Result<(), SendError> {
        self.sender
            .answer_callback_query(q.id.clone())
            .text(text.chars().take(200).collect::<String>())
            .show_alert(alert)
            .await
            .map(|_| ())
            .map_err(|e| failure("answerCallbackQuery", e))
    }
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// A chat as Telegram takes it: a number, or an `@username`.
pub fn recipient(chat: &str) -> Recipient {
    chat.parse::<i64>().map_or_else(
        |_| Recipient::ChannelUsername(chat.to_owned()),
        |id| Recipient::Id(ChatId(id)),
    )
}

/// Names for the Bot API refusals purser acts on.
pub mod refusal {
    pub const NOT_MODIFIED: &str = "message_not_modified";
    pub const TO_EDIT_NOT_FOUND: &str = "message_to_edit_not_found";
    pub const CANNOT_INITIATE: &str = "cant_initiate_conversation";
}

/// A failed call, as what waiting mends and what a person must fix. No
/// part of it comes from a URL (the token is in every one); a description
/// from the server is passed on, and redacted where it is stored or logged.
pub fn failure(method: &str, e: RequestError) -> SendError {
    let api = match e {
        RequestError::Api(api) => api,
        RequestError::RetryAfter(after) => {
            return SendError::rate_limited(
                format!("Telegram {method}: 429 Too Many Requests"),
                after.duration(),
            );
        }
        RequestError::MigrateToChatId(to) => {
            return SendError::refused(format!(
                "Telegram {method}: the group became a supergroup: set the output's chat id to {to}"
            ));
        }
        RequestError::Network(e) => {
            let why = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                // The sources name what went wrong without the URL.
                let mut why = "network error".to_owned();
                let mut source = std::error::Error::source(&*e);
                while let Some(s) = source {
                    why = format!("{why}: {s}");
                    source = s.source();
                }
                why
            };
            return SendError::transient(format!("Telegram {method}: {why}"));
        }
        RequestError::InvalidJson { .. } => {
            return SendError::transient(format!("Telegram {method}: unreadable answer"));
        }
        RequestError::Io(e) => return SendError::transient(format!("Telegram {method}: {e}")),
    };
    let description = api.to_string();
    let what = format!("Telegram {method}: {description}");
    let named = match api {
        ApiError::MessageNotModified => Some(refusal::NOT_MODIFIED),
        ApiError::MessageToEditNotFound => Some(refusal::TO_EDIT_NOT_FOUND),
        ApiError::CantInitiateConversation => Some(refusal::CANNOT_INITIATE),
        // Telegram's own trouble: its error pages carry these.
        ApiError::Unknown(ref text) if server_trouble(text) => {
            return SendError::transient(what);
        }
        _ => None,
    };
    let lower = description.to_ascii_lowercase();
    let hint = match api {
        ApiError::InvalidToken => "check the bot token (from @BotFather)",
        ApiError::ChatNotFound => {
            "check the output's chat id (a group's is negative, e.g. -1001234567890)"
        }
        ApiError::BotKicked
        | ApiError::BotKickedFromSupergroup
        | ApiError::BotKickedFromChannel => "add the bot to the group",
        ApiError::NotEnoughRightsToPostMessages => "let the bot send messages in the group",
        ApiError::CantGetUpdates => {
            "a webhook is set for this bot: choose mode = \"webhook\", or remove it (deleteWebhook) to poll"
        }
        ApiError::TerminatedByOtherGetUpdates => {
            "another program polls this bot's updates: run one purser per bot token"
        }
        _ if lower.contains("not a member") => "add the bot to the group",
        _ if lower.contains("not enough rights") => "let the bot send messages in the group",
        _ => "",
    };
    let what = if hint.is_empty() {
        what
    } else {
        format!("{what}: {hint}")
    };
    match named {
        Some(code) => SendError::refused_as(code, what),
        None => SendError::refused(what),
    }
}

fn server_trouble(text: &str) -> bool {
    [
        "Internal Server Error",
        "Bad Gateway",
        "Service Unavailable",
        "Gateway Timeout",
    ]
    .iter()
    .any(|t| text.contains(t))
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

/// The updates purser asks for.
const WANTED: [AllowedUpdate; 2] = [AllowedUpdate::Message, AllowedUpdate::CallbackQuery];

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
        match self.api.sender.get_me().await {
            Ok(me) => {
                let name = me.user.username.clone();
                info!(bot = name.as_deref().unwrap_or("?"), "telegram bot ready");
                *self.username.lock().unwrap_or_else(|p| p.into_inner()) = name;
            }
            Err(e) => warn!(error = %failure("getMe", e), "telegram getMe failed"),
        }
        let mut commands = vec![BotCommand::new(
            "purser",
            "any purser command: /purser help",
        )];
        commands.extend(
            Verb::ALL.iter().map(|v| {
                BotCommand::new(v.name(), v.summary().chars().take(256).collect::<String>())
            }),
        );
        if let Err(e) = self.api.sender.set_my_commands(commands).await {
            warn!(error = %failure("setMyCommands", e), "telegram setMyCommands failed; the command menu is not published");
        }
    }

    /// Handles one update, once. When the store cannot say whether it was
    /// handled, it is handled: answering twice beats dropping a command.
    pub async fn handle(&self, update: &Update) {
        let id = update.id.0;
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
        match &update.kind {
            UpdateKind::Message(m) => self.on_message(m).await,
            UpdateKind::CallbackQuery(q) => self.on_press(q).await,
            UpdateKind::Error(_) => {
                warn!(
                    update = id,
                    "telegram: an update purser could not read; ignored"
                );
            }
            _ => {}
        }
    }

    async fn on_message(&self, m: &Message) {
        let Some(text) = m.text() else {
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
            user: m
                .from
                .as_ref()
                .map(|u| u.id.0.to_string())
                .unwrap_or_default(),
        };
        info!(user = %asker.user, "telegram command");
        let reply = self.chat.handle(&asker, &command).await;
        let chat = Recipient::Id(m.chat.id);
        if let Err(e) = self
            .api
            .send_html(chat.clone(), render(&reply), None, Some(m.id))
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
                if let Err(e) = self.api.send_photo(chat, png, &caption, Some(m.id)).await {
                    warn!(error = %e, "could not send a telegram runway chart");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not draw a runway chart"),
        }
    }

    async fn on_press(&self, q: &CallbackQuery) {
        let asker = Asker {
            platform: "telegram".into(),
            user: q.from.id.0.to_string(),
        };
        let data = q.data.as_deref().unwrap_or_default();
        // The message the button is on (an inline message, which purser
        // never sends, would have none).
        let at = q.message.as_ref().map_or_else(
            || MessageRef {
                channel: String::new(),
                message: String::new(),
            },
            |m| MessageRef {
                channel: m.chat().id.0.to_string(),
                message: m.id().0.to_string(),
            },
        );
        if let Some((choice, request)) = Choice::parse_data(data) {
            info!(user = %asker.user, button = choice.id(), request = %request, "telegram request button");
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
                let pressed = self.chat.press(&asker, button, &Pick::of(on, at)).await;
                (pressed.reply.title, !pressed.changed)
            }
        };
        self.answer_press(q, text, alert).await;
    }

    /// Until answered, the presser's client shows a spinner. A refusal is
    /// a dialog they must dismiss; a success a passing toast.
    async fn answer_press(&self, q: &CallbackQuery, text: String, alert: bool) {
        if let Err(e) = self.api.answer_press(q, text, alert).await {
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
    let update = match serde_json::from_slice::<Update>(&body) {
        Ok(update) => update,
        Err(e) => {
            warn!(route = "/telegram/webhook", error = %e, "not a Telegram update");
            return (StatusCode::BAD_REQUEST, "not a Telegram update").into_response();
        }
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
    let url = reqwest::Url::parse(url)
        .map_err(|e| SendError::refused(format!("Telegram setWebhook: the URL {url}: {e}")))?;
    bot.api
        .sender
        .set_webhook(url)
        .secret_token(secret.expose())
        .allowed_updates(WANTED)
        .await
        .map(|_| ())
        .map_err(|e| failure("setWebhook", e))
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
        let mut call = bot
            .api
            .poller
            .get_updates()
            .timeout(POLL_SECS)
            .allowed_updates(WANTED);
        if let Some(o) = offset.and_then(|o| i32::try_from(o).ok()) {
            call = call.offset(o);
        }
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
                for u in &updates {
                    bot.handle(u).await;
                    // Stored after each one: a crash mid-batch resumes
                    // after the last update handled.
                    let next = i64::from(u.id.0) + 1;
                    offset = Some(offset.map_or(next, |o| o.max(next)));
                    if let Err(e) = bot.receipts.advance_cursor(OFFSET, next).await {
                        warn!(error = %e, "telegram: cannot store the polling offset");
                    }
                }
            }
            Err(e) => {
                let e = failure("getUpdates", e);
                failures = failures.saturating_add(1);
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
    let Some(offset) = offset.and_then(|o| i32::try_from(o).ok()) else {
        return;
    };
    let call = bot
        .api
        .poller
        .get_updates()
        .offset(offset)
        .timeout(0)
        .limit(1);
    if let Err(e) = call.await {
        warn!(error = %failure("getUpdates", e), "could not confirm the last telegram updates; they may be seen again after the restart");
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
    fn a_malformed_token_or_api_url_is_refused_before_any_call() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let token = |t: &str| Secret::from_value(t.to_owned());
        assert!(BotApi::new(&url("https://api.telegram.org/"), &token("123:AA-b_c")).is_ok());
        assert!(BotApi::new(&url("https://api.telegram.org/"), &token("123:a/b")).is_err());
        assert!(BotApi::new(&url("mailto:bot@example.com"), &token("123:AA")).is_err());
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
        let e = |api: ApiError| failure("sendMessage", RequestError::Api(api));
        assert!(e(ApiError::ChatNotFound).to_string().contains("chat id"));
        assert!(
            e(ApiError::BotKickedFromSupergroup)
                .to_string()
                .contains("add the bot")
        );
        assert!(e(ApiError::InvalidToken).to_string().contains("bot token"));
        assert!(e(ApiError::CantGetUpdates).to_string().contains("webhook"));
        assert!(
            e(ApiError::Unknown(
                "Forbidden: bot is not a member of the channel chat".into()
            ))
            .to_string()
            .contains("add the bot")
        );
        assert!(e(ApiError::MessageNotModified).refused_with(refusal::NOT_MODIFIED));
        assert!(e(ApiError::MessageToEditNotFound).refused_with(refusal::TO_EDIT_NOT_FOUND));
        assert!(e(ApiError::CantInitiateConversation).refused_with(refusal::CANNOT_INITIATE));
        // Telegram's own trouble is waited out; anything else is refused.
        assert!(e(ApiError::Unknown("Internal Server Error".into())).is_retryable());
        assert!(!e(ApiError::Unknown("Bad Request: something new".into())).is_retryable());
        assert!(matches!(
            failure("sendMessage", RequestError::RetryAfter(teloxide_core::types::Seconds::from_seconds(3))),
            SendError::RateLimited { retry_after, .. } if retry_after == StdDuration::from_secs(3)
        ));
        assert!(
            failure(
                "sendMessage",
                RequestError::MigrateToChatId(ChatId(-1_009_876))
            )
            .to_string()
            .contains("-1009876")
        );
    }
}
