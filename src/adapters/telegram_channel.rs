//! Alerts as Telegram messages in a group: HTML text with an inline
//! keyboard, edited in place when the alert is acknowledged, silenced or
//! resolved, and repeats as replies to it. The client paces each chat as
//! Telegram allows a group: one message a second, twenty a minute.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::telegram::{BotApi, escape, refusal};
use crate::domain::request::Request;
use crate::engine::alert_view::{AlertView, Button, ChatOutput, GroupView, Tone, still_firing};
use crate::engine::charts::RunwayChart;
use crate::engine::request_view::RequestView;
use crate::ports::{
    AlertMessages, MessageRef, MessageRefs, RequestMessages, SendError, StoredNotice,
};

pub struct TelegramChannel {
    /// The output's name, under which its messages are remembered.
    pub output: String,
    /// Paces per chat (shared with the bot's answers when the token is).
    pub api: Arc<BotApi>,
    /// The group's chat id (negative for groups), or `@channelname`.
    pub chat: String,
    pub refs: Arc<dyn MessageRefs>,
    /// Runway charts for messages about money running out; none, none sent.
    pub charts: Option<Arc<crate::engine::charts::Charts>>,
    pub timeout: StdDuration,
}

impl TelegramChannel {
    pub fn new(
        output: String,
        api: Arc<BotApi>,
        chat: String,
        refs: Arc<dyn MessageRefs>,
    ) -> TelegramChannel {
        TelegramChannel {
            output,
            api,
            chat,
            refs,
            charts: None,
            timeout: StdDuration::from_secs(10),
        }
    }

    async fn call(&self, method: &str, body: Value) -> Result<Value, SendError> {
        self.api.call(method, &body, self.timeout).await
    }

    /// Where a sent message landed, from Telegram's answer.
    fn posted(&self, m: &Value) -> Option<MessageRef> {
        let at = MessageRef {
            channel: m["chat"]["id"]
                .as_i64()
                .map_or_else(|| self.chat.clone(), |id| id.to_string()),
            message: m["message_id"]
                .as_i64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        };
        Some(at).filter(|at| !at.message.is_empty())
    }

    /// A chat id as Telegram wants it: a number, or an `@username`.
    fn chat_id(chat: &str) -> Value {
        chat.parse::<i64>()
            .map_or_else(|_| json!(chat), |id| json!(id))
    }
}

/// A page arrives as a private message from the bot, with an Acknowledge
/// button that works as the alert message's does. Telegram lets a bot write
/// only to people who have started a chat with it.
#[async_trait]
impl crate::ports::DirectMessages for TelegramChannel {
    async fn page(&self, user: &str, page: &crate::ports::PageMessage) -> Result<(), SendError> {
        let body = json!({
            "chat_id": Self::chat_id(user),
            "text": escape(&crate::engine::escalator::page_text(page)).chars().take(4096).collect::<String>(),
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{
                "text": Button::Ack.label(),
                "callback_data": Button::Ack.data(&page.fingerprint),
            }]]},
        });
        match self.call("sendMessage", body).await {
            Err(e) if e.refused_with(refusal::CANNOT_INITIATE) => Err(SendError::refused_as(
                refusal::CANNOT_INITIATE,
                format!(
                    "{}: the person must open a chat with the bot and press Start first",
                    e.message()
                ),
            )),
            other => other.map(|_| ()),
        }
    }
}

#[async_trait]
impl AlertMessages for TelegramChannel {
    async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError> {
        let mut body = alert_message(notices);
        body["chat_id"] = Self::chat_id(&self.chat);
        let m = self.call("sendMessage", body).await?;
        Ok(self.posted(&m))
    }

    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        let mut body = alert_message(notices);
        body["chat_id"] = Self::chat_id(&at.channel);
        body["message_id"] = json!(at.message.parse::<i64>().unwrap_or_default());
        match self.call("editMessageText", body).await {
            // The same text again (an edit that raced another): done.
            Err(e) if e.refused_with(refusal::NOT_MODIFIED) => Ok(()),
            Err(e) if e.refused_with(refusal::TO_EDIT_NOT_FOUND) => {
                tracing::info!(output = %self.output, "the alert's Telegram message was deleted; not edited");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.call(
            "sendMessage",
            json!({
                "chat_id": Self::chat_id(&at.channel),
                "text": escape(&still_firing(notices)).chars().take(4096).collect::<String>(),
                "parse_mode": "HTML",
                "reply_parameters": {"message_id": at.message.parse::<i64>().unwrap_or_default(),
                                     "allow_sending_without_reply": true},
            }),
        )
        .await
        .map(|_| ())
    }

    async fn chart(&self, at: &MessageRef, chart: &RunwayChart) -> Result<(), SendError> {
        let Some(png) = super::chart::runway_png(chart).map_err(SendError::refused)? else {
            return Ok(());
        };
        let message = at
            .message
            .parse::<i64>()
            .map_or(Value::Null, |id| json!(id));
        self.api
            .send_photo(
                &Self::chat_id(&at.channel),
                png,
                &format!("Runway of {}", chart.account),
                &message,
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl RequestMessages for TelegramChannel {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        let mut body = request_message(&RequestView::of(r));
        body["chat_id"] = Self::chat_id(&self.chat);
        let m = self.call("sendMessage", body).await?;
        Ok(self.posted(&m))
    }

    async fn edit_request(&self, at: &MessageRef, r: &Request) -> Result<(), SendError> {
        let mut body = request_message(&RequestView::of(r));
        body["chat_id"] = Self::chat_id(&at.channel);
        body["message_id"] = json!(at.message.parse::<i64>().unwrap_or_default());
        match self.call("editMessageText", body).await {
            Err(e)
                if e.refused_with(refusal::NOT_MODIFIED)
                    || e.refused_with(refusal::TO_EDIT_NOT_FOUND) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    async fn reply_request(&self, at: &MessageRef, text: &str) -> Result<(), SendError> {
        self.call(
            "sendMessage",
            json!({
                "chat_id": Self::chat_id(&at.channel),
                "text": escape(text).chars().take(4096).collect::<String>(),
                "parse_mode": "HTML",
                "reply_parameters": {"message_id": at.message.parse::<i64>().unwrap_or_default(),
                                     "allow_sending_without_reply": true},
            }),
        )
        .await
        .map(|_| ())
    }
}

/// A request's card as Telegram HTML, with Approve and Deny while it waits
/// (an empty keyboard removes them once it is decided).
pub fn request_message(v: &RequestView) -> Value {
    let mut text = format!("{} <b>{}</b>", icon(v.tone), escape(&v.headline));
    for l in &v.lines {
        text.push('\n');
        text.push_str(&escape(l));
    }
    if text.chars().count() > 4096 {
        text = format!(
            "{} <b>{}</b>\n{}",
            icon(v.tone),
            escape(&v.headline.chars().take(200).collect::<String>()),
            escape(v.lines.last().map_or("", String::as_str))
        );
    }
    let row: Vec<Value> = v
        .buttons
        .iter()
        .map(|c| json!({"text": c.label(), "callback_data": c.data(v.id)}))
        .collect();
    let keyboard: Vec<Vec<Value>> = if row.is_empty() {
        Vec::new()
    } else {
        vec![row]
    };
    json!({
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
        "reply_markup": {"inline_keyboard": keyboard},
    })
}

impl ChatOutput for TelegramChannel {
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

fn icon(tone: Tone) -> &'static str {
    match tone {
        Tone::Critical => "🔴",
        Tone::Warning => "🟠",
        Tone::Minor => "🟡",
        Tone::Resolved => "✅",
    }
}

/// One alert as Telegram HTML with its buttons, two to a row; several of
/// one account as a paragraph each, with buttons that act on all of them
/// (an empty keyboard removes them). Within Telegram's 4,096 characters.
pub fn alert_message(notices: &[StoredNotice]) -> Value {
    let (text, keyboard) = match notices {
        [n] => one_alert(n),
        _ => group(notices),
    };
    json!({
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
        "reply_markup": {"inline_keyboard": keyboard},
    })
}

fn one_alert(n: &StoredNotice) -> (String, Vec<Vec<Value>>) {
    let v = AlertView::of(n);
    let text = match v.tone {
        Tone::Resolved => format!(
            "✅ <b>Resolved</b> <s>{}</s>\n{}\n<i>id {} · {}</i>",
            escape(&v.headline),
            escape(&v.summary),
            v.short_id,
            escape(&v.status)
        ),
        tone => format!(
            "{} <b>{}</b>\n{}\n<i>id {} · {}</i>",
            icon(tone),
            escape(&v.headline),
            escape(&v.summary),
            v.short_id,
            escape(&v.status)
        ),
    };
    // The summary is ours and short; a pathological one is cut, tags intact.
    let text = if text.chars().count() > 4096 {
        format!(
            "<b>{}</b>\n{}…",
            escape(&v.headline),
            escape(&v.summary.chars().take(3500).collect::<String>())
        )
    } else {
        text
    };
    let keyboard = v
        .buttons
        .chunks(2)
        .map(|row| {
            row.iter()
                .map(|b| json!({"text": b.label(), "callback_data": b.data(&n.fingerprint)}))
                .collect()
        })
        .collect();
    (text, keyboard)
}

fn group(notices: &[StoredNotice]) -> (String, Vec<Vec<Value>>) {
    let g = GroupView::of(notices);
    let paragraph = |v: &AlertView, summary: &str| {
        let label = if v.tone == Tone::Resolved {
            format!("<s>{}</s>", escape(&v.label))
        } else {
            format!("<b>{}</b>", escape(&v.label))
        };
        format!(
            "\n\n{} {label}\n{summary}\n<i>id {} · {}</i>",
            icon(v.tone),
            v.short_id,
            escape(&v.status)
        )
    };
    let head = format!("{} <b>{}</b>", icon(g.tone), escape(&g.headline));
    // Each alert's summary gets an even share of what the rest leaves.
    let rest: usize = head.chars().count()
        + g.items
            .iter()
            .map(|v| paragraph(v, "").chars().count())
            .sum::<usize>();
    let share = 4096usize.saturating_sub(rest) / g.items.len().max(1);
    let mut text = head;
    for v in &g.items {
        text.push_str(&paragraph(v, &super::escape_within(&v.summary, share)));
    }
    let keyboard = g
        .buttons
        .chunks(2)
        .map(|row| {
            row.iter()
                .map(|b| json!({"text": b.label_all(), "callback_data": b.data_all()}))
                .collect()
        })
        .collect();
    (text, keyboard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_card_is_html_with_approve_and_deny_callbacks() {
        let r = crate::engine::request_view::tests::waiting();
        let m = request_message(&RequestView::of(&r));
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with("🟠 <b>R7 · top up"), "{text}");
        assert!(text.contains("Q4 &lt;budget&gt; &amp; more"), "{text}");
        assert_eq!(
            m["reply_markup"]["inline_keyboard"],
            json!([[{"text": "Approve", "callback_data": "approve:R7"},
                    {"text": "Deny", "callback_data": "deny:R7"}]])
        );
        let done = request_message(&RequestView::of(&crate::domain::request::Request {
            state: crate::domain::request::State::Expired,
            ..r
        }));
        assert_eq!(done["reply_markup"]["inline_keyboard"], json!([]));
    }
    use crate::domain::alert::NoticeKind;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn a_firing_alert_is_escaped_html_with_a_keyboard() {
        let m = alert_message(&[notice(NoticeKind::Firing)]);
        assert_eq!(
            m["text"],
            "🟠 <b>[B] expiring · acme / ins-7f3k2a1b</b>\n\
             cvm ins-7f3k2a1b (web&lt;01&gt;) expires in 6 days &amp; counting\n\
             <i>id e0fae2a6 · firing since 2026-11-23 02:00 UTC</i>"
        );
        assert_eq!(
            m["reply_markup"]["inline_keyboard"],
            json!([
                [{"text": "Acknowledge", "callback_data": "ack:e0fae2a62feacddd"},
                 {"text": "Silence 1 h", "callback_data": "silence_1h:e0fae2a62feacddd"}],
                [{"text": "Silence 24 h", "callback_data": "silence_24h:e0fae2a62feacddd"},
                 {"text": "Renew…", "callback_data": "renew:e0fae2a62feacddd"}]
            ])
        );
    }

    #[test]
    fn a_resolved_alert_is_struck_through_and_loses_its_keyboard() {
        let mut n = notice(NoticeKind::Resolved);
        n.resolved_at = Some(n.started_at + chrono::Duration::hours(3));
        let m = alert_message(&[n]);
        assert!(
            m["text"]
                .as_str()
                .unwrap()
                .starts_with("✅ <b>Resolved</b> <s>[B] expiring"),
            "{m}"
        );
        assert_eq!(m["reply_markup"]["inline_keyboard"], json!([]));
    }

    #[test]
    fn a_huge_summary_is_cut_to_fit() {
        let mut n = notice(NoticeKind::Firing);
        n.summary = "<".repeat(5000);
        let m = alert_message(&[n]);
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with("<b>[B] expiring"), "{text}");
        assert!(text.ends_with("&lt;…"), "cut between entities");
        // Telegram counts the text after parsing: each &lt; is one character.
        let shown = text
            .replace("&lt;", "<")
            .replace("<b>", "")
            .replace("</b>", "");
        assert!(shown.chars().count() <= 4096, "{}", shown.chars().count());
    }

    #[test]
    fn a_group_is_one_message_within_the_limit_with_buttons_for_all() {
        let mut notices = crate::engine::alert_view::tests::ten();
        for n in &mut notices {
            n.summary = "<&>".repeat(2_000);
        }
        let m = alert_message(&notices);
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "🟠 <b>acme · 10 alerts firing</b>\n\n🟠 <b>[B] expiring · ins-0</b>\n&lt;&amp;&gt;"
            ),
            "{text}"
        );
        assert!(text.chars().count() <= 4096, "{}", text.chars().count());
        assert_eq!(text.matches("<i>id ").count(), 10);
        let data: Vec<&str> = m["reply_markup"]["inline_keyboard"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap())
            .map(|b| b["callback_data"].as_str().unwrap())
            .collect();
        assert_eq!(
            data,
            ["ack:all", "silence_1h:all", "silence_24h:all", "renew:all"]
        );
    }
}
