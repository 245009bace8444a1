//! How chat reaches purser: each platform's connection, run by the leader,
//! and the HTTP listener every replica serves.

use std::sync::Arc;

use anyhow::Context;

use super::adapters::discord_http;
use super::{Bots, DiscordBot, Listener, bind};
use crate::adapters::discord::{self, DiscordApp, DiscordEndpoint};
use crate::adapters::discord_gateway::DiscordGateway;
use crate::adapters::http;
use crate::adapters::slack::{self, SlackApp, SlackEndpoint};
use crate::adapters::slack_socket::SlackSocket;
use crate::adapters::tasks::Tasks;
use crate::adapters::telegram::{TelegramBot, TelegramWebhook};
use crate::config::{Config, DiscordConfig, DiscordMode, SlackConfig, SlackMode, TelegramMode};
use crate::database::Database;
use crate::engine::approvals::Approvals;
use crate::engine::chatops::{ChatOps, OutboxSignal};
use crate::engine::escalator;
use crate::ports::Clock;

/// The platforms' connections (kept by the leader) and the listener.
pub(super) struct Fronts {
    /// Slack over Socket Mode, when configured so.
    pub(super) slack_socket: Option<Arc<SlackSocket>>,
    pub(super) discord_bot: Option<DiscordBot>,
    /// The Telegram bot, and how its updates arrive.
    pub(super) telegram: Option<(Arc<TelegramBot>, TelegramMode)>,
    pub(super) http: Option<Listener>,
}

/// What the fronts are built from.
pub(super) struct Parts<'a> {
    pub(super) config: &'a Config,
    /// Who answers; none when no platform can reach purser.
    pub(super) chat: Option<Arc<ChatOps>>,
    pub(super) store: &'a Arc<dyn Database>,
    pub(super) clock: &'a Arc<dyn Clock>,
    pub(super) bots: &'a Bots,
    pub(super) tasks: &'a Tasks,
}

pub(super) async fn fronts(parts: Parts<'_>, ops: http::Ops) -> anyhow::Result<Fronts> {
    let Parts {
        config,
        chat,
        store,
        clock,
        bots,
        tasks,
    } = parts;
    let slack_app = chat.as_ref().map(|chat| {
        Arc::new(SlackApp {
            chat: chat.clone(),
            http: reqwest::Client::new(),
            answer_within: http::ANSWER_WITHIN,
            tasks: tasks.clone(),
        })
    });
    let slack_socket = match (&config.slack, &slack_app) {
        (
            Some(SlackConfig {
                mode: SlackMode::Socket { app_token },
                api,
            }),
            Some(app),
        ) => Some(Arc::new(SlackSocket {
            api: api.clone(),
            app_token: app_token.clone(),
            app: app.clone(),
            receipts: store.clone(),
            clock: clock.clone(),
        })),
        _ => None,
    };
    let discord_app = match (&config.discord, &chat) {
        (Some(d), Some(chat)) => Some(Arc::new(DiscordApp {
            chat: chat.clone(),
            http: discord_http(config, d, bots)?,
            answer_within: http::ANSWER_WITHIN,
            tasks: tasks.clone(),
        })),
        _ => None,
    };
    // Over the gateway, or over HTTP with the bot's token given: purser
    // publishes `/purser` itself.
    let discord_bot = match (&config.discord, &discord_app) {
        (Some(d), Some(app)) => match &d.mode {
            DiscordMode::Gateway { token } => Some(DiscordBot::Gateway(Arc::new(DiscordGateway {
                token: token.clone(),
                application_id: app.http.application_id().map_or(0, |id| id.get()),
                api: d.api.clone(),
                app: app.clone(),
            }))),
            DiscordMode::Http { token: Some(_), .. } => Some(DiscordBot::Register(app.clone())),
            DiscordMode::Http { token: None, .. } => None,
        },
        _ => None,
    };
    let telegram = match (&config.telegram, &chat) {
        (Some(t), Some(chat)) => {
            let api = bots.get(&t.api, &t.token).context("telegram.token")?;
            Some((
                Arc::new(TelegramBot::new(
                    api,
                    chat.clone(),
                    store.clone(),
                    clock.clone(),
                    tasks.clone(),
                )),
                t.mode.clone(),
            ))
        }
        _ => None,
    };
    let http = listener(config, &slack_app, &discord_app, &telegram, clock, ops).await?;
    Ok(Fronts {
        slack_socket,
        discord_bot,
        telegram,
        http,
    })
}

/// The listener for the platforms configured to call purser over HTTP,
/// with `/healthz`, `/readyz` (and `/metrics` unless it has its own).
async fn listener(
    config: &Config,
    slack_app: &Option<Arc<SlackApp>>,
    discord_app: &Option<Arc<DiscordApp>>,
    telegram: &Option<(Arc<TelegramBot>, TelegramMode)>,
    clock: &Arc<dyn Clock>,
    ops: http::Ops,
) -> anyhow::Result<Option<Listener>> {
    // Chat is answered wherever an [http] section is: it makes `chat` too.
    let Some(h) = &config.http else {
        return Ok(None);
    };
    let listener = bind(h.listen, "http.listen", "PURSER_HTTP__LISTEN").await?;
    let slack = match (&config.slack, slack_app) {
        (
            Some(SlackConfig {
                mode: SlackMode::Http { signing_secret },
                ..
            }),
            Some(app),
        ) => Some(Arc::new(SlackEndpoint {
            verifier: slack::Verifier::new(signing_secret.clone()),
            clock: clock.clone(),
            app: app.clone(),
        })),
        _ => None,
    };
    let discord = match (&config.discord, discord_app) {
        (
            Some(DiscordConfig {
                mode: DiscordMode::Http { public_key, .. },
                ..
            }),
            Some(app),
        ) => Some(Arc::new(DiscordEndpoint {
            verifier: discord::Verifier::new(public_key)
                .map_err(|e| anyhow::anyhow!("discord.public_key: {e}"))?,
            clock: clock.clone(),
            app: app.clone(),
        })),
        _ => None,
    };
    let webhook = match telegram {
        Some((bot, TelegramMode::Webhook { secret, .. })) => Some(Arc::new(TelegramWebhook {
            bot: bot.clone(),
            secret: secret.clone(),
        })),
        _ => None,
    };
    Ok(Some((
        listener,
        http::router_with(slack, discord, webhook, Some(ops)),
        http::Limits::within_open_files(h.max_connections),
    )))
}

/// Who answers chat, when a platform can reach purser.
pub(super) fn answerer(
    config: &Config,
    store: &Arc<dyn Database>,
    clock: &Arc<dyn Clock>,
    outbox: OutboxSignal,
    approvals: &Arc<Approvals>,
    oncall: &Arc<escalator::Settings>,
) -> Option<Arc<ChatOps>> {
    let reachable = config.http.is_some()
        || config.telegram.is_some()
        || config.slack.is_some()
        || config.discord.is_some();
    reachable.then(|| {
        Arc::new(ChatOps {
            store: store.clone(),
            refs: store.clone(),
            entries: store.clone(),
            accounts: config.accounts.clone(),
            entered: config.entered_balance_accounts(),
            directory: config.directory(),
            clock: clock.clone(),
            routing: config.routing(),
            outbox: Some(outbox),
            approvals: approvals.clone(),
            oncall: oncall.clone(),
            escalations: store.clone(),
            views: Default::default(),
        })
    })
}
