//! Telegram against a loopback Bot API: updates by long polling (with
//! offsets confirming what was handled) and by the webhook (secret token
//! checked first); alerts posted with inline keyboards, buttons answered,
//! messages edited when acknowledged, silenced and resolved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use chrono::Duration;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{ANA_ON_CALL, SEVERAL, Setup, TestApp, World};

const TOKEN: &str = "123456789:AAtest-token_for-purser";
const GROUP: i64 = -1_001_234_567_890;
const ANA: i64 = 7_001;
const VIC: i64 = 7_002;

#[derive(Default)]
struct BotApi {
    /// (method, body) of every call, in order.
    calls: Mutex<Vec<(String, Value)>>,
    /// Updates not yet confirmed by an offset.
    updates: Mutex<VecDeque<Value>>,
    next_update: Mutex<i64>,
    next_message: Mutex<i64>,
    changed: Notify,
}

impl BotApi {
    fn push(&self, kind: &str, payload: Value) {
        let mut n = self.next_update.lock().unwrap();
        *n += 1;
        self.updates
            .lock()
            .unwrap()
            .push_back(json!({"update_id": 500 + *n, kind: payload}));
        self.changed.notify_waiters();
    }

    fn calls(&self, method: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, b)| b.clone())
            .collect()
    }

    async fn wait(&self, method: &str, n: usize) -> Vec<Value> {
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let changed = self.changed.notified();
                let got = self.calls(method);
                if got.len() >= n {
                    return got;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: fewer than {n} calls"))
    }
}

fn message(from: i64, text: &str, id: i64) -> Value {
    json!({"message_id": id, "date": 1_700_000_000, "text": text,
           "from": {"id": from, "is_bot": false, "first_name": "x"},
           "chat": {"id": GROUP, "type": "supergroup", "title": "ops"}})
}

/// A chat as Telegram describes it: a group's id is negative, a person's
/// private chat with the bot has theirs.
fn chat(id: &Value) -> Value {
    if id.as_i64().is_some_and(|id| id > 0) {
        json!({"id": id, "type": "private", "first_name": "x"})
    } else {
        json!({"id": id, "type": "supergroup", "title": "ops"})
    }
}

/// The bot, as Telegram describes it in a message's `from`.
fn the_bot() -> Value {
    json!({"id": 42, "is_bot": true, "first_name": "purser", "username": "purser_bot"})
}

/// A press on a button of the bot's message `message_id`, as Telegram
/// delivers it: the message whole, keyboard included.
fn press(from: i64, data: &str, message_id: i64) -> Value {
    json!({"id": format!("cb{from}{data}"), "from": {"id": from, "is_bot": false, "first_name": "x"},
           "chat_instance": "1", "data": data,
           "message": {"message_id": message_id, "date": 1_700_000_000, "from": the_bot(),
                       "chat": {"id": GROUP, "type": "supergroup", "title": "ops"},
                       "text": "🟠 low_balance · acme",
                       "reply_markup": {"inline_keyboard": [[{"text": "Acknowledge", "callback_data": data}]]}}})
}

const METHODS: [&str; 9] = [
    "getMe",
    "getUpdates",
    "setWebhook",
    "setMyCommands",
    "sendMessage",
    "sendPhoto",
    "editMessageText",
    "answerCallbackQuery",
    "deleteWebhook",
];

/// A `multipart/form-data` body as the Bot API reads one: each field a
/// string (JSON-serialized objects parsed back), a file part as its name,
/// size and whether it is a PNG; a field `attach://<name>` refers to the
/// file part `<name>`.
fn form(content_type: &str, body: &[u8]) -> Option<Value> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    let mut files = serde_json::Map::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let attr = |name: &str| {
            head.split(&format!("{name}=\""))
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        };
        let name = attr("name")?;
        match attr("filename") {
            Some(filename) => {
                let start = body
                    .windows(head.len())
                    .position(|w| w == head.as_bytes())?;
                let png = body[start + head.len() + 4..].starts_with(b"\x89PNG\r\n");
                files.insert(name, json!({"filename": filename, "png": png}));
            }
            None => {
                let parsed = serde_json::from_str::<Value>(value)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array());
                fields.insert(name, parsed.unwrap_or_else(|| json!(value)));
            }
        }
    }
    for v in fields.values_mut() {
        if let Some(file) = v.as_str().and_then(|s| s.strip_prefix("attach://")) {
            *v = files.get(file).cloned().unwrap_or(Value::Null);
        }
    }
    Some(Value::Object(fields))
}

async fn method(
    State(api): State<Arc<BotApi>>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let path = uri.path().to_owned();
    let Some(method) = path.strip_prefix(&format!("/bot{TOKEN}/")) else {
        return axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found"}));
    };
    // Method names are case-insensitive; the calls are kept by the
    // documentation's spelling.
    let method = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or(method);
    // JSON, or a multipart form (any method may come as either).
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body: Value = if content_type.starts_with("multipart/form-data") {
        form(content_type, &body).unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    if method == "getUpdates" {
        // Confirm what the offset says was handled, then wait for news as the
        // real server does.
        api.calls
            .lock()
            .unwrap()
            .push((method.to_owned(), body.clone()));
        api.changed.notify_waiters();
        if let Some(offset) = body["offset"].as_i64() {
            api.updates
                .lock()
                .unwrap()
                .retain(|u| u["update_id"].as_i64().unwrap() >= offset);
        }
        let wait = body["timeout"].as_u64().unwrap_or(0).min(25);
        let found = tokio::time::timeout(std::time::Duration::from_secs(wait), async {
            loop {
                let changed = api.changed.notified();
                let pending: Vec<Value> = api.updates.lock().unwrap().iter().cloned().collect();
                if !pending.is_empty() {
                    return pending;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_default();
        return axum::Json(json!({"ok": true, "result": found}));
    }
    let result = match method {
        "getMe" => {
            let mut me = the_bot();
            for (k, v) in [
                ("can_join_groups", true),
                ("can_read_all_group_messages", false),
                ("supports_inline_queries", false),
                ("can_connect_to_business", false),
                ("has_main_web_app", false),
            ] {
                me[k] = json!(v);
            }
            me
        }
        // The Message sent, or edited, as the Bot API returns it.
        "sendMessage" => {
            let mut n = api.next_message.lock().unwrap();
            *n += 1;
            json!({"message_id": 100 + *n, "date": 1_700_000_000, "from": the_bot(),
                   "text": body["text"],
                   "chat": chat(&body["chat_id"])})
        }
        // Photos are numbered apart, so that the tests can tell the
        // messages' ids by their order.
        "sendPhoto" => {
            let n = api.calls("sendPhoto").len() as i64;
            json!({"message_id": 900 + n, "date": 1_700_000_000, "from": the_bot(),
                   "photo": [{"file_id": "AgAC-runway", "file_unique_id": "AQAD-runway",
                              "width": 720, "height": 405, "file_size": 24_000}],
                   "caption": "Runway", "chat": chat(&json!(GROUP))})
        }
        "editMessageText" => json!({"message_id": body["message_id"], "date": 1_700_000_000,
                                    "edit_date": 1_700_000_100, "from": the_bot(), "text": body["text"],
                                    "chat": chat(&body["chat_id"])}),
        _ => json!(true),
    };
    api.calls.lock().unwrap().push((method.to_owned(), body));
    api.changed.notify_waiters();
    axum::Json(json!({"ok": true, "result": result}))
}

async fn start_api() -> (Arc<BotApi>, std::net::SocketAddr) {
    let api = Arc::new(BotApi::default());
    let app = Router::new().fallback(method).with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, addr)
}

async fn running(telegram: &str, addr: std::net::SocketAddr) -> (World, TestApp) {
    let world = World::low_on_money(&config(telegram, addr)).await;
    start(world).await
}

fn config(telegram: &str, addr: std::net::SocketAddr) -> String {
    format!(
        r#"
{telegram}
token = "file:telegram.token"
api = "http://{addr}/"

[[people]]
name = "ana"
role = "requester"
telegram = "{ANA}"

[[people]]
name = "vic"
role = "viewer"
telegram = "{VIC}"

[[outputs]]
name = "ops"
kind = "telegram"
channel = "{GROUP}"
token = "file:telegram.token"
api = "http://{addr}/"
"#
    )
}

async fn start(world: World) -> (World, TestApp) {
    std::fs::write(world.dir.path().join("telegram.token"), TOKEN).unwrap();
    std::fs::write(world.dir.path().join("telegram.secret"), "hook_Secret-1").unwrap();
    let app = world.start().await;
    app.settle().await;
    (world, app)
}

/// The alert messages (the ones with a keyboard), as opposed to answers.
fn alert_posts(api: &BotApi) -> Vec<Value> {
    api.calls("sendMessage")
        .into_iter()
        .filter(|b| b["reply_markup"].is_object())
        .collect()
}

#[tokio::test]
async fn polling_alert_buttons_commands_and_edits() {
    let (api, addr) = start_api().await;
    let (world, app) = running("[telegram]", addr).await;

    // Introduced itself: name learned, command menu published.
    api.wait("getMe", 1).await;
    let menu = api.wait("setMyCommands", 1).await;
    assert!(menu[0]["commands"].to_string().contains("\"balance\""));

    // The alert, posted once, with its keyboard.
    api.wait("sendMessage", 1).await;
    let posted = alert_posts(&api);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["chat_id"], GROUP);
    assert_eq!(posted[0]["parse_mode"], "HTML");
    assert!(
        posted[0]["text"]
            .as_str()
            .unwrap()
            .contains("low_balance · acme</b>"),
        "{}",
        posted[0]["text"]
    );
    let keyboard = posted[0]["reply_markup"]["inline_keyboard"].clone();
    let ack = keyboard[0][0]["callback_data"].as_str().unwrap().to_owned();
    let silence = keyboard[1][0]["callback_data"].as_str().unwrap().to_owned();
    assert!(
        ack.starts_with("ack:") && silence.starts_with("silence_24h:"),
        "{keyboard}"
    );
    let alert_message = 101;

    // Money running out: the runway chart follows, replying to the alert.
    let photos = api.wait("sendPhoto", 1).await;
    assert_eq!(photos[0]["caption"], "Runway of acme");
    assert_eq!(photos[0]["photo"]["filename"], "runway.png");
    assert_eq!(photos[0]["photo"]["png"], true);
    assert_eq!(photos[0]["reply_parameters"]["message_id"], 101);

    // A viewer's press: a dialog that says no; nothing changes.
    api.push("callback_query", press(VIC, &ack, alert_message));
    let answers = api.wait("answerCallbackQuery", 1).await;
    assert_eq!(answers[0]["show_alert"], true);
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .contains("needs the requester role")
    );
    assert!(
        app.store.all_open_alerts().await.unwrap()[0]
            .acknowledged
            .is_none()
    );

    // A button that is not purser's (forged or stale data): a dialog, nothing changes.
    api.push("callback_query", press(ANA, "explode:00", alert_message));
    let answers = api.wait("answerCallbackQuery", 2).await;
    assert_eq!(answers[1]["show_alert"], true);
    assert!(
        answers[1]["text"]
            .as_str()
            .unwrap()
            .contains("does not know the button")
    );
    // A message that is not a command (or not text) is not answered.
    api.push("message", message(ANA, "thanks, purser", 50));
    api.push(
        "message",
        json!({"message_id": 51, "date": 1_700_000_000,
        "from": {"id": ANA, "is_bot": false, "first_name": "x"},
        "chat": {"id": GROUP, "type": "supergroup"}, "photo": []}),
    );

    // The requester's: a toast, the ack recorded, the message edited.
    api.push("callback_query", press(ANA, &ack, alert_message));
    let answers = api.wait("answerCallbackQuery", 3).await;
    assert_eq!(answers[2]["show_alert"], false);
    assert!(
        answers[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged")
    );
    let edits = api.wait("editMessageText", 1).await;
    assert_eq!(edits[0]["message_id"], alert_message);
    assert!(
        edits[0]["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by ana")
    );
    assert!(!edits[0]["reply_markup"].to_string().contains("ack:"));
    assert_eq!(
        app.store.all_open_alerts().await.unwrap()[0]
            .acknowledged
            .as_ref()
            .unwrap()
            .by,
        "ana"
    );

    // Commands, as /purser and as shortcuts; one for another bot is ignored.
    api.push("message", message(ANA, "/balance@other_bot acme", 1));
    api.push("message", message(ANA, "/balance@purser_bot acme", 2));
    api.push("message", message(777, "/purser balance", 3));
    let sent = api.wait("sendMessage", 3).await;
    let answers: Vec<&Value> = sent
        .iter()
        .filter(|b| b["reply_markup"].is_null())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["reply_parameters"]["message_id"], 2);
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .contains("acme · ¥2,000.00"),
        "{}",
        answers[0]["text"]
    );
    assert!(
        answers[1]["text"]
            .as_str()
            .unwrap()
            .contains("does not know you")
    );
    assert!(!answers[1]["text"].as_str().unwrap().contains("acme"));

    // A silence typed as a command edits the alert's message too.
    api.push(
        "message",
        message(ANA, "/silence account=acme 24h wire sent", 4),
    );
    let edits = api.wait("editMessageText", 2).await;
    assert!(
        edits[1]["text"]
            .as_str()
            .unwrap()
            .contains("silenced by ana until"),
        "{}",
        edits[1]["text"]
    );
    assert!(!edits[1]["reply_markup"].to_string().contains("silence_"));

    // The runway of one account comes with its chart, as a photo replying
    // to the command.
    api.push("message", message(ANA, "/runway acme", 5));
    let photos = api.wait("sendPhoto", 2).await;
    assert_eq!(photos[1]["chat_id"], "-1001234567890");
    assert_eq!(photos[1]["caption"], "Runway of acme");
    assert_eq!(photos[1]["photo"]["filename"], "runway.png");
    assert_eq!(photos[1]["photo"]["png"], true);
    assert_eq!(photos[1]["reply_parameters"]["message_id"], 5);

    // Resolved: edited once more, its keyboard gone, and still one post.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    app.advance(Duration::minutes(1)).await;
    let edits = api.wait("editMessageText", 3).await;
    assert!(
        edits[2]["text"]
            .as_str()
            .unwrap()
            .contains("<b>Resolved</b>")
    );
    assert_eq!(edits[2]["reply_markup"]["inline_keyboard"], json!([]));
    assert_eq!(alert_posts(&api).len(), 1);

    // Each update was handled once: offsets confirmed them.
    assert_eq!(api.calls("answerCallbackQuery").len(), 3);
    let mut n = 1;
    let polls = loop {
        let polls = api.wait("getUpdates", n).await;
        if polls.last().unwrap()["offset"].as_i64() == Some(511) {
            break polls;
        }
        n = polls.len() + 1;
    };
    let offsets: Vec<i64> = polls.iter().filter_map(|p| p["offset"].as_i64()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert_eq!(offsets.last(), Some(&511), "all ten confirmed: {offsets:?}");
    // Stopping confirms them too, so that a restart does not see them again.
    app.stop().await;
    let last = api.calls("getUpdates").pop().unwrap();
    assert_eq!(
        (last["offset"].clone(), last["timeout"].clone()),
        (json!(511), json!(0))
    );
}

#[tokio::test]
async fn the_webhook_checks_its_secret_token_first() {
    let (api, addr) = start_api().await;
    let (world, app) = running(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nmode = \"webhook\"\nwebhook_url = \"https://purser.example.com/telegram/webhook\"\nwebhook_secret = \"file:telegram.secret\"",
        addr,
    )
    .await;
    let set = api.wait("setWebhook", 1).await;
    assert_eq!(set[0]["url"], "https://purser.example.com/telegram/webhook");
    assert_eq!(set[0]["secret_token"], "hook_Secret-1");
    let url = format!("http://{}/telegram/webhook", app.http.unwrap());
    let update = json!({"update_id": 9001, "message": message(ANA, "/whoami", 9)});
    let post = |secret: Option<&str>, body: String| {
        let mut r = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(s) = secret {
            r = r.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None, update.to_string()).await, 401);
    assert_eq!(post(Some("hook_Secret-2"), update.to_string()).await, 401);
    assert_eq!(post(Some("hook_Secret-"), update.to_string()).await, 401);
    assert_eq!(post(Some("hook_Secret-1"), "not json".into()).await, 400);
    assert_eq!(post(Some("hook_Secret-1"), update.to_string()).await, 200);
    let sent = api.wait("sendMessage", 2).await;
    let answers: Vec<&Value> = sent
        .iter()
        .filter(|b| b["reply_markup"].is_null())
        .collect();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .contains("You are ana, requester.")
    );
    // Telegram redelivers what it thinks failed: answered once.
    assert_eq!(post(Some("hook_Secret-1"), update.to_string()).await, 200);
    let later = json!({"update_id": 9002, "message": message(ANA, "/whoami", 10)});
    assert_eq!(post(Some("hook_Secret-1"), later.to_string()).await, 200);
    let sent = api.wait("sendMessage", 3).await;
    let answered: Vec<&Value> = sent
        .iter()
        .map(|b| &b["reply_parameters"]["message_id"])
        .filter(|id| !id.is_null())
        .collect();
    assert_eq!(answered, [&json!(9), &json!(10)]);
    assert!(
        api.calls("getUpdates").is_empty(),
        "a webhook bot does not poll"
    );
    app.stop().await;
    drop(world);
}

/// purser dies after handling an update but before Telegram heard the
/// offset that confirms it, so Telegram hands the update out again: the
/// restarted bot asks from the stored offset, and the silence it set is
/// not set twice.
#[tokio::test]
async fn after_a_crash_polling_resumes_after_the_last_update_handled() {
    let (api, addr) = start_api().await;
    let (world, app) = running("[telegram]", addr).await;
    api.wait("sendMessage", 1).await;
    let silence = message(ANA, "/silence account=acme 24h wire sent", 4);
    api.push("message", silence.clone());
    let answered = |api: &BotApi| {
        api.calls("sendMessage")
            .iter()
            .filter(|b| b["text"].as_str().unwrap_or_default().contains("Silence #"))
            .count()
    };
    api.wait("sendMessage", 2).await;
    while answered(&api) == 0 {
        api.wait("sendMessage", api.calls("sendMessage").len() + 1)
            .await;
    }
    // The next poll comes once the offset is stored.
    while api.calls("getUpdates").last().unwrap()["offset"] != 502 {
        api.wait("getUpdates", api.calls("getUpdates").len() + 1)
            .await;
    }
    app.crash().await;
    // Telegram never heard offset 502: the update is still waiting there.
    api.updates
        .lock()
        .unwrap()
        .push_front(json!({"update_id": 501, "message": silence}));
    let before = api.calls("getUpdates").len();

    let app = world.start().await;
    app.settle().await;
    let polls = api.wait("getUpdates", before + 1).await;
    assert_eq!(polls[before]["offset"], 502, "{:?}", polls[before]);
    assert_eq!(answered(&api), 1, "the command ran once");
    assert_eq!(
        app.store
            .silences(purser::ports::Clock::now(&*world.clock))
            .await
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

/// Two resources expiring and the balance low, found by one poll: one
/// message, and its buttons act on all three alerts.
#[tokio::test]
async fn one_poll_one_message_with_buttons_for_all() {
    let (api, addr) = start_api().await;
    let world = World::new(
        SEVERAL,
        Setup {
            rules: &config("[telegram]", addr),
            ..Setup::default()
        },
    )
    .await;
    let (world, app) = start(world).await;

    api.wait("sendMessage", 1).await;
    let posted = alert_posts(&api);
    assert_eq!(posted.len(), 1);
    let text = posted[0]["text"].as_str().unwrap();
    assert!(text.contains("<b>acme · 3 alerts firing</b>"), "{text}");
    assert!(text.contains("<b>[B] expiring · ins-a</b>"), "{text}");
    let data: Vec<&str> = posted[0]["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|b| b["callback_data"].as_str().unwrap())
        .collect();
    assert_eq!(
        data,
        [
            "ack:all",
            "silence_1h:all",
            "silence_24h:all",
            "topup:all",
            "renew:all"
        ]
    );

    // "All" on a message that is not an alert message of purser's (forged,
    // or someone else's): a dialog, and nothing acknowledged.
    api.push("callback_query", press(ANA, "ack:all", 999));
    let answers = api.wait("answerCallbackQuery", 1).await;
    assert_eq!(answers[0]["show_alert"], true);
    assert_eq!(
        answers[0]["text"],
        "None of this message's alerts is still open."
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert!(open.iter().all(|a| a.acknowledged.is_none()), "{open:?}");

    // A viewer may not; the requester acknowledges all three at once.
    api.push("callback_query", press(VIC, "ack:all", 101));
    let answers = api.wait("answerCallbackQuery", 2).await;
    assert_eq!(answers[1]["show_alert"], true);
    api.push("callback_query", press(ANA, "ack:all", 101));
    let answers = api.wait("answerCallbackQuery", 3).await;
    assert!(
        answers[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged 3 alerts"),
        "{}",
        answers[2]
    );
    let open = app.store.all_open_alerts().await.unwrap();
    assert!(open.iter().all(|a| a.acknowledged.is_some()), "{open:?}");
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let changed = api.changed.notified();
            let edits = api.calls("editMessageText");
            if edits.last().is_some_and(|e| {
                e["message_id"] == 101
                    && e["text"]
                        .as_str()
                        .unwrap()
                        .matches("acknowledged by ana")
                        .count()
                        == 3
            }) {
                return;
            }
            changed.await;
        }
    })
    .await
    .expect("the message shows all three acknowledged");

    // Pressed again: nothing more to do, and the presser is told.
    api.push("callback_query", press(ANA, "ack:all", 101));
    let answers = api.wait("answerCallbackQuery", 4).await;
    assert!(
        answers[3]["text"]
            .as_str()
            .unwrap()
            .starts_with("All 3 alerts were already acknowledged"),
        "{}",
        answers[3]
    );
    drop(world);
    app.stop().await;
}

#[tokio::test]
async fn a_request_card_in_the_group_is_approved_from_its_keyboard_once() {
    const BO: i64 = 7_003;
    let (api, addr) = start_api().await;
    let people = format!("\n[[people]]\nname = \"bo\"\nrole = \"approver\"\ntelegram = \"{BO}\"\n");
    let world = World::low_on_money(&(config("[telegram]", addr) + &people)).await;
    let (_world, app) = start(world).await;
    api.wait("setMyCommands", 1).await;

    // ana asks in the group; the card goes to the group with its keyboard.
    api.push("message", message(ANA, "/topup acme 1000 alipay", 60));
    api.wait("sendMessage", 1).await;
    let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let changed = api.changed.notified();
            if let Some(c) = api.calls("sendMessage").into_iter().find(|b| {
                b["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("<b>R1 · top up")
            }) {
                return c;
            }
            changed.await;
        }
    })
    .await
    .expect("a card for R1");
    assert_eq!(found["chat_id"], GROUP);
    assert_eq!(
        found["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "approve:R1"
    );
    let card_id = api
        .calls("sendMessage")
        .iter()
        .position(|b| b == &found)
        .map(|i| 101 + i as i64)
        .unwrap();

    // bo's press approves it (a toast); pressed again, it counts once.
    api.push("callback_query", press(BO, "approve:R1", card_id));
    let answers = api.wait("answerCallbackQuery", 1).await;
    assert_eq!(answers[0]["show_alert"], false);
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("R1 approved."),
        "{}",
        answers[0]
    );
    let mut again = press(BO, "approve:R1", card_id);
    again["id"] = json!("cb-second");
    api.push("callback_query", again);
    let answers = api.wait("answerCallbackQuery", 2).await;
    assert_eq!(answers[1]["show_alert"], true);
    assert!(
        answers[1]["text"]
            .as_str()
            .unwrap()
            .contains("nothing left to decide"),
        "{}",
        answers[1]
    );

    // The card loses its keyboard; the thread is told once.
    app.settle().await;
    let edits: Vec<Value> = api
        .calls("editMessageText")
        .into_iter()
        .filter(|e| e["message_id"] == card_id)
        .collect();
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0]["reply_markup"]["inline_keyboard"], json!([]));
    let told: Vec<Value> = api
        .calls("sendMessage")
        .into_iter()
        .filter(|m| m["reply_parameters"]["message_id"] == card_id)
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("R1 approved by bo"),
        "{}",
        told[0]
    );
}

/// The on-call person is paged in a private chat with the bot, with an
/// Acknowledge button; pressing it there stops the chain.
#[tokio::test]
async fn a_page_arrives_in_a_private_chat_and_its_button_acknowledges() {
    let (api, addr) = start_api().await;
    let config = config("[telegram]", addr) + ANA_ON_CALL;
    let (_world, app) = start(World::low_on_money(&config).await).await;
    api.wait("sendMessage", 1).await;
    app.advance(Duration::minutes(15)).await;
    let sent = api.wait("sendMessage", 2).await;
    let page = sent
        .iter()
        .find(|b| b["chat_id"] == ANA)
        .unwrap_or_else(|| panic!("no page to ana: {sent:?}"));
    assert!(
        page["text"]
            .as_str()
            .unwrap()
            .contains("ana, you are paged as on call for ops"),
        "{page}"
    );
    let ack = page["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ack.starts_with("ack:"), "{ack}");

    let mut pressed = press(ANA, &ack, 105);
    pressed["message"]["chat"] = json!({"id": ANA, "type": "private"});
    api.push("callback_query", pressed);
    let answers = api.wait("answerCallbackQuery", 1).await;
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged"),
        "{answers:?}"
    );
    app.settle().await;
    let open = purser::ports::Escalations::open_escalations(&*app.store)
        .await
        .unwrap();
    assert_eq!(open[0].acked_by.as_deref(), Some("ana"));
    app.stop().await;
}
