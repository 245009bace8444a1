//! Alerts as Discord messages in a channel, sent by the application's bot:
//! an embed with buttons, edited in place when the alert is acknowledged,
//! silenced or resolved, and repeats as replies to it. Paced at one message a
//! second per channel (Discord allows 5 in 5 s), and when Discord says a
//! bucket is empty, the next call waits for it to refill.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::discord::escape;
use super::pace::Pacer;
use crate::domain::request::Request;
use crate::engine::alert_view::{AlertView, Button, ChatOutput, GroupView, Tone, still_firing};
use crate::engine::charts::RunwayChart;
use crate::engine::request_view::{Choice, RequestView};
use crate::ports::{
    AlertMessages, MessageRef, MessageRefs, RequestMessages, SendError, StoredNotice,
};
use crate::secret::Secret;

/// Embed limits: a title of 256 characters, a description of 4,096.
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;

pub struct DiscordChannel {
    /// The output's name, under which its messages are remembered.
    pub output: String,
    pub api: reqwest::Url,
    pub token: Secret,
    pub channel: String,
    pub http: reqwest::Client,
    pub refs: Arc<dyn MessageRefs>,
    /// Runway charts for messages about money running out; none, none sent.
    pub charts: Option<Arc<crate::engine::charts::Charts>>,
    pub pacer: Pacer,
    /// Set when Discord reported an exhausted bucket: no call before then.
    pub blocked_until: Mutex<Option<tokio::time::Instant>>,
    pub timeout: StdDuration,
}

impl DiscordChannel {
    pub fn new(
        output: String,
        api: reqwest::Url,
        token: Secret,
        channel: String,
        refs: Arc<dyn MessageRefs>,
    ) -> DiscordChannel {
        DiscordChannel {
            output,
            api,
            token,
            channel,
            http: reqwest::Client::new(),
            refs,
            charts: None,
            pacer: Pacer::every(StdDuration::from_secs(1)),
            blocked_until: Mutex::new(None),
            timeout: StdDuration::from_secs(10),
        }
    }

    /// Where a created message landed, from Discord's answer.
    fn posted(&self, v: &Value) -> Option<MessageRef> {
        let at = MessageRef {
            channel: v["channel_id"].as_str().unwrap_or(&self.channel).to_owned(),
            message: v["id"].as_str().unwrap_or_default().to_owned(),
        };
        Some(at).filter(|at| !at.message.is_empty())
    }

    /// Calls the REST API; returns the answer's JSON on success.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, SendError> {
        self.send(method, path, Body::Json(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<Value, SendError> {
        self.pacer.wait().await;
        let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let url = self
            .api
            .join(path)
            .map_err(|e| SendError::refused(format!("Discord API URL: {e}")))?;
        let request = super::discord::as_bot(self.http.request(method.clone(), url), &self.token);
        let request = match body {
            Body::Json(v) => request.json(&v),
            Body::WithPng { payload, png } => {
                let file = reqwest::multipart::Part::bytes(png)
                    .file_name("runway.png")
                    .mime_str("image/png")
                    .map_err(|e| SendError::refused(format!("Discord {method}: {e}")))?;
                request.multipart(
                    reqwest::multipart::Form::new()
                        .text("payload_json", payload.to_string())
                        .part("files[0]", file),
                )
            }
        };
        let response =
            request.timeout(self.timeout).send().await.map_err(|e| {
                SendError::transient(format!("Discord {method}: {}", e.without_url()))
            })?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if header("x-ratelimit-remaining").as_deref() == Some("0") {
            let wait = header("x-ratelimit-reset-after")
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(|s| StdDuration::try_from_secs_f64(s).ok())
                .unwrap_or(StdDuration::from_secs(1));
            *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now() + wait.min(StdDuration::from_secs(60)));
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).or_else(|_| {
                if text.is_empty() {
                    Ok(Value::Null)
                } else {
                    Err(SendError::transient(format!(
                        "Discord {method} {path}: unreadable answer"
                    )))
                }
            });
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(classify(&method, status.as_u16(), &v))
    }
}

/// What a call sends: JSON, or JSON with a PNG attached (multipart, the
/// file as `files[0]`).
enum Body {
    Json(Value),
    WithPng { payload: Value, png: Vec<u8> },
}

/// Discord's JSON error code for a message that no longer exists.
const UNKNOWN_MESSAGE: &str = "10008";

/// Discord's errors: what waiting mends, and what a person must fix.
fn classify(method: &reqwest::Method, status: u16, v: &Value) -> SendError {
    let code = v["code"].as_u64().unwrap_or(0);
    let message = v["message"].as_str().unwrap_or("no message given");
    if status == 429 {
        // The body's retry_after is in seconds, with a fraction.
        let after = v["retry_after"]
            .as_f64()
            .and_then(|s| StdDuration::try_from_secs_f64(s).ok())
            .unwrap_or(StdDuration::from_secs(5));
        let scope = if v["global"].as_bool() == Some(true) {
            "the bot's global limit"
        } else {
            "this route's limit"
        };
        return SendError::rate_limited(format!("Discord {method}: {scope}"), after);
    }
    if status >= 500 {
        return SendError::transient(format!("Discord {method}: HTTP {status}"));
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
    let what = format!("Discord {method}: HTTP {status}, code {code}: {message}");
    SendError::Refused {
        code: (code != 0).then(|| code.to_string()),
        what: if hint.is_empty() {
            what
        } else {
            format!("{what}: {hint}")
        },
    }
}

#[async_trait]
impl AlertMessages for DiscordChannel {
    async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError> {
        let path = format!("channels/{}/messages", self.channel);
        let v = self
            .call(reqwest::Method::POST, &path, alert_message(notices))
            .await?;
        Ok(self.posted(&v))
    }

    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        let path = format!("channels/{}/messages/{}", at.channel, at.message);
        match self
            .call(reqwest::Method::PATCH, &path, alert_message(notices))
            .await
        {
            // Deleted by someone: there is nothing left to edit.
            Err(e) if e.refused_with(UNKNOWN_MESSAGE) => {
                tracing::info!(output = %self.output, "the alert's Discord message was deleted; not edited");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        let path = format!("channels/{}/messages", at.channel);
        let body = json!({
            "content": super::cut(&escape(&still_firing(notices)), 2000),
            "message_reference": {"message_id": at.message, "fail_if_not_exists": false},
            "allowed_mentions": {"parse": []},
        });
        self.call(reqwest::Method::POST, &path, body)
            .await
            .map(|_| ())
    }

    /// The chart as a reply to the alert's message, the image attached.
    async fn chart(&self, at: &MessageRef, chart: &RunwayChart) -> Result<(), SendError> {
        let Some(png) = super::chart::runway_png(chart).map_err(SendError::refused)? else {
            return Ok(());
        };
        let payload = json!({
            "content": "",
            "message_reference": {"message_id": at.message, "fail_if_not_exists": false},
            "allowed_mentions": {"parse": []},
            "attachments": [{"id": 0, "filename": "runway.png",
                             "description": format!("Runway of {}", chart.account)}],
        });
        let path = format!("channels/{}/messages", at.channel);
        self.send(reqwest::Method::POST, &path, Body::WithPng { payload, png })
            .await
            .map(|_| ())
    }
}

/// A page arrives as a direct message from the bot, with an Acknowledge
/// button that works as the alert message's does. Opening the DM channel
/// returns the same channel each time, so nothing needs remembering.
#[async_trait]
impl crate::ports::DirectMessages for DiscordChannel {
    async fn page(&self, user: &str, page: &crate::ports::PageMessage) -> Result<(), SendError> {
        let dm = self
            .call(
                reqwest::Method::POST,
                "users/@me/channels",
                json!({"recipient_id": user}),
            )
            .await?;
        let Some(channel) = dm["id"].as_str() else {
            return Err(SendError::transient(
                "Discord opened no direct message channel",
            ));
        };
        let body = json!({
            "content": super::cut(&escape(&crate::engine::escalator::page_text(page)), 2000),
            "components": rows(vec![button(
                Button::Ack,
                Button::Ack.label(),
                Button::Ack.data(&page.fingerprint),
            )]),
            "allowed_mentions": {"parse": []},
        });
        self.call(
            reqwest::Method::POST,
            &format!("channels/{channel}/messages"),
            body,
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl RequestMessages for DiscordChannel {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        let path = format!("channels/{}/messages", self.channel);
        let v = self
            .call(
                reqwest::Method::POST,
                &path,
                request_message(&RequestView::of(r)),
            )
            .await?;
        Ok(self.posted(&v))
    }

    async fn edit_request(&self, at: &MessageRef, r: &Request) -> Result<(), SendError> {
        let path = format!("channels/{}/messages/{}", at.channel, at.message);
        match self
            .call(
                reqwest::Method::PATCH,
                &path,
                request_message(&RequestView::of(r)),
            )
            .await
        {
            Err(e) if e.refused_with(UNKNOWN_MESSAGE) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn reply_request(&self, at: &MessageRef, text: &str) -> Result<(), SendError> {
        let path = format!("channels/{}/messages", at.channel);
        let body = json!({
            "content": super::cut(&escape(text), 2000),
            "message_reference": {"message_id": at.message, "fail_if_not_exists": false},
            "allowed_mentions": {"parse": []},
        });
        self.call(reqwest::Method::POST, &path, body)
            .await
            .map(|_| ())
    }
}

/// A request's card as an embed, with Approve (green) and Deny (red) while
/// it waits; an empty component list removes them once it is decided.
pub fn request_message(v: &RequestView) -> Value {
    let (title, color) = match v.tone {
        Tone::Resolved => (format!("✅ {}", v.headline), 0x2e_b8_86),
        Tone::Critical => (format!("🔴 {}", v.headline), 0xe0_1e_5a),
        Tone::Warning => (format!("🟠 {}", v.headline), 0xf2_99_1c),
        Tone::Minor => (format!("🟡 {}", v.headline), 0xec_b2_2e),
    };
    let buttons = v
        .buttons
        .iter()
        .map(|c| {
            json!({"type": 2, "style": if *c == Choice::Approve { 3 } else { 4 },
                   "label": c.label(), "custom_id": c.data(v.id)})
        })
        .collect();
    json!({
        "content": "",
        "embeds": [{
            "title": super::cut(&escape(&title), TITLE_CHARS),
            "description": super::cut(&escape(&v.lines.join("\n")), DESCRIPTION_CHARS),
            "color": color,
        }],
        "components": rows(buttons),
        "allowed_mentions": {"parse": []},
    })
}

impl ChatOutput for DiscordChannel {
    fn output(&self) -> &str {
        &self.output
    }

    fn refs(&self) -> &dyn MessageRefs {
        &*self.refs
    }

    fn charts(&self) -> Option<&crate::engine::charts::Charts> {
        self.charts.as_deref()
    }
}

fn title_and_color(v: &AlertView, title: &str) -> (String, u32) {
    match v.tone {
        Tone::Resolved => (format!("✅ Resolved · {title}"), 0x2e_b8_86),
        Tone::Critical => (format!("🔴 {title}"), 0xe0_1e_5a),
        Tone::Warning => (format!("🟠 {title}"), 0xf2_99_1c),
        Tone::Minor => (format!("🟡 {title}"), 0xec_b2_2e),
    }
}

/// Buttons in rows of five, Discord's most (an empty list removes them).
fn rows(buttons: Vec<Value>) -> Value {
    Value::Array(
        buttons
            .chunks(5)
            .map(|row| json!({"type": 1, "components": row}))
            .collect(),
    )
}

fn button(b: Button, label: &str, custom_id: String) -> Value {
    json!({"type": 2, "style": if b == Button::Ack { 1 } else { 2 },
           "label": label, "custom_id": custom_id})
}

/// One alert as a Discord message: an embed coloured by severity and its
/// buttons; several of one account as an embed each (ten at most, Discord's
/// limit, cut to stay within its 6,000 characters for all embeds) with
/// buttons that act on all of them.
pub fn alert_message(notices: &[StoredNotice]) -> Value {
    let (content, embeds, buttons) = match notices {
        [n] => {
            let v = AlertView::of(n);
            let (title, color) = title_and_color(&v, &v.headline);
            let embed = json!({
                "title": super::cut(&escape(&title), TITLE_CHARS),
                "description": super::cut(&escape(&v.summary), DESCRIPTION_CHARS),
                "color": color,
                "footer": {"text": format!("id {} · {}", v.short_id, v.status)},
            });
            let buttons = v
                .buttons
                .iter()
                .map(|b| button(*b, b.label(), b.data(&n.fingerprint)))
                .collect();
            (String::new(), vec![embed], buttons)
        }
        _ => {
            let g = GroupView::of(notices);
            let embeds = g
                .items
                .iter()
                .map(|v| {
                    let (title, color) = title_and_color(v, &v.label);
                    json!({
                        "title": super::cut(&escape(&title), 120),
                        "description": super::cut(&escape(&v.summary), 350),
                        "color": color,
                        "footer": {"text": super::cut(&format!("id {} · {}", v.short_id, v.status), 100)},
                    })
                })
                .collect();
            let buttons = g
                .buttons
                .iter()
                .map(|b| button(*b, b.label_all(), b.data_all()))
                .collect();
            (format!("**{}**", escape(&g.headline)), embeds, buttons)
        }
    };
    json!({
        "content": content,
        "embeds": embeds,
        "components": rows(buttons),
        "allowed_mentions": {"parse": []},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_card_is_an_embed_with_green_and_red_buttons() {
        let r = crate::engine::request_view::tests::waiting();
        let m = request_message(&RequestView::of(&r));
        assert!(
            m["embeds"][0]["title"]
                .as_str()
                .unwrap()
                .starts_with("🟠 R7 · top up")
        );
        let row = &m["components"][0]["components"];
        assert_eq!(row[0]["custom_id"], "approve:R7");
        assert_eq!(row[0]["style"], 3);
        assert_eq!(row[1]["custom_id"], "deny:R7");
        assert_eq!(row[1]["style"], 4);
        let done = request_message(&RequestView::of(&crate::domain::request::Request {
            state: crate::domain::request::State::Verified,
            ..r
        }));
        assert_eq!(done["components"], json!([]));
    }
    use crate::domain::alert::NoticeKind;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn a_firing_alert_is_an_embed_with_buttons() {
        let m = alert_message(&[notice(NoticeKind::Firing)]);
        assert_eq!(
            m["embeds"][0]["title"],
            "🟠 [B] expiring · acme / ins-7f3k2a1b"
        );
        assert_eq!(
            m["embeds"][0]["description"],
            "cvm ins-7f3k2a1b (web<01\\>) expires in 6 days & counting"
        );
        assert_eq!(
            m["embeds"][0]["footer"]["text"],
            "id e0fae2a6 · firing since 2026-11-23 02:00 UTC"
        );
        let ids: Vec<&str> = m["components"][0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["custom_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "ack:e0fae2a62feacddd",
                "silence_1h:e0fae2a62feacddd",
                "silence_24h:e0fae2a62feacddd",
                "renew:e0fae2a62feacddd"
            ]
        );
        assert_eq!(m["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn a_resolved_alert_loses_its_buttons() {
        let mut n = notice(NoticeKind::Resolved);
        n.resolved_at = Some(n.started_at + chrono::Duration::hours(3));
        let m = alert_message(&[n]);
        assert_eq!(m["components"], json!([]));
        assert!(
            m["embeds"][0]["title"]
                .as_str()
                .unwrap()
                .starts_with("✅ Resolved")
        );
    }

    #[test]
    fn long_text_fits_the_embed() {
        let mut n = notice(NoticeKind::Firing);
        n.summary = "x".repeat(5000);
        n.resource = "r".repeat(300);
        let m = alert_message(&[n]);
        assert_eq!(
            m["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            4096
        );
        assert_eq!(
            m["embeds"][0]["title"].as_str().unwrap().chars().count(),
            256
        );
    }

    #[test]
    fn discord_errors_say_what_to_fix() {
        let post = reqwest::Method::POST;
        assert_eq!(
            classify(&post, 429, &json!({"retry_after": 1.5, "global": false})),
            SendError::rate_limited(
                "Discord POST: this route's limit",
                StdDuration::from_millis(1500)
            )
        );
        // A pause beyond reason is held to the longest believed.
        let SendError::RateLimited { retry_after, .. } =
            classify(&post, 429, &json!({"retry_after": 1e9, "global": true}))
        else {
            panic!()
        };
        assert_eq!(retry_after, SendError::LONGEST_PAUSE);
        assert!(
            classify(
                &post,
                404,
                &json!({"code": 10008, "message": "Unknown Message"})
            )
            .refused_with(UNKNOWN_MESSAGE)
        );
        assert!(matches!(
            classify(&post, 502, &Value::Null),
            SendError::Transient { .. }
        ));
        let SendError::Refused { what: m, .. } = classify(
            &post,
            403,
            &json!({"code": 50013, "message": "Missing Permissions"}),
        ) else {
            panic!()
        };
        assert!(m.contains("Embed Links"), "{m}");
        let SendError::Refused { what: m, .. } = classify(
            &post,
            404,
            &json!({"code": 10003, "message": "Unknown Channel"}),
        ) else {
            panic!()
        };
        assert!(m.contains("channel id"), "{m}");
        // A page to someone the bot cannot write to.
        let SendError::Refused { what: m, .. } = classify(
            &post,
            403,
            &json!({"code": 50007, "message": "Cannot send messages to this user"}),
        ) else {
            panic!()
        };
        assert!(m.contains("share a server with the bot"), "{m}");
        let SendError::Refused { what: m, .. } = classify(&post, 401, &json!({"code": 0})) else {
            panic!()
        };
        assert!(m.contains("bot token"), "{m}");
    }

    #[test]
    fn a_group_is_an_embed_per_alert_within_discords_limits() {
        let mut notices = crate::engine::alert_view::tests::ten();
        for n in &mut notices {
            n.summary = "*".repeat(5_000);
        }
        let m = alert_message(&notices);
        assert_eq!(m["content"], "**acme · 10 alerts firing**");
        let embeds = m["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), 10);
        assert_eq!(embeds[4]["title"], "🟠 [B] expiring · ins-4");
        let chars: usize = embeds
            .iter()
            .map(|e| {
                ["title", "description"]
                    .iter()
                    .map(|k| e[k].as_str().unwrap().chars().count())
                    .sum::<usize>()
                    + e["footer"]["text"].as_str().unwrap().chars().count()
            })
            .sum();
        assert!(chars <= 6000, "{chars}");
        let ids: Vec<&str> = m["components"][0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["custom_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["ack:all", "silence_1h:all", "silence_24h:all", "renew:all"]
        );
    }
}
