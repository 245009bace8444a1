//! Building each provider's, output's and pager's adapter from the config.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::adapters::alibaba::Alibaba;
use crate::adapters::azure_china::AzureChina;
use crate::adapters::cloud::CloudAccess;
use crate::adapters::console::Console;
use crate::adapters::discord;
use crate::adapters::discord_channel::DiscordChannel;
use crate::adapters::huawei::Huawei;
use crate::adapters::metrics::CountedActions;
use crate::adapters::pagers::{Opsgenie, PagerDuty};
use crate::adapters::robots::Robot;
use crate::adapters::simulated::SimulatedProvider;
use crate::adapters::slack_channel::SlackChannel;
use crate::adapters::telegram::{self, BotApi};
use crate::adapters::telegram_channel::TelegramChannel;
use crate::adapters::tencent::Tencent;
use crate::adapters::webhook::Webhook;
use crate::config::{
    Cloud, Config, DiscordConfig, DiscordMode, OutputKind, PagerKind, ProviderKind,
};
use crate::database::Database;
use crate::domain::model::AccountId;
use crate::engine::charts::Charts;
use crate::engine::dispatcher::Output;
use crate::engine::poller::LimitedProvider;
use crate::ports::{
    Actions, BalanceEntries, Clock, MessageRefs, Meter, Notifier, Provider, RequestMessages,
};

/// Builds the adapter for provider `name`, handing it the credentials of the
/// accounts it reads.
pub fn build_provider(
    kind: &ProviderKind,
    credentials: &HashMap<AccountId, CloudAccess>,
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
) -> Arc<dyn Provider> {
    build_adapter(kind, credentials, clock, entries).provider
}

/// One provider's adapter: what reads its accounts, and what changes them
/// where its cloud has an API for that (one instance, so that both share
/// its pacing).
pub struct Adapter {
    pub provider: Arc<dyn Provider>,
    pub actions: Option<Arc<dyn Actions>>,
}

pub(super) fn both<T: Provider + Actions + 'static>(adapter: T) -> Adapter {
    let adapter = Arc::new(adapter);
    Adapter {
        provider: adapter.clone(),
        actions: Some(adapter),
    }
}

pub(super) fn read_only<T: Provider + 'static>(adapter: T) -> Adapter {
    Adapter {
        provider: Arc::new(adapter),
        actions: None,
    }
}

pub fn build_adapter(
    kind: &ProviderKind,
    credentials: &HashMap<AccountId, CloudAccess>,
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
) -> Adapter {
    let access = credentials.clone();
    match kind {
        ProviderKind::Simulated { scenario } => both(SimulatedProvider::new(scenario, clock)),
        ProviderKind::Cloud {
            cloud,
            requests_per_second: rps,
        } => match cloud {
            Cloud::Tencent => both(Tencent::new(access, *rps, clock)),
            Cloud::Alibaba => both(Alibaba::new(access, *rps, clock)),
            Cloud::Huawei => both(Huawei::new(access, *rps, clock)),
            // No API changes anything there: every request is a task for a person.
            Cloud::AzureChina => read_only(AzureChina::new(access, *rps, clock, entries)),
        },
    }
}

/// One Bot API client per bot token, so that everything one bot sends shares
/// its pace; and the pacing each needs running.
#[derive(Default)]
pub struct Bots {
    bots: std::sync::Mutex<HashMap<(String, String), Arc<BotApi>>>,
    pacing: std::sync::Mutex<Vec<telegram::Pacing>>,
    /// Discord's REST clients likewise, so that one rate limiter sees all
    /// of a bot's calls.
    discord: std::sync::Mutex<HashMap<(String, String), Arc<serenity::http::Http>>>,
    /// And one pace per Discord bot, under its global limit.
    discord_pace: std::sync::Mutex<HashMap<(String, String), Arc<crate::adapters::pace::Pacer>>>,
}

impl Bots {
    /// The Discord bot's REST client for `token`, made once.
    pub fn discord(
        &self,
        api: &reqwest::Url,
        token: &crate::secret::Secret,
    ) -> anyhow::Result<Arc<serenity::http::Http>> {
        let mut bots = self.discord.lock().unwrap_or_else(|p| p.into_inner());
        let key = (api.to_string(), token.expose().to_owned());
        if let Some(b) = bots.get(&key) {
            return Ok(b.clone());
        }
        let http =
            Arc::new(discord::rest_client(token, None, api).map_err(|e| anyhow::anyhow!("{e}"))?);
        bots.insert(key, http.clone());
        Ok(http)
    }

    /// The Discord bot's pace for `token`, shared by its channels.
    pub fn discord_pace(
        &self,
        api: &reqwest::Url,
        token: &crate::secret::Secret,
    ) -> Arc<crate::adapters::pace::Pacer> {
        let mut paces = self.discord_pace.lock().unwrap_or_else(|p| p.into_inner());
        paces
            .entry((api.to_string(), token.expose().to_owned()))
            .or_insert_with(|| Arc::new(crate::adapters::discord_channel::global_pace()))
            .clone()
    }

    pub fn get(
        &self,
        api: &reqwest::Url,
        token: &crate::secret::Secret,
    ) -> anyhow::Result<Arc<BotApi>> {
        let mut bots = self.bots.lock().unwrap_or_else(|p| p.into_inner());
        let key = (api.to_string(), token.expose().to_owned());
        if let Some(b) = bots.get(&key) {
            return Ok(b.clone());
        }
        let (bot, pacing) = BotApi::new(api, token).map_err(|e| anyhow::anyhow!("{e}"))?;
        let bot = Arc::new(bot);
        bots.insert(key, bot.clone());
        self.pacing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pacing);
        Ok(bot)
    }

    /// The pacing of every bot made so far, to be run.
    pub(super) fn take_pacing(&self) -> Vec<telegram::Pacing> {
        std::mem::take(&mut *self.pacing.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Each output as the dispatcher sends to it, and those that show request
/// cards (the same channel objects, so that both share one pace).
pub struct Outputs {
    pub notices: HashMap<String, Output>,
    pub requests: HashMap<String, Arc<dyn RequestMessages>>,
    /// Direct messages by platform: the bot of the platform.s first output sends them.
    pub direct: HashMap<String, Arc<dyn crate::ports::DirectMessages>>,
}

pub fn build_outputs(
    config: &Config,
    clock: &Arc<dyn Clock>,
    refs: Arc<dyn MessageRefs>,
    charts: &Arc<Charts>,
    bots: &Bots,
) -> anyhow::Result<Outputs> {
    let mut requests: HashMap<String, Arc<dyn RequestMessages>> = HashMap::new();
    let mut direct: HashMap<String, Arc<dyn crate::ports::DirectMessages>> = HashMap::new();
    let notices = config
        .outputs
        .iter()
        .map(|o| {
            let mut shows = |channel: Arc<dyn RequestMessages>| {
                requests.insert(o.name.clone(), channel);
            };
            let (notifier, max_attempts): (Arc<dyn Notifier>, u32) = match &o.kind {
                OutputKind::Console => {
                    shows(Arc::new(Console));
                    (Arc::new(Console), 3)
                }
                OutputKind::Webhook {
                    url,
                    secret,
                    timeout,
                    max_attempts,
                } => (
                    Arc::new(Webhook::new(
                        url.clone(),
                        secret.clone(),
                        *timeout,
                        clock.clone(),
                    )),
                    *max_attempts,
                ),
                OutputKind::Slack {
                    channel,
                    token,
                    api,
                } => {
                    let slack = Arc::new(SlackChannel {
                        charts: Some(charts.clone()),
                        ..SlackChannel::new(
                            o.name.clone(),
                            api.clone(),
                            token.clone(),
                            channel.clone(),
                            refs.clone(),
                        )
                    });
                    shows(slack.clone());
                    direct
                        .entry("slack".to_owned())
                        .or_insert_with(|| slack.clone());
                    (slack, 10)
                }
                OutputKind::Robot { kind, url, secret } => (
                    Arc::new(Robot::new(
                        *kind,
                        url.clone(),
                        secret.clone(),
                        clock.clone(),
                    )),
                    10,
                ),
                OutputKind::Telegram { chat, token, api } => {
                    let telegram = Arc::new(TelegramChannel {
                        charts: Some(charts.clone()),
                        ..TelegramChannel::new(
                            o.name.clone(),
                            bots.get(api, token)
                                .with_context(|| format!("output {}", o.name))?,
                            chat.clone(),
                            refs.clone(),
                        )
                    });
                    shows(telegram.clone());
                    direct
                        .entry("telegram".to_owned())
                        .or_insert_with(|| telegram.clone());
                    (telegram, 10)
                }
                OutputKind::Discord {
                    channel,
                    token,
                    api,
                } => {
                    let discord = Arc::new(DiscordChannel {
                        charts: Some(charts.clone()),
                        ..DiscordChannel::new(
                            o.name.clone(),
                            bots.discord(api, token)
                                .with_context(|| format!("output {}", o.name))?,
                            bots.discord_pace(api, token),
                            channel,
                            refs.clone(),
                        )
                        .map_err(|e| anyhow::anyhow!("output {}: {e}", o.name))?
                    });
                    shows(discord.clone());
                    direct
                        .entry("discord".to_owned())
                        .or_insert_with(|| discord.clone());
                    (discord, 10)
                }
            };
            Ok((
                o.name.clone(),
                Output {
                    notifier,
                    max_attempts,
                },
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Outputs {
        notices,
        requests,
        direct,
    })
}

/// Each configured outside pager, by name.
pub fn pagers(
    config: &[crate::config::PagerConfig],
) -> HashMap<String, Arc<dyn crate::ports::OutsidePager>> {
    // An events API answers in well under a second; a stuck one is retried.
    let timeout = std::time::Duration::from_secs(10);
    config
        .iter()
        .map(|p| {
            let pager: Arc<dyn crate::ports::OutsidePager> = match &p.kind {
                PagerKind::PagerDuty { routing_key } => {
                    Arc::new(PagerDuty::new(p.url.clone(), routing_key.clone(), timeout))
                }
                PagerKind::Opsgenie { api_key } => {
                    Arc::new(Opsgenie::new(p.url.clone(), api_key.clone(), timeout))
                }
            };
            (p.name.clone(), pager)
        })
        .collect()
}

/// The REST client Discord's interactions are answered through: the bot's
/// (shared with its outputs), knowing the application. Over HTTP without the
/// bot's token, a Discord output's token serves; answers to interactions are
/// authorized by the interaction's own token in any case.
pub(super) fn discord_http(
    config: &Config,
    d: &DiscordConfig,
    bots: &Bots,
) -> anyhow::Result<Arc<serenity::http::Http>> {
    let token = match &d.mode {
        DiscordMode::Gateway { token }
        | DiscordMode::Http {
            token: Some(token), ..
        } => token.clone(),
        DiscordMode::Http { token: None, .. } => config
            .outputs
            .iter()
            .find_map(|o| match &o.kind {
                OutputKind::Discord { token, api, .. } if *api == d.api => Some(token.clone()),
                _ => None,
            })
            .unwrap_or_else(|| crate::secret::Secret::from_value("")),
    };
    let http = bots.discord(&d.api, &token).context("discord")?;
    let id = d
        .application_id
        .parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .context("discord.application_id: a number")?;
    http.set_application_id(id.into());
    Ok(http)
}

/// Each configured provider behind its concurrency limit, and the actions
/// of those that can change things (counted for `/metrics`). `given`
/// replaces configured adapters by name; tests plug misbehaving ones in.
pub(super) fn providers(
    config: &Config,
    clock: &Arc<dyn Clock>,
    store: &Arc<dyn Database>,
    meter: &Arc<dyn Meter>,
    given: &mut HashMap<String, Arc<dyn Provider>>,
) -> (
    HashMap<String, LimitedProvider>,
    HashMap<String, Arc<dyn Actions>>,
) {
    let mut actions: HashMap<String, Arc<dyn Actions>> = HashMap::new();
    let limited = config
        .providers
        .iter()
        .map(|p| {
            let (provider, priced_by) = match given.remove(&p.name) {
                Some(given) => (given, None),
                None => {
                    let adapter =
                        build_adapter(&p.kind, &p.credentials, clock.clone(), Some(store.clone()));
                    let counted = adapter.actions.map(|inner| {
                        Arc::new(CountedActions {
                            inner,
                            provider: p.name.clone(),
                            meter: meter.clone(),
                        }) as Arc<dyn Actions>
                    });
                    if let Some(a) = &counted {
                        actions.insert(p.name.clone(), a.clone());
                    }
                    (adapter.provider, counted)
                }
            };
            (
                p.name.clone(),
                LimitedProvider {
                    provider,
                    permits: Arc::new(Semaphore::new(p.concurrency)),
                    actions: priced_by,
                },
            )
        })
        .collect();
    (limited, actions)
}
