//! `[[outputs]]`: where alerts go. Each kind reads its own settings, checked
//! here; a setting the kind does not read is refused at its line.

use std::collections::HashSet;
use std::path::Path;

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use toml::de::{DeTable, DeValue};

use super::{Issues, S, TELEGRAM_TOKEN_SHAPE, api_base, duration};
use crate::adapters::robots::RobotKind;
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
        kind: RobotKind,
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

/// One `[[outputs]]` entry: its name, its kind, and the settings that kind
/// reads. Each kind's settings are their own struct, so a setting the kind
/// does not read is refused by the parser, at its line.
#[derive(Debug)]
pub(super) struct RawOutput {
    pub(super) name: S,
    pub(super) kind: S,
    settings: RawSettings,
}

#[derive(Debug)]
enum RawSettings {
    Console,
    Webhook(RawWebhook),
    Slack(RawChat),
    Discord(RawChat),
    Telegram(RawChat),
    Robot(RobotKind, RawRobot),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<S>,
    secret: Option<S>,
    timeout: Option<S>,
    max_attempts: Option<Spanned<i64>>,
}

/// A chat platform's channel (or chat), its bot token, and its API base.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChat {
    channel: Option<S>,
    token: Option<S>,
    api: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    url: Option<S>,
    secret: Option<S>,
}

const KINDS: &str = "console, webhook, slack, discord, telegram, dingtalk, wecom, feishu";

/// The `outputs` array of the parsed document, each entry read by its kind.
/// Entries that cannot be read are reported and left out.
pub(super) fn read(issues: &mut Issues<'_>, value: Option<Spanned<DeValue<'_>>>) -> Vec<RawOutput> {
    let Some(value) = value else {
        return Vec::new();
    };
    let span = value.span();
    let DeValue::Array(entries) = value.into_inner() else {
        issues.at(
            &Spanned::new(span, ()),
            "outputs",
            "expected [[outputs]] tables, each with a name and a kind",
        );
        return Vec::new();
    };
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| read_one(issues, i, entry))
        .collect()
}

fn read_one(issues: &mut Issues<'_>, i: usize, entry: Spanned<DeValue<'_>>) -> Option<RawOutput> {
    let span = entry.span();
    let here = Spanned::new(span.clone(), ());
    let DeValue::Table(mut table) = entry.into_inner() else {
        issues.at(
            &here,
            format!("outputs[{i}]"),
            "expected a table with a name and a kind",
        );
        return None;
    };
    let mut text = |table: &mut DeTable<'_>, key: &str| match table.remove(key) {
        None => {
            issues.at(
                &here,
                format!("outputs[{i}].{key}"),
                format!("missing; every output has a {key}"),
            );
            None
        }
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                DeValue::String(s) => Some(Spanned::new(span, s.into_owned())),
                _ => {
                    issues.at(
                        &Spanned::new(span, ()),
                        format!("outputs[{i}].{key}"),
                        "expected a string",
                    );
                    None
                }
            }
        }
    };
    let name = text(&mut table, "name");
    let kind = text(&mut table, "kind");
    let (name, kind) = (name?, kind?);
    let rest = Spanned::new(span, DeValue::Table(table));
    let settings = match kind.get_ref().as_str() {
        "console" => settings::<RawConsole>(rest).map(|_| RawSettings::Console),
        "webhook" => settings(rest).map(RawSettings::Webhook),
        "slack" => settings(rest).map(RawSettings::Slack),
        "discord" => settings(rest).map(RawSettings::Discord),
        "telegram" => settings(rest).map(RawSettings::Telegram),
        "dingtalk" => settings(rest).map(|r| RawSettings::Robot(RobotKind::DingTalk, r)),
        "wecom" => settings(rest).map(|r| RawSettings::Robot(RobotKind::WeCom, r)),
        "feishu" => settings(rest).map(|r| RawSettings::Robot(RobotKind::Feishu, r)),
        other => {
            issues.at(
                &kind,
                format!("outputs[{i}].kind"),
                format!("unknown output kind {other:?}; known: {KINDS}"),
            );
            return None;
        }
    };
    match settings {
        Ok(settings) => Some(RawOutput {
            name,
            kind,
            settings,
        }),
        Err(e) => {
            let mut issue = issues.parser_issue(&e);
            if !issue.key.starts_with("outputs[") {
                issue.key = format!("outputs[{i}].{}", issue.key);
            }
            // serde's words for a struct without fields read oddly here.
            let message = issue.message.replace(
                ", there are no fields",
                " (it reads nothing besides name and kind)",
            );
            issue.message = format!("a {} output: {message}", kind.get_ref());
            issues.list.push(issue);
            None
        }
    }
}

/// One kind's settings, from what is left of its table.
fn settings<T: serde::de::DeserializeOwned>(
    table: Spanned<DeValue<'_>>,
) -> Result<T, toml::de::Error> {
    T::deserialize(toml::de::ValueDeserializer::from(table))
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
    let at = Setting {
        i,
        kind: &o.kind,
        base,
    };
    match &o.settings {
        RawSettings::Console => Some(OutputKind::Console),
        RawSettings::Webhook(w) => webhook_output(issues, &at, w),
        RawSettings::Slack(c) => {
            let (channel, token, api) = chat_output(
                issues,
                &at,
                c,
                ChatOutput {
                    channel: "the channel's id (e.g. C0123ABCD, from the channel's details)",
                    token: "env:SLACK_BOT_TOKEN",
                    api: crate::adapters::slack_channel::DEFAULT_API,
                },
            )?;
            Some(OutputKind::Slack {
                channel,
                token,
                api,
            })
        }
        RawSettings::Discord(c) => discord_output(issues, &at, c),
        RawSettings::Telegram(c) => telegram_output(issues, &at, c),
        RawSettings::Robot(kind, r) => {
            let (url, secret) = robot_output(issues, &at, r, *kind)?;
            Some(OutputKind::Robot {
                kind: *kind,
                url,
                secret,
            })
        }
    }
}

/// Where an output's settings stand: which entry, its kind (where a missing
/// setting is reported), and the directory secret files are found from.
struct Setting<'a> {
    i: usize,
    kind: &'a S,
    base: &'a Path,
}

impl Setting<'_> {
    fn key(&self, name: &str) -> String {
        format!("outputs[{}].{name}", self.i)
    }
}

/// A Telegram group, by its chat id, and the bot that posts there.
fn telegram_output(issues: &mut Issues<'_>, at: &Setting<'_>, c: &RawChat) -> Option<OutputKind> {
    let (chat, token, api) = chat_output(
        issues,
        at,
        c,
        ChatOutput {
            channel: "the group's chat id (e.g. -1001234567890; see the README)",
            token: "env:TELEGRAM_BOT_TOKEN",
            api: crate::adapters::telegram::DEFAULT_API,
        },
    )?;
    if !(chat.starts_with('@') || chat.parse::<i64>().is_ok()) {
        issues.at(
            c.channel.as_ref().unwrap_or(at.kind),
            at.key("channel"),
            "a Telegram chat id is a number (a group's is negative, e.g. -1001234567890) or @channelname",
        );
        return None;
    }
    if !crate::adapters::telegram::token_shape_ok(token.expose()) {
        issues.at(
            c.token.as_ref().unwrap_or(at.kind),
            at.key("token"),
            TELEGRAM_TOKEN_SHAPE,
        );
        return None;
    }
    Some(OutputKind::Telegram { chat, token, api })
}

/// A Discord channel, by its id, and the bot that posts there.
fn discord_output(issues: &mut Issues<'_>, at: &Setting<'_>, c: &RawChat) -> Option<OutputKind> {
    let (channel, token, api) = chat_output(
        issues,
        at,
        c,
        ChatOutput {
            channel: "the channel's id (a number: Developer Mode → Copy Channel ID)",
            token: "env:DISCORD_BOT_TOKEN",
            api: crate::adapters::discord::DEFAULT_API,
        },
    )?;
    if !channel.chars().all(|c| c.is_ascii_digit()) {
        issues.at(
            c.channel.as_ref().unwrap_or(at.kind),
            at.key("channel"),
            "a Discord channel id is a number (Developer Mode → Copy Channel ID)",
        );
        return None;
    }
    Some(OutputKind::Discord {
        channel,
        token,
        api,
    })
}

/// A signed JSON webhook: where, with which secret, how patiently.
fn webhook_output(issues: &mut Issues<'_>, at: &Setting<'_>, w: &RawWebhook) -> Option<OutputKind> {
    let url = match &w.url {
        Some(u) => match reqwest::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                issues.at(u, at.key("url"), "must be an http or https URL");
                None
            }
            Err(e) => {
                issues.at(u, at.key("url"), format!("not a URL: {e}"));
                None
            }
        },
        None => {
            issues.at(at.kind, at.key("url"), "a webhook needs a url");
            None
        }
    };
    let secret = match &w.secret {
        Some(s) => Secret::resolve(s.get_ref(), at.base)
            .map_err(|e| issues.at(s, at.key("secret"), e))
            .ok(),
        None => {
            issues.at(
                at.kind,
                at.key("secret"),
                "a webhook needs a signing secret (\"env:NAME\" or \"file:PATH\")",
            );
            None
        }
    };
    let timeout = duration(
        issues,
        &at.key("timeout"),
        w.timeout.as_ref(),
        Duration::seconds(10),
    );
    let max_attempts = match &w.max_attempts {
        None => 10,
        Some(m) => u32::try_from(*m.get_ref())
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                issues.at(m, at.key("max_attempts"), "must be 1 or more");
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
    at: &Setting<'_>,
    r: &RawRobot,
    kind: RobotKind,
) -> Option<(Secret, Option<Secret>)> {
    let example = match kind {
        RobotKind::DingTalk => "env:DINGTALK_ROBOT_URL",
        RobotKind::WeCom => "env:WECOM_ROBOT_URL",
        RobotKind::Feishu => "env:FEISHU_ROBOT_URL",
    };
    let url = match &r.url {
        None => {
            issues.at(
                at.kind,
                at.key("url"),
                format!(
                    "a {} robot needs its webhook URL ({example:?})",
                    kind.name()
                ),
            );
            None
        }
        Some(u) => match Secret::resolve(u.get_ref(), at.base) {
            Err(e) => {
                issues.at(u, at.key("url"), format!("{e}; the robot's URL holds its key, so it is given like a secret ({example:?})"));
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
                        at.key("url"),
                        format!("{} does not hold an http(s) URL", u.get_ref()),
                    );
                    None
                }
            },
        },
    };
    let secret = match (&r.secret, kind) {
        (Some(s), RobotKind::WeCom) => {
            issues.at(
                s,
                at.key("secret"),
                "WeCom robots do not sign: the key in the URL is the secret; remove this",
            );
            None
        }
        (Some(s), _) => Secret::resolve(s.get_ref(), at.base)
            .map_err(|e| issues.at(s, at.key("secret"), e))
            .ok(),
        (None, _) => None,
    };
    Some((url?, secret))
}

/// What a chat output of one kind asks for, in its words.
struct ChatOutput {
    /// How to find the channel's id.
    channel: &'static str,
    /// An example token reference.
    token: &'static str,
    api: &'static str,
}

/// A chat output's channel, bot token and API base, each mistake located.
fn chat_output(
    issues: &mut Issues<'_>,
    at: &Setting<'_>,
    c: &RawChat,
    what: ChatOutput,
) -> Option<(String, Secret, reqwest::Url)> {
    let kind = at.kind.get_ref();
    let channel = match &c.channel {
        Some(c) if !c.get_ref().trim().is_empty() => Some(c.get_ref().trim().to_owned()),
        _ => {
            issues.at(
                at.kind,
                at.key("channel"),
                format!("a {kind} output needs {}", what.channel),
            );
            None
        }
    };
    let token = match &c.token {
        Some(t) => Secret::resolve(t.get_ref(), at.base)
            .map_err(|e| issues.at(t, at.key("token"), e))
            .ok(),
        None => {
            issues.at(
                at.kind,
                at.key("token"),
                format!("a {kind} output needs the bot token ({:?})", what.token),
            );
            None
        }
    };
    let api = api_base(issues, &at.key("api"), c.api.as_ref(), what.api);
    Some((channel?, token?, api?))
}
