//! Alerts as Discord messages in a channel, sent by the application's bot
//! through serenity: an embed with buttons, edited in place when the alert
//! is acknowledged, silenced or resolved, and repeats as replies to it.
//! Paced as Discord limits it: a channel's bucket lets 5 messages go in
//! 5 s (a burst, then a wait for the window), and a bot makes at most 50
//! requests a second in all, a pace its channels share. serenity's rate
//! limiter, shared by all of the bot's calls, also keeps the buckets the
//! `X-RateLimit-*` headers describe and waits out a 429's `retry_after`;
//! it does not run behind a proxy (`api`), and learns the global limit only
//! from a 429, so purser paces itself as well.

use std::sync::Arc;

use async_trait::async_trait;
use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateButton,
    CreateEmbed, CreateEmbedFooter, CreateMessage, EditMessage, Http, MessageId, MessageReference,
    MessageReferenceKind, UserId,
};

use super::discord::{UNKNOWN_MESSAGE, escape, within};
use super::pace::{Bucket, Pacer};
use crate::domain::forecast::RunwayChart;
use crate::domain::request::Request;
use crate::engine::alert_view::{AlertView, Button, ChatOutput, GroupView, Tone, still_firing};
use crate::engine::request_view::{Choice, RequestView};
use crate::ports::{
    AlertMessages, MessageRef, MessageRefs, RequestMessages, SendError, StoredNotice,
};

/// Embed limits: a title of 256 characters, a description of 4,096.
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;
/// A message's content is at most 2,000 characters.
const CONTENT_CHARS: usize = 2000;

/// Discord's global limit for a bot: 50 requests a second.
const GLOBAL_PER_SECOND: std::num::NonZeroU32 = std::num::NonZeroU32::new(50).unwrap();

/// One bot's pace, for all of its channels: just under the global limit.
pub fn global_pace() -> Pacer {
    Pacer::new(GLOBAL_PER_SECOND)
}

/// A channel's: 5 messages in any 5.15 s. The bucket Discord reports for
/// creating messages is 5 in 5 s from the first; the 3 % more absorbs the
/// jitter between leaving here and arriving there.
fn channel_bucket() -> Bucket {
    Bucket::new(5, std::time::Duration::from_millis(5_150))
}

pub struct DiscordChannel {
    /// The output's name, under which its messages are remembered.
    pub output: String,
    /// The bot's REST client (`discord::rest_client`), shared with its other
    /// outputs and its gateway.
    pub http: Arc<Http>,
    pub channel: ChannelId,
    pub refs: Arc<dyn MessageRefs>,
    /// Runway charts for messages about money running out; none, none sent.
    pub charts: Option<Arc<crate::engine::charts::Charts>>,
    /// This channel's bucket.
    pub bucket: Bucket,
    /// The bot's pace under the global limit, shared by its channels.
    pub pacer: Arc<Pacer>,
}

impl DiscordChannel {
    /// `channel`: the channel's id, a number other than zero; `pacer`: the
    /// bot's (`global_pace`).
    pub fn new(
        output: String,
        http: Arc<Http>,
        pacer: Arc<Pacer>,
        channel: &str,
        refs: Arc<dyn MessageRefs>,
    ) -> Result<DiscordChannel, String> {
        let channel = snowflake(channel)
            .map(ChannelId::new)
            .ok_or("a Discord channel id is a number other than 0")?;
        Ok(DiscordChannel {
            output,
            http,
            channel,
            refs,
            charts: None,
            bucket: channel_bucket(),
            pacer,
        })
    }

    async fn send(&self, to: ChannelId, message: CreateMessage) -> Result<MessageRef, SendError> {
        self.bucket.wait_then(&self.pacer).await;
        let sent = within("Discord: posting", to.send_message(&*self.http, message)).await?;
        Ok(MessageRef {
            channel: sent.channel_id.to_string(),
            message: sent.id.to_string(),
        })
    }

    /// Edits a message; one deleted by someone leaves nothing to edit.
    async fn redraw(&self, at: &MessageRef, message: EditMessage) -> Result<(), SendError> {
        let (channel, id) = message_at(at)?;
        self.bucket.wait_then(&self.pacer).await;
        match within(
            "Discord: editing",
            channel.edit_message(&*self.http, id, message),
        )
        .await
        {
            Err(e) if e.refused_with(UNKNOWN_MESSAGE) => {
                tracing::info!(output = %self.output, "the Discord message was deleted; not edited");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// A reply to the message at `at` (posted even when that one is gone).
    async fn reply_to(&self, at: &MessageRef, message: CreateMessage) -> Result<(), SendError> {
        let (channel, id) = message_at(at)?;
        let reference = MessageReference::new(MessageReferenceKind::Default, channel)
            .message_id(id)
            .fail_if_not_exists(false);
        self.send(channel, message.reference_message(reference))
            .await
            .map(|_| ())
    }
}

/// A Discord id: a number other than zero (serenity's ids cannot be zero).
fn snowflake(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|id| *id != 0)
}

/// A remembered message's channel and id, as Discord's types.
fn message_at(at: &MessageRef) -> Result<(ChannelId, MessageId), SendError> {
    match (snowflake(&at.channel), snowflake(&at.message)) {
        (Some(c), Some(m)) => Ok((ChannelId::new(c), MessageId::new(m))),
        _ => Err(SendError::refused(format!(
            "{:?} in {:?} is not a Discord message id",
            at.message, at.channel
        ))),
    }
}

/// Plain text that mentions nobody.
fn text(content: &str) -> CreateMessage {
    CreateMessage::new()
        .content(super::cut(&escape(content), CONTENT_CHARS))
        .allowed_mentions(CreateAllowedMentions::new())
}

#[async_trait]
impl AlertMessages for DiscordChannel {
    async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError> {
        let sent = self
            .send(self.channel, alert_message(notices).create())
            .await?;
        Ok(Some(sent))
    }

    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.redraw(at, alert_message(notices).edit()).await
    }

    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.reply_to(at, text(&still_firing(notices))).await
    }

    /// The chart as a reply to the alert's message, the image attached.
    async fn chart(&self, at: &MessageRef, chart: &RunwayChart) -> Result<(), SendError> {
        let Some(png) = super::chart::runway_png(chart).map_err(SendError::refused)? else {
            return Ok(());
        };
        let image = CreateAttachment::bytes(png, "runway.png")
            .description(format!("Runway of {}", chart.account));
        let message = CreateMessage::new()
            .add_file(image)
            .allowed_mentions(CreateAllowedMentions::new());
        self.reply_to(at, message).await
    }
}

/// A page arrives as a direct message from the bot, with an Acknowledge
/// button that works as the alert message's does. Opening the DM channel
/// returns the same channel each time, so nothing needs remembering.
#[async_trait]
impl crate::ports::DirectMessages for DiscordChannel {
    async fn page(&self, user: &str, page: &crate::ports::PageMessage) -> Result<(), SendError> {
        let user = snowflake(user).map(UserId::new).ok_or_else(|| {
            SendError::refused(format!("{user:?} is not a Discord user id (a number)"))
        })?;
        let dm = within(
            "Discord: opening a direct message",
            user.create_dm_channel(&*self.http),
        )
        .await?;
        let message =
            text(&crate::engine::escalator::page_text(page)).components(rows(vec![button(
                Button::Ack,
                Button::Ack.label(),
                Button::Ack.data(&page.fingerprint),
            )]));
        self.send(dm.id, message).await.map(|_| ())
    }
}

#[async_trait]
impl RequestMessages for DiscordChannel {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        let card = request_message(&RequestView::of(r));
        Ok(Some(self.send(self.channel, card.create()).await?))
    }

    async fn edit_request(&self, at: &MessageRef, r: &Request) -> Result<(), SendError> {
        self.redraw(at, request_message(&RequestView::of(r)).edit())
            .await
    }

    async fn reply_request(&self, at: &MessageRef, said: &str) -> Result<(), SendError> {
        self.reply_to(at, text(said)).await
    }
}

/// A message as purser draws it: content, embeds and buttons, sent new or
/// as an edit (where an empty button list removes the buttons).
pub struct Card {
    pub content: String,
    pub embeds: Vec<CreateEmbed>,
    pub buttons: Vec<CreateButton>,
}

impl Card {
    pub fn create(self) -> CreateMessage {
        CreateMessage::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(rows(self.buttons))
            .allowed_mentions(CreateAllowedMentions::new())
    }

    pub fn edit(self) -> EditMessage {
        EditMessage::new()
            .content(self.content)
            .embeds(self.embeds)
            .components(rows(self.buttons))
            .allowed_mentions(CreateAllowedMentions::new())
    }
}

fn embed(
    title: &str,
    title_chars: usize,
    description: &str,
    chars: usize,
    colour: u32,
) -> CreateEmbed {
    CreateEmbed::new()
        .title(super::cut(&escape(title), title_chars))
        .description(super::cut(&escape(description), chars))
        .colour(colour)
}

/// A request's card as an embed, with Approve (green) and Deny (red) while
/// it waits; none once it is decided.
pub fn request_message(v: &RequestView) -> Card {
    let (title, colour) = match v.tone {
        Tone::Resolved => (format!("✅ {}", v.headline), 0x2e_b8_86),
        Tone::Critical => (format!("🔴 {}", v.headline), 0xe0_1e_5a),
        Tone::Warning => (format!("🟠 {}", v.headline), 0xf2_99_1c),
        Tone::Minor => (format!("🟡 {}", v.headline), 0xec_b2_2e),
    };
    let buttons = v
        .buttons
        .iter()
        .map(|c| {
            let style = if *c == Choice::Approve {
                ButtonStyle::Success
            } else {
                ButtonStyle::Danger
            };
            CreateButton::new(c.data(v.id))
                .label(c.label())
                .style(style)
        })
        .collect();
    Card {
        content: String::new(),
        embeds: vec![embed(
            &title,
            TITLE_CHARS,
            &v.lines.join("\n"),
            DESCRIPTION_CHARS,
            colour,
        )],
        buttons,
    }
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

fn title_and_colour(v: &AlertView, title: &str) -> (String, u32) {
    match v.tone {
        Tone::Resolved => (format!("✅ Resolved · {title}"), 0x2e_b8_86),
        Tone::Critical => (format!("🔴 {title}"), 0xe0_1e_5a),
        Tone::Warning => (format!("🟠 {title}"), 0xf2_99_1c),
        Tone::Minor => (format!("🟡 {title}"), 0xec_b2_2e),
    }
}

/// Buttons in rows of five, Discord's most (an empty list removes them).
fn rows(buttons: Vec<CreateButton>) -> Vec<CreateActionRow> {
    buttons
        .chunks(5)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
}

fn button(b: Button, label: &str, custom_id: String) -> CreateButton {
    let style = if b == Button::Ack {
        ButtonStyle::Primary
    } else {
        ButtonStyle::Secondary
    };
    CreateButton::new(custom_id).label(label).style(style)
}

/// One alert as a Discord message: an embed coloured by severity and its
/// buttons; several of one account as an embed each (ten at most, Discord's
/// limit, cut to stay within its 6,000 characters for all embeds) with
/// buttons that act on all of them.
pub fn alert_message(notices: &[StoredNotice]) -> Card {
    match notices {
        [n] => {
            let v = AlertView::of(n);
            let (title, colour) = title_and_colour(&v, &v.headline);
            let embed = embed(&title, TITLE_CHARS, &v.summary, DESCRIPTION_CHARS, colour).footer(
                CreateEmbedFooter::new(format!("id {} · {}", v.short_id, v.status)),
            );
            let buttons = v
                .buttons
                .iter()
                .map(|b| button(*b, b.label(), b.data(&n.fingerprint)))
                .collect();
            Card {
                content: String::new(),
                embeds: vec![embed],
                buttons,
            }
        }
        _ => {
            let g = GroupView::of(notices);
            let embeds = g
                .items
                .iter()
                .map(|v| {
                    let (title, colour) = title_and_colour(v, &v.label);
                    embed(&title, 120, &v.summary, 350, colour).footer(CreateEmbedFooter::new(
                        super::cut(&format!("id {} · {}", v.short_id, v.status), 100),
                    ))
                })
                .collect();
            let buttons = g
                .buttons
                .iter()
                .map(|b| button(*b, b.label_all(), b.data_all()))
                .collect();
            Card {
                content: format!("**{}**", escape(&g.headline)),
                embeds,
                buttons,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// What Discord is sent for a new message drawn as `card`.
    fn sent(card: Card) -> Value {
        serde_json::to_value(card.create()).unwrap()
    }

    #[test]
    fn a_request_card_is_an_embed_with_green_and_red_buttons() {
        let r = crate::engine::request_view::tests::waiting();
        let m = sent(request_message(&RequestView::of(&r)));
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
        let done = sent(request_message(&RequestView::of(
            &crate::domain::request::Request {
                state: crate::domain::request::State::Verified,
                ..r
            },
        )));
        assert_eq!(done["components"], json!([]));
    }
    use crate::domain::alert::NoticeKind;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn a_firing_alert_is_an_embed_with_buttons() {
        let m = sent(alert_message(&[notice(NoticeKind::Firing)]));
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
        let m = sent(alert_message(&[n]));
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
        let m = sent(alert_message(&[n]));
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
    fn a_group_is_an_embed_per_alert_within_discords_limits() {
        let mut notices = crate::engine::alert_view::tests::ten();
        for n in &mut notices {
            n.summary = "*".repeat(5_000);
        }
        let m = sent(alert_message(&notices));
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
