//! Alerts as Slack messages in a channel: posted with buttons, edited in
//! place when they resolve, answered in a thread when they repeat. Paced at
//! one message a second per channel, Slack's documented rate.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::block_kit::{Block, ButtonElement, Style};
use super::pace::Pacer;
use super::slack::escape;
use crate::domain::forecast::RunwayChart;
use crate::domain::request::Request;
use crate::engine::alert_view::{
    ALL, AlertView, Button, ChatOutput, GroupView, Tone, still_firing,
};
use crate::engine::request_view::{Choice, RequestView};
use crate::ports::{
    AlertMessages, MessageRef, MessageRefs, RequestMessages, SendError, StoredNotice,
};
use crate::secret::Secret;

pub const DEFAULT_API: &str = "https://slack.com/api/";

pub struct SlackChannel {
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
    pub timeout: StdDuration,
}

impl SlackChannel {
    pub fn new(
        output: String,
        api: reqwest::Url,
        token: Secret,
        channel: String,
        refs: Arc<dyn MessageRefs>,
    ) -> SlackChannel {
        SlackChannel {
            output,
            api,
            token,
            channel,
            http: reqwest::Client::new(),
            refs,
            charts: None,
            // One a second in a channel, and 3 % more for the jitter
            // between leaving here and arriving there.
            pacer: Pacer::every(StdDuration::from_millis(1_030)),
            timeout: StdDuration::from_secs(10),
        }
    }

    /// Where a posted message landed, from chat.postMessage's answer.
    fn posted(&self, v: &Value) -> Option<MessageRef> {
        let at = MessageRef {
            channel: v["channel"].as_str().unwrap_or(&self.channel).to_owned(),
            message: v["ts"].as_str().unwrap_or_default().to_owned(),
        };
        Some(at).filter(|at| !at.message.is_empty())
    }

    /// Calls a Web API method with a JSON body; returns its answer when `ok`.
    async fn call(&self, method: &str, body: Value) -> Result<Value, SendError> {
        self.send(method, |r| r.json(&body)).await
    }

    /// Calls a Web API method with the body `with` sets.
    async fn send(
        &self,
        method: &str,
        with: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Value, SendError> {
        self.pacer.wait().await;
        let url = self
            .api
            .join(method)
            .map_err(|e| SendError::refused(format!("Slack API URL: {e}")))?;
        let response = with(self.http.post(url).bearer_auth(self.token.expose()))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| SendError::transient(format!("Slack {method}: {}", e.without_url())))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let after = super::http::retry_after(response.headers(), UNSAID_PAUSE);
            return Err(SendError::rate_limited(
                format!("Slack {method}: HTTP 429"),
                after,
            ));
        }
        if status.is_server_error() {
            return Err(SendError::transient(format!(
                "Slack {method}: HTTP {status}"
            )));
        }
        let v: Value = response.json().await.map_err(|e| {
            SendError::transient(format!(
                "Slack {method}: unreadable answer: {}",
                e.without_url()
            ))
        })?;
        if v["ok"].as_bool() == Some(true) {
            return Ok(v);
        }
        let error = v["error"].as_str().unwrap_or("no error given").to_owned();
        Err(classify(method, &error))
    }
}

/// The pause taken when Slack says "ratelimited" without a Retry-After.
const UNSAID_PAUSE: StdDuration = StdDuration::from_secs(30);

/// Slack's error codes: what waiting mends, and what a person must fix.
fn classify(method: &str, error: &str) -> SendError {
    let hint = match error {
        "ratelimited" => {
            return SendError::rate_limited(format!("Slack {method}: {error}"), UNSAID_PAUSE);
        }
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            return SendError::transient(format!("Slack {method}: {error}"));
        }
        "not_in_channel" => "invite the app to the channel (/invite @purser)",
        "channel_not_found" => "check the output's channel id",
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
            "check the bot token (xoxb-…)"
        }
        "missing_scope" => {
            "add the bot scopes chat:write and files:write (for runway charts) and reinstall the app"
        }
        "is_archived" => "the channel is archived",
        _ => "",
    };
    if hint.is_empty() {
        SendError::refused_as(error, format!("Slack {method}: {error}"))
    } else {
        SendError::refused_as(error, format!("Slack {method}: {error}: {hint}"))
    }
}

#[async_trait]
impl AlertMessages for SlackChannel {
    async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError> {
        let v = self
            .call(
                "chat.postMessage",
                json!({"channel": self.channel, "text": fallback(notices), "blocks": alert_blocks(notices)}),
            )
            .await?;
        Ok(self.posted(&v))
    }

    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.call(
            "chat.update",
            json!({"channel": at.channel, "ts": at.message, "text": fallback(notices), "blocks": alert_blocks(notices)}),
        )
        .await
        .map(|_| ())
    }

    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.call(
            "chat.postMessage",
            json!({"channel": at.channel, "thread_ts": at.message,
                   "text": escape(&still_firing(notices))}),
        )
        .await
        .map(|_| ())
    }

    /// The chart in the message's thread, by Slack's external upload: ask
    /// for an upload URL, send the bytes there, then share the file.
    async fn chart(&self, at: &MessageRef, chart: &RunwayChart) -> Result<(), SendError> {
        let Some(png) = super::chart::runway_png(chart).map_err(SendError::refused)? else {
            return Ok(());
        };
        let length = png.len().to_string();
        let ticket = self
            .send("files.getUploadURLExternal", |r| {
                r.form(&[("filename", "runway.png"), ("length", length.as_str())])
            })
            .await?;
        let (Some(upload_url), Some(file_id)) =
            (ticket["upload_url"].as_str(), ticket["file_id"].as_str())
        else {
            return Err(SendError::refused(
                "Slack files.getUploadURLExternal: no upload_url or file_id in the answer",
            ));
        };
        // A one-time URL of Slack's: it takes the bytes without the token.
        self.http
            .post(upload_url)
            .header("content-type", "image/png")
            .body(png)
            .timeout(self.timeout)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| SendError::transient(format!("Slack file upload: {}", e.without_url())))?;
        self.call(
            "files.completeUploadExternal",
            json!({"files": [{"id": file_id, "title": format!("Runway of {}", chart.account)}],
                   "channel_id": at.channel, "thread_ts": at.message}),
        )
        .await
        .map(|_| ())
    }
}

impl ChatOutput for SlackChannel {
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

/// The notification text (what a phone's lock screen shows).
fn fallback(notices: &[StoredNotice]) -> String {
    match notices {
        [n] => AlertView::of(n).fallback,
        _ => GroupView::of(notices).fallback,
    }
}

/// The summary, escaped, within a section's 3,000 characters with room
/// for the headline.
fn summary(v: &AlertView) -> String {
    super::escape_within(&v.summary, 2_500)
}

#[async_trait]
impl RequestMessages for SlackChannel {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        let v = RequestView::of(r);
        let v = self
            .call(
                "chat.postMessage",
                json!({"channel": self.channel, "text": escape(&v.fallback), "blocks": request_blocks(&v)}),
            )
            .await?;
        Ok(self.posted(&v))
    }

    async fn edit_request(&self, at: &MessageRef, r: &Request) -> Result<(), SendError> {
        let v = RequestView::of(r);
        match self
            .call(
                "chat.update",
                json!({"channel": at.channel, "ts": at.message, "text": escape(&v.fallback), "blocks": request_blocks(&v)}),
            )
            .await
        {
            // Deleted by someone: there is nothing left to edit.
            Err(e) if e.refused_with("message_not_found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn reply_request(&self, at: &MessageRef, text: &str) -> Result<(), SendError> {
        self.call(
            "chat.postMessage",
            json!({"channel": at.channel, "thread_ts": at.message, "text": escape(text)}),
        )
        .await
        .map(|_| ())
    }
}

/// A page arrives as a direct message from the bot (posting to a user's id
/// opens the conversation), with an Acknowledge button that works as the
/// alert message's does.
#[async_trait]
impl crate::ports::DirectMessages for SlackChannel {
    async fn page(&self, user: &str, page: &crate::ports::PageMessage) -> Result<(), SendError> {
        let text = escape(&crate::engine::escalator::page_text(page));
        self.call(
            "chat.postMessage",
            json!({"channel": user, "text": text, "blocks": [
                Block::section(text.clone()),
                Block::actions(vec![button(Button::Ack, Button::Ack.label(), &page.fingerprint)]),
            ]}),
        )
        .await
        .map(|_| ())
    }
}

/// A request's card: what, cost and who asked, each decision, the status,
/// and Approve and Deny while it waits (the value names the request).
pub fn request_blocks(v: &RequestView) -> Vec<Block> {
    let mut text = format!("{} *{}*", icon(v.tone), escape(&v.headline));
    for l in &v.lines {
        text.push('\n');
        text.push_str(&escape(l));
    }
    // A section takes 3,000 characters; a card is far shorter, but a long
    // reason must not make Slack refuse it.
    let text: String = text.chars().take(2900).collect();
    let mut blocks = vec![Block::section(text)];
    if !v.buttons.is_empty() {
        let buttons = v
            .buttons
            .iter()
            .map(|c| {
                let style = if *c == Choice::Approve {
                    Style::Primary
                } else {
                    Style::Danger
                };
                ButtonElement::new(c.id(), v.id.to_string(), c.label(), Some(style))
            })
            .collect();
        blocks.push(Block::actions(buttons));
    }
    blocks
}

fn icon(tone: Tone) -> &'static str {
    match tone {
        Tone::Critical => ":red_circle:",
        Tone::Warning => ":large_orange_circle:",
        Tone::Minor => ":large_yellow_circle:",
        Tone::Resolved => ":white_check_mark:",
    }
}

/// `id `e0fae2a6` · firing since …`, small, under an alert.
fn context(v: &AlertView) -> Block {
    Block::context(format!("id `{}` · {}", v.short_id, escape(&v.status)))
}

fn button(b: Button, label: &str, value: &str) -> ButtonElement {
    let style = (b == Button::Ack).then_some(Style::Primary);
    ButtonElement::new(b.id(), value, label, style)
}

/// The message for one alert, or for several of one account (a line and
/// its status per alert, then buttons that act on all of them: 2 + 2 × 10
/// blocks at most, within Slack's 50).
pub fn alert_blocks(notices: &[StoredNotice]) -> Vec<Block> {
    if let [n] = notices {
        return one_alert(n);
    }
    let g = GroupView::of(notices);
    let mut blocks = vec![Block::section(format!(
        "{} *{}*",
        icon(g.tone),
        escape(&g.headline)
    ))];
    for v in &g.items {
        let text = if v.tone == Tone::Resolved {
            format!("{} ~{}~\n{}", icon(v.tone), escape(&v.label), summary(v))
        } else {
            format!("{} *{}*\n{}", icon(v.tone), escape(&v.label), summary(v))
        };
        blocks.push(Block::section(text));
        blocks.push(context(v));
    }
    if !g.buttons.is_empty() {
        let buttons = g
            .buttons
            .iter()
            .map(|b| button(*b, b.label_all(), ALL))
            .collect();
        blocks.push(Block::actions(buttons));
    }
    blocks
}

fn one_alert(n: &StoredNotice) -> Vec<Block> {
    let v = AlertView::of(n);
    if v.tone == Tone::Resolved {
        return vec![
            Block::section(format!(
                ":white_check_mark: *Resolved* ~{}~\n{}",
                escape(&v.headline),
                summary(&v)
            )),
            context(&v),
        ];
    }
    let (severity_rule, target) = v.headline.split_once(" · ").unwrap_or((&v.headline, ""));
    let mut blocks = vec![
        Block::section(format!(
            "{} *{}* · {}\n{}",
            icon(v.tone),
            escape(severity_rule),
            escape(target),
            summary(&v)
        )),
        context(&v),
    ];
    if !v.buttons.is_empty() {
        let buttons = v
            .buttons
            .iter()
            .map(|b| button(*b, b.label(), &n.fingerprint))
            .collect();
        blocks.push(Block::actions(buttons));
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_card_escapes_its_text_and_names_the_request_on_each_button() {
        let r = crate::engine::request_view::tests::waiting();
        let blocks = json!(request_blocks(&RequestView::of(&r)));
        let text = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(":large_orange_circle: *R7 · top up"),
            "{text}"
        );
        assert!(text.contains("Q4 &lt;budget&gt; &amp; more"), "{text}");
        let buttons = &blocks[1]["elements"];
        assert_eq!(buttons[0]["action_id"], "approve");
        assert_eq!(buttons[0]["value"], "R7");
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], "deny");
        assert_eq!(buttons[1]["style"], "danger");
        let done = request_blocks(&RequestView::of(&crate::domain::request::Request {
            state: crate::domain::request::State::Cancelled,
            ..r
        }));
        assert_eq!(done.len(), 1, "no buttons once decided");
    }
    use crate::domain::alert::NoticeKind;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn a_firing_alert_renders_with_its_buttons() {
        let b = json!(alert_blocks(&[notice(NoticeKind::Firing)]));
        assert_eq!(
            b[0]["text"]["text"],
            ":large_orange_circle: *[B] expiring* · acme / ins-7f3k2a1b\n\
             cvm ins-7f3k2a1b (web&lt;01&gt;) expires in 6 days &amp; counting"
        );
        assert_eq!(
            b[1]["elements"][0]["text"],
            "id `e0fae2a6` · firing since 2026-11-23 02:00 UTC"
        );
        let values: Vec<(&str, &str)> = b[2]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action_id"].as_str().unwrap(),
                    e["value"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            values,
            [
                ("ack", "e0fae2a62feacddd"),
                ("silence_1h", "e0fae2a62feacddd"),
                ("silence_24h", "e0fae2a62feacddd"),
                ("renew", "e0fae2a62feacddd"),
            ]
        );
    }

    #[test]
    fn a_resolved_alert_renders_without_buttons() {
        let mut n = notice(NoticeKind::Resolved);
        n.resolved_at = Some(n.started_at + chrono::Duration::hours(3));
        let b = json!(alert_blocks(&[n]));
        assert_eq!(b.as_array().unwrap().len(), 2);
        assert!(
            b[0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with(":white_check_mark: *Resolved* ~[B] expiring")
        );
        assert_eq!(
            b[1]["elements"][0]["text"],
            "id `e0fae2a6` · resolved 2026-11-23 05:00 UTC"
        );
    }

    #[test]
    fn slack_errors_say_what_to_fix() {
        assert_eq!(
            classify("chat.postMessage", "ratelimited"),
            SendError::rate_limited("Slack chat.postMessage: ratelimited", UNSAID_PAUSE)
        );
        assert!(matches!(
            classify("chat.update", "internal_error"),
            SendError::Transient { .. }
        ));
        assert!(classify("chat.update", "message_not_found").refused_with("message_not_found"));
        let SendError::Refused { what: m, .. } = classify("chat.postMessage", "not_in_channel")
        else {
            panic!()
        };
        assert!(m.contains("/invite"), "{m}");
        let SendError::Refused { what: m, .. } = classify("chat.postMessage", "missing_scope")
        else {
            panic!()
        };
        assert!(m.contains("chat:write"), "{m}");
        assert!(matches!(
            classify("chat.update", "invalid_blocks"),
            SendError::Refused { .. }
        ));
    }

    #[test]
    fn a_group_is_one_message_with_buttons_for_all() {
        let mut notices = crate::engine::alert_view::tests::ten();
        notices[0].summary = "x".repeat(10_000);
        notices[1].kind = NoticeKind::Resolved;
        let b = json!(alert_blocks(&notices));
        let blocks = b.as_array().unwrap();
        assert_eq!(blocks.len(), 1 + 2 * 10 + 1);
        assert_eq!(
            blocks[0]["text"]["text"],
            ":large_orange_circle: *acme · 10 alerts: 9 firing, 1 resolved*"
        );
        assert_eq!(
            blocks[3]["text"]["text"],
            ":white_check_mark: ~[B] expiring · ins-1~\ncvm ins-1 expires in 6 days"
        );
        assert!(blocks.iter().all(|b| {
            b["text"]["text"]
                .as_str()
                .is_none_or(|t| t.chars().count() <= 3000)
        }));
        let values: Vec<String> = blocks[21]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e["action_id"].as_str().unwrap(),
                    e["value"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            values,
            ["ack=all", "silence_1h=all", "silence_24h=all", "renew=all"]
        );
        assert_eq!(blocks[21]["elements"][0]["text"]["text"], "Acknowledge all");
    }
}
