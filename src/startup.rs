//! The composition root: builds every adapter and task from a validated config.
//! `main` and the integration tests both start purser through here.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::info;

use crate::adapters::alibaba::Alibaba;
use crate::adapters::azure_china::AzureChina;
use crate::adapters::console::Console;
use crate::adapters::discord::{self, DiscordApp, DiscordEndpoint};
use crate::adapters::discord_channel::DiscordChannel;
use crate::adapters::discord_gateway::{self, DiscordGateway};
use crate::adapters::http;
use crate::adapters::huawei::Huawei;
use crate::adapters::pagers::{Opsgenie, PagerDuty};
use crate::adapters::robots::Robot;
use crate::adapters::simulated::SimulatedProvider;
use crate::adapters::slack::{self, SlackApp, SlackEndpoint};
use crate::adapters::slack_channel::SlackChannel;
use crate::adapters::slack_socket::{self, SlackSocket};
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::telegram::{self, BotApi, TelegramBot, TelegramWebhook};
use crate::adapters::telegram_channel::TelegramChannel;
use crate::adapters::tencent::Tencent;
use crate::adapters::webhook::Webhook;
use crate::config::{
    AccountConfig, Cloud, CloudAccess, Config, DiscordConfig, DiscordMode, OutputKind, PagerKind,
    ProviderKind, SlackConfig, SlackMode, TelegramMode,
};
use crate::domain::model::AccountId;
use crate::engine::activity::Activity;
use crate::engine::approvals::Approvals;
use crate::engine::board::{Board, BoardSignal};
use crate::engine::charts::Charts;
use crate::engine::chatops::{ChatOps, OutboxSignal};
use crate::engine::dispatcher::{Dispatcher, Output};
use crate::engine::escalator::Escalator;
use crate::engine::executor::Executor;
use crate::engine::poller::{LimitedProvider, Poller};
use crate::engine::scheduler::Scheduler;
use crate::ports::{
    Actions, BalanceEntries, Clock, MessageRefs, Notifier, Provider, RequestMessages, Store,
};

/// Builds the adapter for provider `name`, handing it the credentials of the
/// accounts it reads.
pub fn build_provider(
    kind: &ProviderKind,
    name: &str,
    accounts: &[AccountConfig],
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
) -> Arc<dyn Provider> {
    build_adapter(kind, name, accounts, clock, entries).provider
}

/// One provider's adapter: what reads its accounts, and what changes them
/// where its cloud has an API for that (one instance, so that both share
/// its pacing).
pub struct Adapter {
    pub provider: Arc<dyn Provider>,
    pub actions: Option<Arc<dyn Actions>>,
}

fn both<T: Provider + Actions + 'static>(adapter: T) -> Adapter {
    let adapter = Arc::new(adapter);
    Adapter {
        provider: adapter.clone(),
        actions: Some(adapter),
    }
}

fn read_only<T: Provider + 'static>(adapter: T) -> Adapter {
    Adapter {
        provider: Arc::new(adapter),
        actions: None,
    }
}

pub fn build_adapter(
    kind: &ProviderKind,
    name: &str,
    accounts: &[AccountConfig],
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
) -> Adapter {
    let access: HashMap<AccountId, CloudAccess> = accounts
        .iter()
        .filter(|a| a.account.provider == name)
        .filter_map(|a| Some((a.account.id.clone(), a.access.clone()?)))
        .collect();
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
/// its per-chat pace.
#[derive(Default)]
pub struct Bots(std::sync::Mutex<HashMap<(String, String), Arc<BotApi>>>);

impl Bots {
    pub fn get(
        &self,
        api: &reqwest::Url,
        token: &crate::secret::Secret,
    ) -> anyhow::Result<Arc<BotApi>> {
        let mut bots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (api.to_string(), token.expose().to_owned());
        if let Some(b) = bots.get(&key) {
            return Ok(b.clone());
        }
        let bot = Arc::new(BotApi::new(api, token).map_err(|e| anyhow::anyhow!("{e}"))?);
        bots.insert(key, bot.clone());
        Ok(bot)
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
                            api.clone(),
                            token.clone(),
                            channel.clone(),
                            refs.clone(),
                        )
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

/// A built, not yet running, purser.
pub struct Application {
    scheduler: Scheduler,
    dispatcher: Dispatcher,
    board: Board,
    escalator: Escalator,
    approvals: Arc<Approvals>,
    store: SqliteStore,
    activity: Activity,
    executor: Arc<Executor>,
    /// The listener for chat platforms and `/healthz`, bound at build time so
    /// that a taken port fails the start, not a request later.
    http: Option<(tokio::net::TcpListener, axum::Router)>,
    /// The Telegram bot, and how its updates arrive.
    telegram: Option<(Arc<TelegramBot>, TelegramMode)>,
    /// Slack over Socket Mode, when configured so.
    slack_socket: Option<Arc<SlackSocket>>,
    discord_bot: Option<DiscordBot>,
}

/// What the Discord bot does when purser starts.
enum DiscordBot {
    /// Keeps the gateway connection (publishing `/purser` first).
    Gateway(Arc<DiscordGateway>),
    /// Publishes `/purser`; interactions come over HTTP.
    Register(Arc<DiscordApp>, crate::secret::Secret),
}

impl Application {
    /// Opens the store and builds the tasks. `providers` replaces configured
    /// provider adapters by name (tests use it to plug in misbehaving ones).
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        mut providers: HashMap<String, Arc<dyn Provider>>,
    ) -> anyhow::Result<Application> {
        let store = SqliteStore::open(&config.store.path)
            .await
            .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let mut actions: HashMap<String, Arc<dyn Actions>> = HashMap::new();
        let limited: HashMap<String, LimitedProvider> = config
            .providers
            .iter()
            .map(|p| {
                let provider = providers.remove(&p.name).unwrap_or_else(|| {
                    let adapter = build_adapter(
                        &p.kind,
                        &p.name,
                        &config.accounts,
                        clock.clone(),
                        Some(Arc::new(store.clone())),
                    );
                    if let Some(a) = adapter.actions {
                        actions.insert(p.name.clone(), a);
                    }
                    adapter.provider
                });
                (
                    p.name.clone(),
                    LimitedProvider {
                        provider,
                        permits: Arc::new(Semaphore::new(p.concurrency)),
                    },
                )
            })
            .collect();
        {
            use chrono::Datelike;
            let year = clock
                .now()
                .with_timezone(&config.oncall.calendar.zone)
                .year();
            let years = &config.oncall.calendar_years;
            if !years.is_empty() && !years.contains(&year) {
                tracing::warn!(
                    covers = ?years,
                    year,
                    "the holiday calendar does not cover this year: working hours count holidays as working days until it is added"
                );
            }
        }
        let executor = Arc::new(Executor::new(
            Arc::new(store.clone()),
            Arc::new(config.accounts.clone()),
            actions,
            clock.clone(),
        ));
        let written = Arc::new(Notify::new());
        let activity = Activity::new();
        let bots = Bots::default();
        let poller = Poller {
            store: shared.clone(),
            clock: clock.clone(),
            routing: Arc::new(config.routing()),
            timeout: config.scheduler.timeout,
            requests: Some(Arc::new(store.clone())),
            policies: Arc::new(config.policies()),
        };
        let board_signal = BoardSignal {
            activity: activity.clone(),
            wake: Arc::new(Notify::new()),
        };
        let approvals = approvals(
            &config,
            &store,
            executor.clone(),
            Some(board_signal.clone()),
        );
        let scheduler = Scheduler {
            requests: Some(approvals.clone()),
            accounts: Arc::new(config.accounts.clone()),
            providers: limited,
            poller,
            jitter: config.scheduler.jitter,
            retention: config.store.retention,
            store: shared.clone(),
            activity: activity.clone(),
            outbox_written: written.clone(),
        };
        let mut outputs = build_outputs(
            &config,
            &clock,
            Arc::new(store.clone()),
            &Arc::new(Charts {
                store: shared.clone(),
                accounts: Arc::new(config.accounts.clone()),
                clock: clock.clone(),
            }),
            &bots,
        )?;
        let board = Board {
            requests: Arc::new(store.clone()),
            cards: Arc::new(store.clone()),
            outputs: config
                .approvals
                .channels
                .iter()
                .filter_map(|name| Some((name.clone(), outputs.requests.remove(name)?)))
                .collect(),
            clock: clock.clone(),
            signal: board_signal,
        };
        let oncall = Arc::new(config.escalation_settings());
        let escalator = Escalator {
            store: shared.clone(),
            escalations: Arc::new(store.clone()),
            clock: clock.clone(),
            settings: oncall.clone(),
            accounts: Arc::new(config.accounts.iter().map(|a| a.account.clone()).collect()),
            routing: Arc::new(config.routing()),
            direct: std::mem::take(&mut outputs.direct),
            pagers: pagers(&config.oncall.pagers),
            written: written.clone(),
            activity: activity.clone(),
        };
        let dispatcher = Dispatcher {
            store: shared.clone(),
            clock: clock.clone(),
            outputs: outputs.notices,
            written: written.clone(),
            activity: activity.clone(),
        };
        // Someone can ask purser things when a platform can reach it.
        let chat = (config.http.is_some()
            || config.telegram.is_some()
            || config.slack.is_some()
            || config.discord.is_some())
        .then(|| {
            Arc::new(ChatOps {
                store: shared.clone(),
                refs: Arc::new(store.clone()),
                entries: Arc::new(store.clone()),
                accounts: Arc::new(config.accounts.clone()),
                entered: config.entered_balance_accounts(),
                directory: config.directory(),
                clock: clock.clone(),
                routing: config.routing(),
                outbox: Some(OutboxSignal {
                    activity: activity.clone(),
                    written: written.clone(),
                }),
                approvals: approvals.clone(),
                oncall: oncall.clone(),
                escalations: Arc::new(store.clone()),
            })
        });
        let slack_app = chat.as_ref().map(|chat| {
            Arc::new(SlackApp {
                chat: chat.clone(),
                http: reqwest::Client::new(),
                answer_within: http::ANSWER_WITHIN,
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
            })),
            _ => None,
        };
        let discord_app = match (&config.discord, &chat) {
            (Some(d), Some(chat)) => Some(Arc::new(DiscordApp {
                chat: chat.clone(),
                http: reqwest::Client::new(),
                api: d.api.clone(),
                application_id: d.application_id.clone(),
                answer_within: http::ANSWER_WITHIN,
            })),
            _ => None,
        };
        // Over the gateway, or over HTTP with the bot's token given: purser
        // publishes `/purser` itself.
        let discord_bot = match (&config.discord, &discord_app) {
            (Some(d), Some(app)) => match &d.mode {
                DiscordMode::Gateway { token } => {
                    Some(DiscordBot::Gateway(Arc::new(DiscordGateway {
                        token: token.clone(),
                        app: app.clone(),
                    })))
                }
                DiscordMode::Http {
                    token: Some(token), ..
                } => Some(DiscordBot::Register(app.clone(), token.clone())),
                DiscordMode::Http { token: None, .. } => None,
            },
            _ => None,
        };
        let telegram = match (&config.telegram, &chat) {
            (Some(t), Some(chat)) => {
                let api = bots.get(&t.api, &t.token).context("telegram.token")?;
                Some((
                    Arc::new(TelegramBot::new(api, chat.clone())),
                    t.mode.clone(),
                ))
            }
            _ => None,
        };
        let http = match (&config.http, &chat) {
            (Some(h), Some(_)) => {
                let listener = tokio::net::TcpListener::bind(h.listen)
                    .await
                    .with_context(|| format!("listening on {} (http.listen)", h.listen))?;
                let slack = match (&config.slack, &slack_app) {
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
                let discord = match (&config.discord, &discord_app) {
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
                let webhook = match &telegram {
                    Some((bot, TelegramMode::Webhook { secret, .. })) => {
                        Some(Arc::new(TelegramWebhook {
                            bot: bot.clone(),
                            secret: secret.clone(),
                        }))
                    }
                    _ => None,
                };
                Some((listener, http::router(slack, discord, webhook)))
            }
            _ => None,
        };
        Ok(Application {
            scheduler,
            dispatcher,
            board,
            escalator,
            approvals,
            store,
            activity,
            executor,
            http,
            telegram,
            slack_socket,
            discord_bot,
        })
    }

    /// Where the HTTP listener listens, if one is configured.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn store(&self) -> SqliteStore {
        self.store.clone()
    }

    /// What carries out approved requests (tests build chat services by hand over it).
    pub fn executor(&self) -> Arc<Executor> {
        self.executor.clone()
    }

    /// Requests as the daemon handles them (its cards follow every change).
    pub fn approvals(&self) -> Arc<Approvals> {
        self.approvals.clone()
    }

    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Runs until `stop` completes, then stops scheduling, lets polls under way
    /// finish, delivers what is due, and returns.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_scheduler, scheduler_rx) = watch::channel(false);
        let (stop_dispatcher, dispatcher_rx) = watch::channel(false);
        let mut scheduler = AbortOnDrop(tokio::spawn(self.scheduler.run(scheduler_rx)));
        let mut dispatcher = AbortOnDrop(tokio::spawn(self.dispatcher.run(dispatcher_rx)));
        let (stop_board, board_rx) = watch::channel(false);
        let mut board = AbortOnDrop(tokio::spawn(self.board.run(board_rx)));
        let (stop_escalator, escalator_rx) = watch::channel(false);
        let mut escalator = AbortOnDrop(tokio::spawn(self.escalator.run(escalator_rx)));
        let (stop_http, mut http_rx) = watch::channel(false);
        let _http = self.http.map(|(listener, app)| {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "http listening");
            }
            AbortOnDrop(tokio::spawn(async move {
                let stopped = async move {
                    let _ = http_rx.wait_for(|s| *s).await;
                };
                if let Err(e) = http::serve(listener, app, stopped).await {
                    tracing::error!(error = %e, "the http listener failed");
                }
            }))
        });
        let (stop_telegram, telegram_rx) = watch::channel(false);
        let mut telegram = self.telegram.map(|(bot, mode)| {
            AbortOnDrop(tokio::spawn(async move {
                match mode {
                    TelegramMode::Polling => telegram::poll(bot, telegram_rx).await,
                    TelegramMode::Webhook { url, secret } => {
                        bot.introduce().await;
                        match telegram::set_webhook(&bot, url.as_str(), &secret).await {
                            Ok(()) => info!(%url, "telegram webhook set"),
                            Err(e) => tracing::error!(error = %e, "telegram setWebhook failed; updates will not arrive"),
                        }
                    }
                }
            }))
        });
        let (stop_sockets, sockets_rx) = watch::channel(false);
        let _slack = self
            .slack_socket
            .map(|s| AbortOnDrop(tokio::spawn(slack_socket::run(s, sockets_rx.clone()))));
        let _discord = self.discord_bot.map(|bot| {
            let stop = sockets_rx.clone();
            AbortOnDrop(tokio::spawn(async move {
                match bot {
                    DiscordBot::Gateway(gw) => discord_gateway::run(gw, stop).await,
                    DiscordBot::Register(app, token) => {
                        match discord::register(&app.http, &app.api, &app.application_id, &token)
                            .await
                        {
                            Ok(()) => info!("discord /purser command published"),
                            Err(e) => tracing::warn!(error = %e, "could not publish the discord /purser command"),
                        }
                    }
                }
            }))
        });
        info!("purser running");
        stop.await;
        stop_http.send_replace(true);
        stop_telegram.send_replace(true);
        stop_sockets.send_replace(true);
        info!("stopping: finishing polls under way and sends that are due");
        stop_scheduler.send_replace(true);
        (&mut scheduler.0)
            .await
            .context("the scheduler task failed")?;
        stop_dispatcher.send_replace(true);
        (&mut dispatcher.0)
            .await
            .context("the dispatcher task failed")?;
        stop_board.send_replace(true);
        (&mut board.0)
            .await
            .context("the request board task failed")?;
        stop_escalator.send_replace(true);
        (&mut escalator.0)
            .await
            .context("the escalator task failed")?;
        // The bot confirms the updates it handled on its way out.
        if let Some(t) = telegram.as_mut() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), &mut t.0).await;
        }
        Ok(())
    }
}

/// A task that ends with its owner: if `run_until_stopped` is dropped midway,
/// its tasks stop too instead of running on detached.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The people's TOTP secrets. The config checked them; should one still be
/// refused, that person cannot give a second factor (refused, never let
/// through).
fn second_factors(config: &Config) -> crate::adapters::totp::Totp {
    let enrolled = config
        .people
        .iter()
        .filter_map(|p| p.totp.clone().map(|s| (p.name.clone(), s)));
    crate::adapters::totp::Totp::new(enrolled).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a TOTP secret was refused; second factors are off");
        crate::adapters::totp::Totp::none()
    })
}

/// Requests over `store`, with each account's policy from `config`,
/// carried out by `executor`.
pub fn approvals(
    config: &Config,
    store: &SqliteStore,
    executor: Arc<Executor>,
    board: Option<BoardSignal>,
) -> Arc<Approvals> {
    Arc::new(Approvals {
        requests: Arc::new(store.clone()),
        store: Arc::new(store.clone()),
        accounts: Arc::new(config.accounts.clone()),
        policies: Arc::new(config.policies()),
        tiers: config.approvals.tiers.clone(),
        ttl: config.approvals.expire_after,
        second_factors: Arc::new(second_factors(config)),
        executor,
        board,
    })
}
