//! `[slack]`, `[discord]` and `[telegram]`: how each platform reaches purser
//! (its socket, gateway or long polling, or HTTP) and with which app.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Issues, S};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub mode: SlackMode,
    /// The Web API's base URL (tests use a mock).
    pub api: reqwest::Url,
}

#[derive(Debug, Clone)]
pub enum SlackMode {
    /// Socket Mode: purser connects out with the app-level token; no public URL.
    Socket { app_token: Secret },
    /// Requests to `/slack/*`, verified with the signing secret.
    Http { signing_secret: Secret },
}

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub mode: DiscordMode,
    pub application_id: String,
    /// The REST API's base URL (tests use a mock).
    pub api: reqwest::Url,
}

#[derive(Debug, Clone)]
pub enum DiscordMode {
    /// The bot keeps a gateway connection; no public URL.
    Gateway { token: Secret },
    /// Interactions posted to `/discord/interactions`, verified with the
    /// application's public key (64 hex digits). With the bot token, purser
    /// also publishes the `/purser` command.
    Http {
        public_key: String,
        token: Option<Secret>,
    },
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub token: Secret,
    /// The Bot API's base URL (tests use a mock).
    pub api: reqwest::Url,
    pub mode: TelegramMode,
}

#[derive(Debug, Clone)]
pub enum TelegramMode {
    /// `getUpdates`: no public URL needed.
    Polling,
    /// Telegram posts updates to `url` (this daemon's `/telegram/webhook`),
    /// each carrying `secret`.
    Webhook { url: reqwest::Url, secret: Secret },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelegram {
    pub(super) token: S,
    pub(super) mode: Option<S>,
    pub(super) webhook_url: Option<S>,
    pub(super) webhook_secret: Option<S>,
    pub(super) api: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscord {
    pub(super) mode: Option<S>,
    pub(super) token: Option<S>,
    pub(super) public_key: Option<S>,
    pub(super) application_id: S,
    pub(super) api: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    pub(super) mode: Option<S>,
    pub(super) app_token: Option<S>,
    pub(super) signing_secret: Option<S>,
    pub(super) api: Option<S>,
}

pub(super) fn build_discord(
    issues: &mut Issues<'_>,
    base: &Path,
    d: &RawDiscord,
    has_http: bool,
) -> Option<DiscordConfig> {
    let id = d.application_id.get_ref().trim().to_owned();
    let id_ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_digit());
    if !id_ok {
        issues.at(
            &d.application_id,
            "discord.application_id",
            "the application ID is a number (Developer Portal → General Information)",
        );
    }
    let api = api_base(
        issues,
        "discord.api",
        d.api.as_ref(),
        crate::adapters::discord::DEFAULT_API,
    );
    let token = d.token.as_ref().and_then(|t| {
        Secret::resolve(t.get_ref(), base)
            .map_err(|e| issues.at(t, "discord.token", e))
            .ok()
    });
    let mode = match d.mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("gateway") => {
            if let Some(k) = &d.public_key {
                issues.at(
                    k,
                    "discord.public_key",
                    "the public key verifies interactions over HTTP: with the gateway (the default) leave it out, and leave the portal's Interactions Endpoint URL empty; or set mode = \"http\"",
                );
            }
            if d.token.is_none() {
                issues.at(
                    &d.application_id,
                    "discord.token",
                    "the gateway (the default) needs token = \"env:DISCORD_BOT_TOKEN\" (Developer Portal → Bot → Reset Token); or set mode = \"http\" and public_key",
                );
            }
            token.map(|token| DiscordMode::Gateway { token })
        }
        Some("http") => {
            let at = d.mode.as_ref().unwrap_or(&d.application_id);
            if !has_http {
                issues.at(
                    at,
                    "discord.mode",
                    "over HTTP, Discord's interactions arrive at this daemon: set [http] listen (or use the gateway, the default)",
                );
            }
            match &d.public_key {
                None => {
                    issues.at(
                        at,
                        "discord.public_key",
                        "mode = \"http\" needs public_key (Developer Portal → General Information)",
                    );
                    None
                }
                Some(k) => crate::adapters::discord::Verifier::new(k.get_ref())
                    .map_err(|e| issues.at(k, "discord.public_key", e))
                    .ok()
                    .map(|_| DiscordMode::Http {
                        public_key: k.get_ref().trim().to_owned(),
                        token,
                    }),
            }
        }
        Some(other) => {
            if let Some(m) = &d.mode {
                issues.at(
                    m,
                    "discord.mode",
                    format!("unknown mode {other:?}; known: gateway, http"),
                );
            }
            None
        }
    };
    id_ok.then_some(())?;
    Some(DiscordConfig {
        mode: mode?,
        application_id: id,
        api: api?,
    })
}

pub(super) fn build_slack(
    issues: &mut Issues<'_>,
    base: &Path,
    s: &Spanned<RawSlack>,
    has_http: bool,
) -> Option<SlackConfig> {
    let raw = s.get_ref();
    let at_mode = raw.mode.as_ref();
    let secret = |issues: &mut Issues<'_>, v: &S, key: &str| {
        Secret::resolve(v.get_ref(), base)
            .map_err(|e| issues.at(v, key, e))
            .ok()
    };
    let api = api_base(
        issues,
        "slack.api",
        raw.api.as_ref(),
        crate::adapters::slack_channel::DEFAULT_API,
    );
    let mode = match at_mode.map(|m| m.get_ref().as_str()) {
        None | Some("socket") => {
            if let Some(v) = &raw.signing_secret {
                issues.at(
                    v,
                    "slack.signing_secret",
                    "the signing secret verifies requests over HTTP: with Socket Mode (the default) leave it out, or set mode = \"http\"",
                );
            }
            match &raw.app_token {
                None => {
                    issues.at(
                        s,
                        "slack.app_token",
                        "Socket Mode (the default) needs app_token = \"env:SLACK_APP_TOKEN\", an app-level token (xapp-…) with connections:write; or set mode = \"http\" and signing_secret",
                    );
                    None
                }
                Some(v) => secret(issues, v, "slack.app_token").filter(|t| {
                    let ok = t.expose().starts_with("xapp-");
                    if !ok {
                        issues.at(
                            v,
                            "slack.app_token",
                            "an app-level token starts with xapp- (Basic Information → App-Level Tokens); a bot token (xoxb-) cannot open Socket Mode",
                        );
                    }
                    ok
                }),
            }
            .map(|app_token| SlackMode::Socket { app_token })
        }
        Some("http") => {
            if let (false, Some(m)) = (has_http, at_mode) {
                issues.at(
                    m,
                    "slack.mode",
                    "over HTTP, Slack's commands and buttons arrive at this daemon: set [http] listen (or use Socket Mode, the default)",
                );
            }
            if let Some(v) = &raw.app_token {
                issues.at(
                    v,
                    "slack.app_token",
                    "the app-level token opens Socket Mode: with mode = \"http\" leave it out",
                );
            }
            match &raw.signing_secret {
                None => {
                    if let Some(m) = at_mode {
                        issues.at(
                            m,
                        "slack.signing_secret",
                            "mode = \"http\" needs signing_secret = \"env:SLACK_SIGNING_SECRET\" (Basic Information → Signing Secret)",
                        );
                    }
                    None
                }
                Some(v) => secret(issues, v, "slack.signing_secret"),
            }
            .map(|signing_secret| SlackMode::Http { signing_secret })
        }
        Some(other) => {
            if let Some(m) = at_mode {
                issues.at(
                    m,
                    "slack.mode",
                    format!("unknown mode {other:?}; known: socket, http"),
                );
            }
            None
        }
    };
    Some(SlackConfig {
        mode: mode?,
        api: api?,
    })
}

pub(super) const TELEGRAM_TOKEN_SHAPE: &str = "the value does not look like a bot token (digits, a colon, then letters, digits, _ and -, as @BotFather gives it)";

pub(super) fn build_telegram(
    issues: &mut Issues<'_>,
    base: &Path,
    t: &RawTelegram,
    has_http: bool,
) -> Option<TelegramConfig> {
    let token = Secret::resolve(t.token.get_ref(), base)
        .map_err(|e| issues.at(&t.token, "telegram.token", e))
        .ok()
        .filter(|token| {
            let ok = crate::adapters::telegram::token_shape_ok(token.expose());
            if !ok {
                issues.at(&t.token, "telegram.token", TELEGRAM_TOKEN_SHAPE);
            }
            ok
        });
    let api = api_base(
        issues,
        "telegram.api",
        t.api.as_ref(),
        crate::adapters::telegram::DEFAULT_API,
    );
    let mode = match t.mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("polling") => Some(TelegramMode::Polling),
        Some("webhook") => {
            let at = t.mode.as_ref().unwrap_or(&t.token);
            if !has_http {
                issues.at(
                    at,
                    "telegram.mode",
                    "a webhook arrives over HTTP: set [http] listen (or use mode = \"polling\")",
                );
            }
            let url = match &t.webhook_url {
                Some(u) => match reqwest::Url::parse(u.get_ref()) {
                    Ok(url) if url.scheme() == "https" => Some(url),
                    _ => {
                        issues.at(
                            u,
                            "telegram.webhook_url",
                            "Telegram posts only to an https URL (this daemon's /telegram/webhook behind your proxy)",
                        );
                        None
                    }
                },
                None => {
                    issues.at(
                        at,
                        "telegram.webhook_url",
                        "mode = \"webhook\" needs webhook_url: the public https URL of /telegram/webhook",
                    );
                    None
                }
            };
            let secret = match &t.webhook_secret {
                Some(s) => Secret::resolve(s.get_ref(), base)
                    .map_err(|e| issues.at(s, "telegram.webhook_secret", e))
                    .ok()
                    .filter(|secret| {
                        let v = secret.expose();
                        let ok = (1..=256).contains(&v.len())
                            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                        if !ok {
                            issues.at(
                                s,
                                "telegram.webhook_secret",
                                "the secret is 1 to 256 of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
                            );
                        }
                        ok
                    }),
                None => {
                    issues.at(
                        at,
                        "telegram.webhook_secret",
                        "mode = \"webhook\" needs webhook_secret (\"env:TELEGRAM_WEBHOOK_SECRET\"): requests without it are refused",
                    );
                    None
                }
            };
            match (url, secret) {
                (Some(url), Some(secret)) => Some(TelegramMode::Webhook { url, secret }),
                _ => None,
            }
        }
        Some(other) => {
            let at = t.mode.as_ref().unwrap_or(&t.token);
            issues.at(
                at,
                "telegram.mode",
                format!("unknown mode {other:?}; known: polling, webhook"),
            );
            None
        }
    };
    Some(TelegramConfig {
        token: token?,
        api: api?,
        mode: mode?,
    })
}

/// A platform API's base URL: `default`, or the one given (tests point it at
/// a mock), always ending in `/` so that joining a method name keeps the path.
pub(super) fn api_base(
    issues: &mut Issues<'_>,
    key: &str,
    given: Option<&S>,
    default: &str,
) -> Option<reqwest::Url> {
    let Some(a) = given else {
        return reqwest::Url::parse(default).ok();
    };
    let text = if a.get_ref().ends_with('/') {
        a.get_ref().clone()
    } else {
        format!("{}/", a.get_ref())
    };
    reqwest::Url::parse(&text)
        .map_err(|e| issues.at(a, key, format!("not a URL: {e}")))
        .ok()
}
