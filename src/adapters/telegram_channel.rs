//! Alerts as Telegram messages in a group: HTML text with an inline
//! keyboard, edited in place when the alert is acknowledged, silenced or
//! resolved, and repeats as replies to it. The bot's client keeps each chat
//! within Telegram's limits.

use std::sync::Arc;

use async_trait::async_trait;
use teloxide_core::types::{InlineKeyboardButton, InlineKeyboardMarkup, MessageId};

use super::telegram::{BotApi, escape, recipient, refusal};
use crate::domain::forecast::RunwayChart;
use crate::domain::request::Request;
use crate::engine::alert_view::{AlertView, Button, ChatOutput, GroupView, Tone, still_firing};
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
}

/// A message as purser draws it: HTML text, and its buttons (none: an empty
/// keyboard, which removes those an edited message had).
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub text: String,
    pub keyboard: InlineKeyboardMarkup,
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
        }
    }

    async fn send(&self, card: Card) -> Result<Option<MessageRef>, SendError> {
        let m = self
            .api
            .send_html(recipient(&self.chat), card.text, Some(card.keyboard), None)
            .await?;
        Ok(Some(MessageRef {
            channel: m.chat.id.0.to_string(),
            message: m.id.0.to_string(),
        }))
    }

    /// Redraws a message; the same text again (an edit that raced another)
    /// or a message deleted meanwhile is no failure.
    async fn redraw(&self, at: &MessageRef, card: Card) -> Result<(), SendError> {
        let Some(message) = message_id(at) else {
            tracing::warn!(output = %self.output, message = %at.message, "not a Telegram message id; not edited");
            return Ok(());
        };
        match self
            .api
            .edit_html(recipient(&at.channel), message, card.text, card.keyboard)
            .await
        {
            Err(e) if e.refused_with(refusal::NOT_MODIFIED) => Ok(()),
            Err(e) if e.refused_with(refusal::TO_EDIT_NOT_FOUND) => {
                tracing::info!(output = %self.output, "the Telegram message was deleted; not edited");
                Ok(())
            }
            other => other,
        }
    }

    /// A line in reply to the message at `at`.
    async fn answer(&self, at: &MessageRef, text: &str) -> Result<(), SendError> {
        self.api
            .send_html(
                recipient(&at.channel),
                escape(text).chars().take(4096).collect(),
                None,
                message_id(at),
            )
            .await
            .map(|_| ())
    }
}

fn message_id(at: &MessageRef) -> Option<MessageId> {
    at.message.parse().ok().map(MessageId)
}

fn keyboard<'a>(rows: impl Iterator<Item = &'a [(String, String)]>) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(rows.map(|row| {
        row.iter()
            .map(|(label, data)| InlineKeyboardButton::callback(label.clone(), data.clone()))
            .collect::<Vec<_>>()
    }))
}

/// A page arrives as a private message from the bot, with an Acknowledge
/// button that works as the alert message's does. Telegram lets a bot write
/// only to people who have started a chat with it.
#[async_trait]
impl crate::ports::DirectMessages for TelegramChannel {
    async fn page(&self, user: &str, page: &crate::ports::PageMessage) -> Result<(), SendError> {
        let text = escape(&crate::engine::escalator::page_text(page))
            .chars()
            .take(4096)
            .collect();
        let ack = [(
            Button::Ack.label().to_owned(),
            Button::Ack.data(&page.fingerprint),
        )];
        let sent = self
            .api
            .send_html(
                recipient(user),
                text,
                Some(keyboard([&ack[..]].into_iter())),
                None,
            )
            .await;
        match sent {
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
        self.send(alert_message(notices)).await
    }

    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.redraw(at, alert_message(notices)).await
    }

    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.answer(at, &still_firing(notices)).await
    }

    async fn chart(&self, at: &MessageRef, chart: &RunwayChart) -> Result<(), SendError> {
        let Some(png) = super::chart::runway_png(chart).map_err(SendError::refused)? else {
            return Ok(());
        };
        let caption = format!("Runway of {}", chart.account);
        self.api
            .send_photo(recipient(&at.channel), png, &caption, message_id(at))
            .await
    }
}

#[async_trait]
impl RequestMessages for TelegramChannel {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        self.send(request_message(&RequestView::of(r))).await
    }

    async fn edit_request(&self, at: &MessageRef, r: &Request) -> Result<(), SendError> {
        self.redraw(at, request_message(&RequestView::of(r))).await
    }

    async fn reply_request(&self, at: &MessageRef, text: &str) -> Result<(), SendError> {
        self.answer(at, text).await
    }
}

/// A request's card as Telegram HTML, with Approve and Deny while it waits
/// (an empty keyboard removes them once it is decided).
pub fn request_message(v: &RequestView) -> Card {
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
    let row: Vec<(String, String)> = v
        .buttons
        .iter()
        .map(|c| (c.label().to_owned(), c.data(v.id)))
        .collect();
    Card {
        text,
        keyboard: keyboard(Some(&row[..]).filter(|r| !r.is_empty()).into_iter()),
    }
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
pub fn alert_message(notices: &[StoredNotice]) -> Card {
    let (text, buttons) = match notices {
        [n] => one_alert(n),
        _ => group(notices),
    };
    Card {
        text,
        keyboard: keyboard(buttons.chunks(2)),
    }
}

fn one_alert(n: &StoredNotice) -> (String, Vec<(String, String)>) {
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
    let buttons = v
        .buttons
        .iter()
        .map(|b| (b.label().to_owned(), b.data(&n.fingerprint)))
        .collect();
    (text, buttons)
}

fn group(notices: &[StoredNotice]) -> (String, Vec<(String, String)>) {
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
    let buttons = g
        .buttons
        .iter()
        .map(|b| (b.label_all().to_owned(), b.data_all()))
        .collect();
    (text, buttons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn buttons(card: &Card) -> Value {
        serde_json::to_value(&card.keyboard).unwrap()["inline_keyboard"].clone()
    }

    #[test]
    fn a_request_card_is_html_with_approve_and_deny_callbacks() {
        let r = crate::engine::request_view::tests::waiting();
        let m = request_message(&RequestView::of(&r));
        let text = &m.text;
        assert!(text.starts_with("🟠 <b>R7 · top up"), "{text}");
        assert!(text.contains("Q4 &lt;budget&gt; &amp; more"), "{text}");
        assert_eq!(
            buttons(&m),
            json!([[{"text": "Approve", "callback_data": "approve:R7"},
                    {"text": "Deny", "callback_data": "deny:R7"}]])
        );
        let done = request_message(&RequestView::of(&crate::domain::request::Request {
            state: crate::domain::request::State::Expired,
            ..r
        }));
        assert_eq!(buttons(&done), json!([]));
    }
    use crate::domain::alert::NoticeKind;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn a_firing_alert_is_escaped_html_with_a_keyboard() {
        let m = alert_message(&[notice(NoticeKind::Firing)]);
        assert_eq!(
            m.text,
            "🟠 <b>[B] expiring · acme / ins-7f3k2a1b</b>\n\
             cvm ins-7f3k2a1b (web&lt;01&gt;) expires in 6 days &amp; counting\n\
             <i>id e0fae2a6 · firing since 2026-11-23 02:00 UTC</i>"
        );
        assert_eq!(
            buttons(&m),
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
            m.text.starts_with("✅ <b>Resolved</b> <s>[B] expiring"),
            "{m:?}"
        );
        assert_eq!(buttons(&m), json!([]));
    }

    #[test]
    fn a_huge_summary_is_cut_to_fit() {
        let mut n = notice(NoticeKind::Firing);
        n.summary = "<".repeat(5000);
        let m = alert_message(&[n]);
        let text = &m.text;
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
        let text = &m.text;
        assert!(
            text.starts_with(
                "🟠 <b>acme · 10 alerts firing</b>\n\n🟠 <b>[B] expiring · ins-0</b>\n&lt;&amp;&gt;"
            ),
            "{text}"
        );
        assert!(text.chars().count() <= 4096, "{}", text.chars().count());
        assert_eq!(text.matches("<i>id ").count(), 10);
        let keys = buttons(&m);
        let data: Vec<&str> = keys
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
