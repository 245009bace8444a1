//! Group robots as alert channels: DingTalk's custom robot (signed when its
//! "加签" security setting is on), WeCom's group robot and Feishu's custom
//! bot (signed when "签名校验" is on). They can only post, not edit or take
//! button presses, and DingTalk and WeCom allow 20 messages a minute, so
//! notices one poll decides for one account are grouped into one message,
//! and each robot is paced under its limit.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::pace::Pacer;
use crate::domain::alert::NoticeKind;
use crate::engine::alert_view::{AlertView, Tone};
use crate::ports::{Clock, Notifier, SendError, StoredNotice};
use crate::secret::Secret;
use std::sync::Arc;

/// At most this many alerts in one robot message.
pub const GROUP_LIMIT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotKind {
    DingTalk,
    WeCom,
    Feishu,
}

impl RobotKind {
    pub fn name(self) -> &'static str {
        match self {
            RobotKind::DingTalk => "DingTalk",
            RobotKind::WeCom => "WeCom",
            RobotKind::Feishu => "Feishu",
        }
    }

    /// Evenly spaced under each platform's documented rate: DingTalk and
    /// WeCom 20 a minute (DingTalk silences a robot for 10 minutes past it),
    /// Feishu 100 a minute and 5 a second.
    fn pacer(self) -> Pacer {
        match self {
            RobotKind::DingTalk | RobotKind::WeCom => Pacer::every(StdDuration::from_millis(3_100)),
            RobotKind::Feishu => Pacer::every_within(
                StdDuration::from_millis(210),
                97,
                StdDuration::from_secs(60),
            ),
        }
    }

    /// How much text one message may carry (WeCom counts 2,048 bytes).
    fn text_bytes(self) -> usize {
        match self {
            RobotKind::WeCom => 2_048,
            RobotKind::DingTalk | RobotKind::Feishu => 4_000,
        }
    }
}

pub struct Robot {
    pub kind: RobotKind,
    /// The robot's webhook URL: it holds the robot's key, so it is a secret.
    pub url: Secret,
    /// DingTalk's `SEC…` or Feishu's signing secret, when signing is on.
    pub secret: Option<Secret>,
    pub clock: Arc<dyn Clock>,
    pub http: reqwest::Client,
    pub pacer: Pacer,
    pub timeout: StdDuration,
}

impl Robot {
    pub fn new(
        kind: RobotKind,
        url: Secret,
        secret: Option<Secret>,
        clock: Arc<dyn Clock>,
    ) -> Robot {
        Robot {
            kind,
            url,
            secret,
            clock,
            http: reqwest::Client::new(),
            pacer: kind.pacer(),
            timeout: StdDuration::from_secs(10),
        }
    }

    async fn post(&self, text: String) -> Result<(), SendError> {
        self.pacer.wait().await;
        let name = self.kind.name();
        let now = self.clock.now();
        let mut url = reqwest::Url::parse(self.url.expose())
            .map_err(|_| SendError::refused(format!("{name}: the robot URL is not a URL")))?;
        let body = match self.kind {
            RobotKind::DingTalk => {
                if let Some(secret) = &self.secret {
                    let (ts, sign) = dingtalk_sign(secret.expose(), now);
                    url.query_pairs_mut()
                        .append_pair("timestamp", &ts)
                        .append_pair("sign", &sign);
                }
                json!({"msgtype": "text", "text": {"content": text}})
            }
            RobotKind::WeCom => json!({"msgtype": "text", "text": {"content": text}}),
            RobotKind::Feishu => {
                let mut body = json!({"msg_type": "text", "content": {"text": text}});
                if let Some(secret) = &self.secret {
                    let (ts, sign) = feishu_sign(secret.expose(), now);
                    body["timestamp"] = json!(ts);
                    body["sign"] = json!(sign);
                }
                body
            }
        };
        let response = self
            .http
            .post(url)
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await
            // without_url: the URL holds the robot's key.
            .map_err(|e| SendError::transient(format!("{name}: {}", e.without_url())))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let after = super::http::retry_after(response.headers(), StdDuration::from_secs(60));
            return Err(SendError::rate_limited(
                format!("{name}: HTTP {status}"),
                after,
            ));
        }
        if status.is_server_error() {
            return Err(SendError::transient(format!("{name}: HTTP {status}")));
        }
        let v: Value = response.json().await.map_err(|e| {
            SendError::transient(format!(
                "{name}: unreadable answer (HTTP {status}): {}",
                e.without_url()
            ))
        })?;
        classify(self.kind, &v)
    }
}

/// DingTalk: `timestamp` in milliseconds and `sign` = Base64(HMAC-SHA256,
/// key = secret, over "timestamp\nsecret"), both as query parameters (the
/// URL serializer percent-encodes the signature).
pub fn dingtalk_sign(secret: &str, now: DateTime<Utc>) -> (String, String) {
    let ts = now.timestamp_millis().to_string();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{ts}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (ts, sign)
}

/// Feishu: `timestamp` in seconds and `sign` = Base64(HMAC-SHA256 keyed with
/// "timestamp\nsecret", over nothing), both in the body.
pub fn feishu_sign(secret: &str, now: DateTime<Utc>) -> (String, String) {
    let ts = now.timestamp().to_string();
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(format!("{ts}\n{secret}").as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (ts, sign)
}

/// Each robot answers 200 with its own error code in the body.
fn classify(kind: RobotKind, v: &Value) -> Result<(), SendError> {
    let name = kind.name();
    let (code, message) = match kind {
        RobotKind::DingTalk | RobotKind::WeCom => (v["errcode"].as_i64(), &v["errmsg"]),
        RobotKind::Feishu => (
            v["code"].as_i64().or_else(|| v["StatusCode"].as_i64()),
            if v["msg"].is_null() {
                &v["StatusMessage"]
            } else {
                &v["msg"]
            },
        ),
    };
    let message = message.as_str().unwrap_or("no message given");
    let Some(code) = code else {
        return Err(SendError::transient(format!(
            "{name}: an answer without an error code"
        )));
    };
    if code == 0 {
        return Ok(());
    }
    let what = format!("{name}: error {code}: {message}");
    let hint = match (kind, code) {
        // Too fast: DingTalk blocks the robot for 10 minutes; the others
        // count a minute.
        (RobotKind::DingTalk, 130101) => {
            return Err(SendError::rate_limited(what, StdDuration::from_secs(600)));
        }
        (RobotKind::WeCom, 45009) | (RobotKind::Feishu, 11232) => {
            return Err(SendError::rate_limited(what, StdDuration::from_secs(60)));
        }
        (RobotKind::DingTalk, 310000) => {
            "check the signing secret (SEC…), the robot's keywords (every message starts with \"purser\") and its IP allowlist"
        }
        (RobotKind::DingTalk, 300001) => "check the robot URL's access_token",
        (RobotKind::WeCom, 93000) => "check the robot URL's key",
        (RobotKind::Feishu, 19021) => {
            "check the signing secret and this machine's clock (within an hour)"
        }
        (RobotKind::Feishu, 19024) => "the robot's keywords: every message starts with \"purser\"",
        (RobotKind::Feishu, 19022) => "add this machine's address to the robot's IP allowlist",
        _ => "",
    };
    Err(SendError::Refused {
        code: Some(code.to_string()),
        what: if hint.is_empty() {
            what
        } else {
            format!("{what}: {hint}")
        },
    })
}

/// One line per notice, prefixed by what happened.
fn line(n: &StoredNotice) -> String {
    let v = AlertView::of(n);
    let icon = match v.tone {
        Tone::Critical => "🔴",
        Tone::Warning => "🟠",
        Tone::Minor => "🟡",
        Tone::Resolved => "✅",
    };
    let what = match n.kind {
        NoticeKind::Firing if n.escalated_from.is_some() => "Escalated: ".to_owned(),
        NoticeKind::Firing | NoticeKind::Resolved => String::new(),
        NoticeKind::Repeat => "Still firing: ".to_owned(),
        NoticeKind::Acknowledged => format!(
            "Acknowledged by {}: ",
            n.acknowledged_by.as_deref().unwrap_or("someone")
        ),
        NoticeKind::Silenced => format!(
            "Silenced by {} until {}: ",
            n.silenced_by.as_deref().unwrap_or("someone"),
            n.silenced_until
                .map(|t| t.format("%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        ),
        NoticeKind::Paged => format!("{}: ", n.paged.as_deref().unwrap_or("Paged")),
    };
    let resolved = if n.kind == NoticeKind::Resolved {
        "Resolved: "
    } else {
        ""
    };
    format!(
        "{icon} {what}{resolved}{}\n   {} (id {})",
        v.headline, v.summary, v.short_id
    )
}

/// The message for notices of one account decided together: it starts with
/// "purser" (a keyword robots can be told to require), then one entry per
/// notice, within the robot's size.
pub fn message(kind: RobotKind, notices: &[StoredNotice]) -> String {
    let Some(first) = notices.first() else {
        return String::new();
    };
    let mut out = if notices.len() == 1 {
        format!("purser · {}", first.account)
    } else {
        format!("purser · {}: {} alerts", first.account, notices.len())
    };
    let limit = kind.text_bytes();
    for (i, n) in notices.iter().enumerate() {
        let entry = format!("\n{}", line(n));
        let rest = notices.len() - i;
        let more = format!("\n…and {rest} more (ask purser: alerts)");
        if out.len() + entry.len() + more.len() > limit {
            if i == 0 {
                // One entry alone too long: cut it on a character boundary.
                let room = limit.saturating_sub(out.len() + 4);
                let mut cut = room.min(entry.len());
                while !entry.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push_str(&entry[..cut]);
                out.push('…');
                return out;
            }
            out.push_str(&more);
            return out;
        }
        out.push_str(&entry);
    }
    out
}

#[async_trait]
impl Notifier for Robot {
    async fn send(&self, notice: &StoredNotice) -> Result<(), SendError> {
        self.post(message(self.kind, std::slice::from_ref(notice)))
            .await
    }

    fn group_limit(&self) -> usize {
        GROUP_LIMIT
    }

    async fn send_group(&self, notices: &[StoredNotice]) -> Result<(), SendError> {
        self.post(message(self.kind, notices)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::alert_view::tests::notice;
    use chrono::TimeZone;

    /// Expected values computed independently (openssl / Python's hmac) from
    /// the recipe both platforms document, with the secret of DingTalk's own
    /// sample code ("this is secret").
    #[test]
    fn signatures_match_an_independent_computation() {
        let at = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        assert_eq!(
            dingtalk_sign("this is secret", at),
            (
                "1700000000000".to_owned(),
                "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0=".to_owned()
            )
        );
        let at = Utc.timestamp_opt(1_599_360_473, 0).unwrap();
        assert_eq!(
            feishu_sign("this is secret", at),
            (
                "1599360473".to_owned(),
                "/eYKrXQBzTjUZJ3s6NX16VxGbTwmK7AEs8/FnvC1CSw=".to_owned()
            )
        );
    }

    #[test]
    fn grouped_notices_make_one_message_within_the_limit() {
        let mut a = notice(NoticeKind::Firing);
        a.resource = "ins-1".into();
        let mut b = notice(NoticeKind::Acknowledged);
        b.acknowledged_by = Some("ana".into());
        let m = message(RobotKind::DingTalk, &[a.clone(), b]);
        assert_eq!(
            m,
            "purser · acme: 2 alerts\n\
             🟠 [B] expiring · acme / ins-1\n   cvm ins-7f3k2a1b (web<01>) expires in 6 days & counting (id e0fae2a6)\n\
             🟠 Acknowledged by ana: [B] expiring · acme / ins-7f3k2a1b\n   cvm ins-7f3k2a1b (web<01>) expires in 6 days & counting (id e0fae2a6)"
        );
        let mut long = a.clone();
        long.summary = "x".repeat(300);
        let many: Vec<StoredNotice> = (0..10).map(|_| long.clone()).collect();
        let m = message(RobotKind::WeCom, &many);
        assert!(m.len() <= 2_048, "{}", m.len());
        assert!(m.contains("more (ask purser: alerts)"), "{m}");
        let mut huge = a;
        huge.summary = "长".repeat(2_000);
        let m = message(RobotKind::WeCom, &[huge]);
        assert!(m.len() <= 2_048 && m.ends_with('…'), "{}", m.len());
    }

    #[test]
    fn robot_errors_say_what_to_fix() {
        assert!(classify(RobotKind::DingTalk, &json!({"errcode": 0, "errmsg": "ok"})).is_ok());
        assert!(matches!(
            classify(
                RobotKind::DingTalk,
                &json!({"errcode": 130101, "errmsg": "send too fast"})
            ),
            Err(SendError::RateLimited { retry_after, .. }) if retry_after.as_secs() == 600
        ));
        let Err(SendError::Refused { what: m, .. }) = classify(
            RobotKind::DingTalk,
            &json!({"errcode": 310000, "errmsg": "sign not match"}),
        ) else {
            panic!()
        };
        assert!(m.contains("keywords"), "{m}");
        assert!(matches!(
            classify(
                RobotKind::WeCom,
                &json!({"errcode": 45009, "errmsg": "api freq out of limit"})
            ),
            Err(SendError::RateLimited { retry_after, .. }) if retry_after.as_secs() == 60
        ));
        assert!(classify(RobotKind::Feishu, &json!({"code": 0, "msg": "success"})).is_ok());
        assert!(
            classify(
                RobotKind::Feishu,
                &json!({"StatusCode": 0, "StatusMessage": "success"})
            )
            .is_ok()
        );
        let Err(SendError::Refused { what: m, .. }) = classify(
            RobotKind::Feishu,
            &json!({"code": 19021, "msg": "sign match fail"}),
        ) else {
            panic!()
        };
        assert!(m.contains("clock"), "{m}");
        assert!(matches!(
            classify(RobotKind::Feishu, &json!({"unexpected": true})),
            Err(SendError::Transient { .. })
        ));
    }
}
