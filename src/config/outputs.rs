//! `[[outputs]]`: where alerts go. Each kind reads its own settings, checked
//! here; a setting the kind does not read is refused at its line.

use std::collections::HashSet;
use std::path::Path;

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use super::{Issues, S, TELEGRAM_TOKEN_SHAPE, api_base, duration};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub name: String,
    pub kind: OutputKind,
}

#[derive(Debug, Clone)]
pub enum OutputKind {
    Console,
    Webhook {
        url: reqwest::Url,
        secret: Secret,
        timeout: std::time::Duration,
        max_attempts: u32,
    },
    /// Alert messages with buttons in one Slack channel.
    Slack {
        channel: String,
        token: Secret,
        /// The Web API's base URL (tests point it at a mock).
        api: reqwest::Url,
    },
    /// A DingTalk, WeCom or Feishu group robot: posts only, grouped.
    Robot {
        kind: crate::adapters::robots::RobotKind,
        /// The robot's webhook URL (it holds the robot's key).
        url: Secret,
        /// The signing secret, when the robot's signing is on.
        secret: Option<Secret>,
    },
    /// Alert messages with buttons in one Telegram group, sent by the bot.
    Telegram {
        chat: String,
        token: Secret,
        /// The Bot API's base URL (tests point it at a mock).
        api: reqwest::Url,
    },
    /// Alert messages with buttons in one Discord channel, sent by the bot.
    Discord {
        channel: String,
        token: Secret,
        /// The REST API's base URL (tests point it at a mock).
        api: reqwest::Url,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) name: S,
    pub(super) kind: S,
    pub(super) url: Option<S>,
    pub(super) secret: Option<S>,
    pub(super) timeout: Option<S>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) channel: Option<S>,
    pub(super) token: Option<S>,
    pub(super) api: Option<S>,
}

/// Each `[[outputs]]` entry, checked; a name given twice is reported.
pub(super) fn build_outputs(
    issues: &mut Issues<'_>,
    raw: &[RawOutput],
    base: &Path,
) -> Vec<OutputConfig> {
    let mut outputs = Vec::new();
    let mut names = HashSet::new();
    for (i, o) in raw.iter().enumerate() {
        let name = o.name.get_ref().clone();
        if !names.insert(name.clone()) {
            issues.at(
                &o.name,
                format!("outputs[{i}].name"),
                format!("output {name:?} is defined twice"),
            );
        }
        if let Some(kind) = output(issues, base, i, o) {
            outputs.push(OutputConfig { name, kind });
        }
    }
    outputs
}

fn output(issues: &mut Issues<'_>, base: &Path, i: usize, o: &RawOutput) -> Option<OutputKind> {
    foreign_settings(issues, i, o);
    let kind = match o.kind.get_ref().as_str() {
        "console" => OutputKind::Console,
        "slack" => match chat_output(
            issues,
            base,
            i,
            o,
            ChatOutput {
                kind: "slack",
                channel: "the channel's id (e.g. C0123ABCD, from the channel's details)",
                token: "env:SLACK_BOT_TOKEN",
                api: crate::adapters::slack_channel::DEFAULT_API,
            },
        ) {
            Some((channel, token, api)) => OutputKind::Slack {
                channel,
                token,
                api,
            },
            None => return None,
        },
        kind @ ("dingtalk" | "wecom" | "feishu") => {
            use crate::adapters::robots::RobotKind;
            let kind = match kind {
                "dingtalk" => RobotKind::DingTalk,
                "wecom" => RobotKind::WeCom,
                _ => RobotKind::Feishu,
            };
            match robot_output(issues, base, i, o, kind) {
                Some((url, secret)) => OutputKind::Robot { kind, url, secret },
                None => return None,
            }
        }
        "telegram" => telegram_output(issues, base, i, o)?,
        "discord" => discord_output(issues, base, i, o)?,
        "webhook" => webhook_output(issues, base, i, o)?,
        other => {
            issues.at(
                    &o.kind,
                    format!("outputs[{i}].kind"),
                    format!(
                        "unknown output kind {other:?}; known: console, webhook, slack, discord, telegram, dingtalk, wecom, feishu"
                    ),
                );
            return None;
        }
    };
    Some(kind)
}

/// Settings given to an output of a kind that does not read them (a
/// `channel` on a webhook) are refused where they stand, not ignored.
fn foreign_settings(issues: &mut Issues<'_>, i: usize, o: &RawOutput) {
    let kind = o.kind.get_ref().as_str();
    let reads: &[&str] = match kind {
        "console" => &[],
        "webhook" => &["url", "secret", "timeout", "max_attempts"],
        "slack" | "discord" | "telegram" => &["channel", "token", "api"],
        "dingtalk" | "wecom" | "feishu" => &["url", "secret"],
        // An unknown kind is reported by itself.
        _ => return,
    };
    let given = [
        ("url", o.url.as_ref().map(|v| v.span())),
        ("secret", o.secret.as_ref().map(|v| v.span())),
        ("timeout", o.timeout.as_ref().map(|v| v.span())),
        ("max_attempts", o.max_attempts.as_ref().map(|v| v.span())),
        ("channel", o.channel.as_ref().map(|v| v.span())),
        ("token", o.token.as_ref().map(|v| v.span())),
        ("api", o.api.as_ref().map(|v| v.span())),
    ];
    for (key, span) in given {
        let Some(span) = span else { continue };
        if reads.contains(&key) {
            continue;
        }
        let settings = if reads.is_empty() {
            "it has none besides name and kind".to_owned()
        } else {
            format!("its settings: {}", reads.join(", "))
        };
        issues.at(
            &Spanned::new(span, ()),
            format!("outputs[{i}].{key}"),
            format!("a {kind} output does not read `{key}` ({settings})"),
        );
    }
}

/// A Telegram group, by its chat id, and the bot that posts there.
fn telegram_output(
    issues: &mut Issues<'_>,
    base: &Path,
    i: usize,
    o: &RawOutput,
) -> Option<OutputKind> {
    match chat_output(
        issues,
        base,
        i,
        o,
        ChatOutput {
            kind: "telegram",
            channel: "the group's chat id (e.g. -1001234567890; see the README)",
            token: "env:TELEGRAM_BOT_TOKEN",
            api: crate::adapters::telegram::DEFAULT_API,
        },
    ) {
        Some((chat, _, _)) if !(chat.starts_with('@') || chat.parse::<i64>().is_ok()) => {
            issues.at(
                o.channel.as_ref().unwrap_or(&o.kind),
                format!("outputs[{i}].channel"),
                "a Telegram chat id is a number (a group's is negative, e.g. -1001234567890) or @channelname",
            );
            None
        }
        Some((_, token, _)) if !crate::adapters::telegram::token_shape_ok(token.expose()) => {
            issues.at(
                o.token.as_ref().unwrap_or(&o.kind),
                format!("outputs[{i}].token"),
                TELEGRAM_TOKEN_SHAPE,
            );
            None
        }
        Some((chat, token, api)) => Some(OutputKind::Telegram { chat, token, api }),
        None => None,
    }
}

/// A Discord channel, by its id, and the bot that posts there.
fn discord_output(
    issues: &mut Issues<'_>,
    base: &Path,
    i: usize,
    o: &RawOutput,
) -> Option<OutputKind> {
    match chat_output(
        issues,
        base,
        i,
        o,
        ChatOutput {
            kind: "discord",
            channel: "the channel's id (a number: Developer Mode → Copy Channel ID)",
            token: "env:DISCORD_BOT_TOKEN",
            api: crate::adapters::discord::DEFAULT_API,
        },
    ) {
        Some((channel, _, _)) if !channel.chars().all(|c| c.is_ascii_digit()) => {
            issues.at(
                o.channel.as_ref().unwrap_or(&o.kind),
                format!("outputs[{i}].channel"),
                "a Discord channel id is a number (Developer Mode → Copy Channel ID)",
            );
            None
        }
        Some((channel, token, api)) => Some(OutputKind::Discord {
            channel,
            token,
            api,
        }),
        None => None,
    }
}

/// A signed JSON webhook: where, with which secret, how patiently.
fn webhook_output(
    issues: &mut Issues<'_>,
    base: &Path,
    i: usize,
    o: &RawOutput,
) -> Option<OutputKind> {
    let url = match &o.url {
        Some(u) => match reqwest::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                issues.at(
                    u,
                    format!("outputs[{i}].url"),
                    "must be an http or https URL",
                );
                None
            }
            Err(e) => {
                issues.at(u, format!("outputs[{i}].url"), format!("not a URL: {e}"));
                None
            }
        },
        None => {
            issues.at(
                &o.kind,
                format!("outputs[{i}].url"),
                "a webhook needs a url",
            );
            None
        }
    };
    let secret = match &o.secret {
        Some(s) => Secret::resolve(s.get_ref(), base)
            .map_err(|e| issues.at(s, format!("outputs[{i}].secret"), e))
            .ok(),
        None => {
            issues.at(
                &o.kind,
                format!("outputs[{i}].secret"),
                "a webhook needs a signing secret (\"env:NAME\" or \"file:PATH\")",
            );
            None
        }
    };
    let timeout = duration(
        issues,
        &format!("outputs[{i}].timeout"),
        o.timeout.as_ref(),
        Duration::seconds(10),
    );
    let max_attempts = match &o.max_attempts {
        None => 10,
        Some(m) => u32::try_from(*m.get_ref())
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                issues.at(m, format!("outputs[{i}].max_attempts"), "must be 1 or more");
                1
            }),
    };
    match (url, secret, timeout.to_std()) {
        (Some(url), Some(secret), Ok(timeout)) => Some(OutputKind::Webhook {
            url,
            secret,
            timeout,
            max_attempts,
        }),
        _ => None,
    }
}

/// The platform whose direct messages an output's bot token can send.
pub fn dm_platform(kind: &OutputKind) -> Option<&'static str> {
    match kind {
        OutputKind::Slack { .. } => Some("slack"),
        OutputKind::Discord { .. } => Some("discord"),
        OutputKind::Telegram { .. } => Some("telegram"),
        _ => None,
    }
}

/// Whether an output can show a request card: chat channels (with buttons)
/// and the console.
pub(super) fn shows_requests(kind: &OutputKind) -> bool {
    matches!(
        kind,
        OutputKind::Console
            | OutputKind::Slack { .. }
            | OutputKind::Discord { .. }
            | OutputKind::Telegram { .. }
    )
}

/// A group robot's URL (a secret reference: the URL holds the robot's key)
/// and signing secret.
fn robot_output(
    issues: &mut Issues<'_>,
    base: &Path,
    i: usize,
    o: &RawOutput,
    kind: crate::adapters::robots::RobotKind,
) -> Option<(Secret, Option<Secret>)> {
    use crate::adapters::robots::RobotKind;
    let example = match kind {
        RobotKind::DingTalk => "env:DINGTALK_ROBOT_URL",
        RobotKind::WeCom => "env:WECOM_ROBOT_URL",
        RobotKind::Feishu => "env:FEISHU_ROBOT_URL",
    };
    let url = match &o.url {
        None => {
            issues.at(
                &o.kind,
                format!("outputs[{i}].url"),
                format!(
                    "a {} robot needs its webhook URL ({example:?})",
                    kind.name()
                ),
            );
            None
        }
        Some(u) => match Secret::resolve(u.get_ref(), base) {
            Err(e) => {
                issues.at(u, format!("outputs[{i}].url"), format!("{e}; the robot's URL holds its key, so it is given like a secret ({example:?})"));
                None
            }
            Ok(url) => match reqwest::Url::parse(url.expose().trim()) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    Some(Secret::from_value(url.expose().trim()))
                }
                // Never echo the value: it holds the key.
                _ => {
                    issues.at(
                        u,
                        format!("outputs[{i}].url"),
                        format!("{} does not hold an http(s) URL", u.get_ref()),
                    );
                    None
                }
            },
        },
    };
    let secret = match (&o.secret, kind) {
        (Some(s), RobotKind::WeCom) => {
            issues.at(
                s,
                format!("outputs[{i}].secret"),
                "WeCom robots do not sign: the key in the URL is the secret; remove this",
            );
            None
        }
        (Some(s), _) => Secret::resolve(s.get_ref(), base)
            .map_err(|e| issues.at(s, format!("outputs[{i}].secret"), e))
            .ok(),
        (None, _) => None,
    };
    Some((url?, secret))
}

/// What a chat output of one kind asks for, in its words.
struct ChatOutput {
    kind: &'static str,
    /// How to find the channel's id.
    channel: &'static str,
    /// An example token reference.
    token: &'static str,
    api: &'static str,
}

/// A chat output's channel, bot token and API base, each mistake located.
fn chat_output(
    issues: &mut Issues<'_>,
    base: &Path,
    i: usize,
    o: &RawOutput,
    what: ChatOutput,
) -> Option<(String, Secret, reqwest::Url)> {
    let channel = match &o.channel {
        Some(c) if !c.get_ref().trim().is_empty() => Some(c.get_ref().trim().to_owned()),
        _ => {
            issues.at(
                &o.kind,
                format!("outputs[{i}].channel"),
                format!("a {} output needs {}", what.kind, what.channel),
            );
            None
        }
    };
    let token = match &o.token {
        Some(t) => Secret::resolve(t.get_ref(), base)
            .map_err(|e| issues.at(t, format!("outputs[{i}].token"), e))
            .ok(),
        None => {
            issues.at(
                &o.kind,
                format!("outputs[{i}].token"),
                format!(
                    "a {} output needs the bot token ({:?})",
                    what.kind, what.token
                ),
            );
            None
        }
    };
    let api = api_base(
        issues,
        &format!("outputs[{i}].api"),
        o.api.as_ref(),
        what.api,
    );
    Some((channel?, token?, api?))
}
