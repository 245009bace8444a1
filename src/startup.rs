//! The composition root: builds every adapter and task from a validated config.
//! `main` and the integration tests both start purser through here.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::info;

use crate::adapters::alibaba::Alibaba;
use crate::adapters::azure_china::AzureChina;
use crate::adapters::cloud::CloudAccess;
use crate::adapters::console::Console;
use crate::adapters::discord::{self, DiscordApp, DiscordEndpoint};
use crate::adapters::discord_channel::DiscordChannel;
use crate::adapters::discord_gateway::{self, DiscordGateway};
use crate::adapters::heartbeat;
use crate::adapters::http;
use crate::adapters::huawei::Huawei;
use crate::adapters::metrics::{CountedActions, Metrics};
use crate::adapters::pagers::{Opsgenie, PagerDuty};
use crate::adapters::postgres::PgStore;
use crate::adapters::robots::Robot;
use crate::adapters::simulated::SimulatedProvider;
use crate::adapters::slack::{self, SlackApp, SlackEndpoint};
use crate::adapters::slack_channel::SlackChannel;
use crate::adapters::slack_socket::{self, SlackSocket};
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::sqlite::lock::StoreLock;
use crate::adapters::tasks::Tasks;
use crate::adapters::telegram::{self, BotApi, TelegramBot, TelegramWebhook};
use crate::adapters::telegram_channel::TelegramChannel;
use crate::adapters::tencent::Tencent;
use crate::adapters::webhook::Webhook;
use crate::config::{
    Backend, Cloud, Config, DiscordConfig, DiscordMode, OutputKind, PagerKind, ProviderKind,
    SlackConfig, SlackMode, TelegramMode,
};
use crate::database::Database;
use crate::domain::model::AccountId;
use crate::engine::activity::Activity;
use crate::engine::approvals::Approvals;
use crate::engine::board::{Board, BoardSignal};
use crate::engine::charts::Charts;
use crate::engine::chatops::{ChatOps, OutboxSignal};
use crate::engine::dispatcher::{Dispatcher, Judge, Output};
use crate::engine::escalator::Escalator;
use crate::engine::executor::Executor;
use crate::engine::guard;
use crate::engine::leadership::{Elector, Gate, Role};
use crate::engine::poller::{LimitedProvider, Poller};
use crate::engine::scheduler::Scheduler;
use crate::ports::{
    Actions, BalanceEntries, Clock, MessageRefs, Meter, Notifier, Provider, RequestMessages, Store,
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
    fn take_pacing(&self) -> Vec<telegram::Pacing> {
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

/// Listens on `addr`, the config's `key` (or the environment's `var`); a
/// port already taken says how to move it.
async fn bind(
    addr: std::net::SocketAddr,
    key: &str,
    var: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(" (another purser, or another server, has it: set {key} in the config or {var} to another address)")
        } else {
            String::new()
        };
        anyhow::anyhow!("listening on {addr} ({key}): {e}{hint}")
    })
}

/// A bound listener, what it serves, and its limits.
type Listener = (tokio::net::TcpListener, axum::Router, http::Limits);

/// A built, not yet running, purser.
pub struct Application {
    /// What runs on the leader only.
    work: LeaderWork,
    approvals: Arc<Approvals>,
    store: Arc<dyn Database>,
    activity: Activity,
    executor: Arc<Executor>,
    /// The listener for chat platforms, `/healthz` and `/readyz`, bound at
    /// build time so that a taken port fails the start, not a request later.
    http: Option<Listener>,
    /// `/metrics`, `/healthz` and `/readyz` on `[metrics] listen`, when set.
    ops: Option<Listener>,
    election: Election,
    /// This replica's part, as the election decides it.
    role: watch::Receiver<Role>,
    /// Where the store is, for people.
    store_name: String,
    /// How long a stop may take.
    grace: std::time::Duration,
    clock: Arc<dyn Clock>,
    /// Chat answers the platforms' adapters are still working on.
    tasks: Tasks,
    /// What keeps each Telegram bot within its limits (nothing is sent
    /// without it).
    pacing: Vec<telegram::Pacing>,
}

/// The work only the leader does, started each time this replica gains the
/// lead and stopped when it loses it.
struct LeaderWork {
    scheduler: Arc<Scheduler>,
    dispatcher: Arc<Dispatcher>,
    board: Arc<Board>,
    escalator: Arc<Escalator>,
    /// The Telegram bot, and how its updates arrive.
    telegram: Option<(Arc<TelegramBot>, TelegramMode)>,
    /// Slack over Socket Mode, when configured so.
    slack_socket: Option<Arc<SlackSocket>>,
    discord_bot: Option<DiscordBot>,
    /// What wakes the leader's tasks when another replica writes.
    outbox: OutboxSignal,
    board_signal: BoardSignal,
}

/// How this replica comes to lead.
enum Election {
    /// The only daemon on a SQLite file, held by its lock until it ends.
    Sole { _lock: StoreLock },
    /// One of the replicas on PostgreSQL, by the lease.
    Replica { elector: Elector, store: PgStore },
}

/// The REST client Discord's interactions are answered through: the bot's
/// (shared with its outputs), knowing the application. Over HTTP without the
/// bot's token, a Discord output's token serves; answers to interactions are
/// authorized by the interaction's own token in any case.
fn discord_http(
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

/// What the Discord bot does when purser starts.
#[derive(Clone)]
enum DiscordBot {
    /// Keeps the gateway connection (publishing `/purser` first).
    Gateway(Arc<DiscordGateway>),
    /// Publishes `/purser`; interactions come over HTTP.
    Register(Arc<DiscordApp>),
}

/// Opens the store the config names, and says how this replica comes to
/// lead: on a SQLite file, by holding its lock (one daemon per file); on
/// PostgreSQL, by the lease.
async fn open_store(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn Database>, Election, watch::Receiver<Role>)> {
    match &config.store.backend {
        Backend::Sqlite { path } => {
            // One daemon per store, before anything touches it.
            let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            let lock = StoreLock::acquire(path, &clock.now().to_rfc3339())?;
            if let (false, Some(before)) = (existed, &lock.previous) {
                tracing::warn!(
                    store = %path.display(),
                    last_run = %before,
                    "THE STORE IS MISSING OR EMPTY, but purser has run on it before: starting afresh. \
                     Open alerts, notices not yet sent, requests under way and the audit chain start \
                     again from nothing; restore the file from a backup if this was not meant"
                );
            }
            let store = SqliteStore::open(path).await?;
            // The lock says no other daemon runs here: leases on requests are a
            // dead predecessor's, and its work is taken over at once.
            let released = store.release_all_leases().await?;
            if released > 0 {
                info!(
                    requests = released,
                    "taking over requests a stopped purser was carrying out"
                );
            }
            // Nobody else will ever lead: the sender is not kept.
            let role = watch::channel(Role::Sole).1;
            Ok((Arc::new(store), Election::Sole { _lock: lock }, role))
        }
        Backend::Postgres(pg) => {
            // Other replicas may be carrying requests out: their leases on
            // them are left to run out, not released.
            let store = crate::database::postgres(pg).await?.as_replica();
            info!(
                store = %pg.at,
                version = %store.server_version().await.unwrap_or_default(),
                tls = store.encrypted().await.unwrap_or(false),
                replica = %pg.ha.name,
                lease = %crate::domain::duration::format(pg.ha.lease),
                "connected to PostgreSQL; standing by until this replica leads"
            );
            let (tx, role) = watch::channel(Role::Standby {
                leader: None,
                error: None,
            });
            let elector = Elector {
                leases: Arc::new(store.clone()),
                name: pg.ha.name.clone(),
                term: pg.ha.lease,
                clock: clock.clone(),
                role: tx,
            };
            Ok((
                Arc::new(store.clone()),
                Election::Replica { elector, store },
                role,
            ))
        }
    }
}

impl Application {
    /// Opens the store and builds the tasks. `providers` replaces configured
    /// provider adapters by name (tests use it to plug in misbehaving ones).
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        mut providers: HashMap<String, Arc<dyn Provider>>,
    ) -> anyhow::Result<Application> {
        let (store, election, role) = open_store(&config, &clock).await?;
        let shared: Arc<dyn Store> = store.clone();
        let metrics = Arc::new(Metrics::new(
            env!("CARGO_PKG_VERSION"),
            env!("PURSER_COMMIT"),
            &config
                .providers
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>(),
            &config
                .outputs
                .iter()
                .map(|o| o.name.clone())
                .collect::<Vec<_>>(),
        ));
        let meter: Arc<dyn Meter> = metrics.clone();
        let mut actions: HashMap<String, Arc<dyn Actions>> = HashMap::new();
        let limited: HashMap<String, LimitedProvider> = config
            .providers
            .iter()
            .map(|p| {
                let (provider, priced_by) = match providers.remove(&p.name) {
                    Some(given) => (given, None),
                    None => {
                        let adapter = build_adapter(
                            &p.kind,
                            &p.credentials,
                            clock.clone(),
                            Some(store.clone()),
                        );
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
        // Said at every start, and raised as calendar_expiring by the
        // scheduler, until the file is extended.
        if let Some(file) = &config.oncall.calendar_file
            && let Some(f) = crate::domain::rules::calendar_expiring(
                &config.own_rules.calendar_expiring,
                &config.oncall.calendar_years,
                file,
                config.oncall.calendar.zone,
                clock.now(),
            )
        {
            tracing::warn!(covers = ?config.oncall.calendar_years, "{}", f.summary);
        }
        let executor = Arc::new(Executor::new(
            store.clone(),
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
            requests: Some(store.clone()),
            policies: Arc::new(config.policies()),
            entries: Some(store.clone()),
            meter: meter.clone(),
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
        let judge = Judge {
            poller: poller.clone(),
            accounts: Arc::new(config.accounts.clone()),
        };
        let scheduler =
            Scheduler {
                requests: Some(approvals.clone()),
                accounts: Arc::new(config.accounts.clone()),
                providers: limited,
                poller,
                jitter: config.scheduler.jitter,
                timezone: config.scheduler.timezone,
                retention: config.store.retention,
                store: shared.clone(),
                activity: activity.clone(),
                outbox_written: written.clone(),
                own: config.oncall.calendar_file.as_ref().map(|file| {
                    crate::engine::poller::OwnWatch {
                        rules: config.own_rules.clone(),
                        covers: config.oncall.calendar_years.clone(),
                        file: file.clone(),
                        zone: config.oncall.calendar.zone,
                    }
                }),
                heartbeat: config.heartbeat.as_ref().map(|h| {
                    Arc::new(heartbeat::Pinger::new(h.url.clone(), h.method, h.timeout))
                        as Arc<dyn crate::ports::Heartbeat>
                }),
            };
        let mut outputs = build_outputs(
            &config,
            &clock,
            store.clone(),
            &Arc::new(Charts {
                store: shared.clone(),
                accounts: Arc::new(config.accounts.clone()),
                clock: clock.clone(),
            }),
            &bots,
        )?;
        let board = Board {
            requests: store.clone(),
            cards: store.clone(),
            outputs: config
                .approvals
                .channels
                .iter()
                .filter_map(|name| Some((name.clone(), outputs.requests.remove(name)?)))
                .collect(),
            clock: clock.clone(),
            signal: board_signal.clone(),
        };
        let oncall = Arc::new(escalation_settings(&config));
        let escalator = Escalator {
            store: shared.clone(),
            escalations: store.clone(),
            clock: clock.clone(),
            settings: oncall.clone(),
            accounts: Arc::new(config.accounts.iter().map(|a| a.account.clone()).collect()),
            routing: Arc::new(config.routing()),
            direct: std::mem::take(&mut outputs.direct),
            pagers: pagers(&config.oncall.pagers),
            written: written.clone(),
            activity: activity.clone(),
            gate: Gate::new(role.clone()),
            meter: meter.clone(),
        };
        let dispatcher = Dispatcher {
            store: shared.clone(),
            clock: clock.clone(),
            outputs: outputs.notices,
            written: written.clone(),
            activity: activity.clone(),
            judge: Some(judge),
            gate: Gate::new(role.clone()),
            meter: meter.clone(),
        };
        dispatcher.announce();
        // Someone can ask purser things when a platform can reach it.
        let chat = (config.http.is_some()
            || config.telegram.is_some()
            || config.slack.is_some()
            || config.discord.is_some())
        .then(|| {
            Arc::new(ChatOps {
                store: shared.clone(),
                refs: store.clone(),
                entries: store.clone(),
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
                escalations: store.clone(),
            })
        });
        // Work started for one chat request; drained at the stop.
        let tasks = Tasks::default();
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
                http: discord_http(&config, d, &bots)?,
                answer_within: http::ANSWER_WITHIN,
                tasks: tasks.clone(),
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
                        application_id: app.http.application_id().map_or(0, |id| id.get()),
                        api: d.api.clone(),
                        app: app.clone(),
                    })))
                }
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
        let ready = readiness(
            role.clone(),
            activity.clone(),
            store.clone(),
            clock.clone(),
            &config,
        );
        let scrape: http::Scrape = {
            let (metrics, store, role, clock) =
                (metrics.clone(), store.clone(), role.clone(), clock.clone());
            Arc::new(move || {
                let (metrics, store) = (metrics.clone(), store.clone());
                let leads = matches!(*role.borrow(), Role::Sole | Role::Leader { .. });
                let now = clock.now();
                Box::pin(async move {
                    let text = metrics.render(store.as_ref(), leads, now).await?;
                    Ok((crate::adapters::metrics::CONTENT_TYPE, text))
                })
            })
        };
        let http = match (&config.http, &chat) {
            (Some(h), Some(_)) => {
                let listener = bind(h.listen, "http.listen", "PURSER_HTTP__LISTEN").await?;
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
                Some((
                    listener,
                    http::router_with(
                        slack,
                        discord,
                        webhook,
                        Some(http::Ops {
                            ready: ready.clone(),
                            // Not here when it has an address of its own.
                            metrics: config.metrics.is_none().then(|| scrape.clone()),
                        }),
                    ),
                    http::Limits::within_open_files(h.max_connections),
                ))
            }
            _ => None,
        };
        let ops = match &config.metrics {
            Some(m) => Some((
                bind(m.listen, "metrics.listen", "PURSER_METRICS__LISTEN").await?,
                http::ops_router(Some(http::Ops {
                    ready,
                    metrics: Some(scrape),
                })),
                http::Limits::within_open_files(64),
            )),
            None => None,
        };
        Ok(Application {
            work: LeaderWork {
                scheduler: Arc::new(scheduler),
                dispatcher: Arc::new(dispatcher),
                board: Arc::new(board),
                escalator: Arc::new(escalator),
                telegram,
                slack_socket,
                discord_bot,
                outbox: OutboxSignal {
                    activity: activity.clone(),
                    written: written.clone(),
                },
                board_signal,
            },
            approvals,
            store,
            activity,
            executor,
            http,
            ops,
            election,
            role,
            store_name: config.store.describe(),
            tasks,
            pacing: bots.take_pacing(),
            grace: config
                .scheduler
                .shutdown_timeout
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(10)),
            clock,
        })
    }

    /// Where the HTTP listener listens, if one is configured.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// Where `/metrics` is served on an address of its own, if configured.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.ops.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    pub fn store(&self) -> Arc<dyn Database> {
        self.store.clone()
    }

    /// This replica's part, as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
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

    /// Runs until `stop` completes, then stops scheduling, lets polls under
    /// way finish, delivers what is due, and returns, within the configured
    /// `shutdown_timeout`: what is still under way then is cut off, and
    /// resumes at the next start (polls are made again, unsent notices
    /// sent, calls to clouds read back).
    ///
    /// It also supervises: should a long-running task end by itself or
    /// panic, or the store fail, it stops everything the same way (no chat
    /// served while the scheduler is dead) and returns the cause as an
    /// error, for a non-zero exit that a service manager restarts. A chat
    /// connection that ends is reconnected with backoff instead.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            work,
            http,
            ops,
            election,
            mut role,
            store_name,
            grace,
            clock,
            activity,
            tasks,
            pacing,
            ..
        } = self;
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        // On every replica (any of them answers a chat command). Each runs
        // as long as its bot: one that ends stops purser like any task.
        let _pacing: Vec<Task> = pacing
            .into_iter()
            .map(|p| Task::spawn("telegram pacing", &ended_tx, move |_| p))
            .collect();
        // On every replica: the listener (chat is answered wherever it
        // arrives), and on PostgreSQL the election and what tells the
        // leader of other replicas' writes.
        let serve = |name: &'static str, said: &'static str, (listener, app, limits): Listener| {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "{said}");
            }
            Task::spawn(name, &ended_tx, move |mut rx| async move {
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = http::serve(listener, app, stopped, limits).await {
                    tracing::error!(error = %e, "the {name} failed");
                }
            })
        };
        let mut http = http.map(|l| serve("http listener", "http listening", l));
        // The metrics listener is kept to the end, so that a stop is seen
        // on it until the process exits.
        let mut ops = ops.map(|l| serve("metrics listener", "metrics listening", l));
        let (_lock, mut elector, mut listener) = match election {
            Election::Sole { _lock } => (Some(_lock), None, None),
            Election::Replica { elector, store } => {
                let (outbox, board) = (work.outbox.clone(), work.board_signal.clone());
                let clock = clock.clone();
                let listener = Task::spawn(
                    "change listener",
                    &ended_tx,
                    move |mut rx| async move {
                        let heard = |what: &str| match what {
                            "outbox" => outbox.wrote(),
                            "requests" => board.changed(),
                            // Reconnected: what changed meanwhile is unknown.
                            _ => {
                                outbox.wrote();
                                board.changed();
                            }
                        };
                        // Kept up while the database comes and goes; meanwhile
                        // the leader's own looks (each minute) still find it all.
                        while !*rx.borrow() {
                            match store.listen(heard, rx.clone()).await {
                                Ok(()) => return,
                                Err(e) => {
                                    tracing::warn!(error = %e, "listening for other replicas' writes failed; again in 5s");
                                    heard("all");
                                }
                            }
                            tokio::select! {
                                _ = clock.sleep_until(clock.now() + chrono::Duration::seconds(5)) => {}
                                _ = rx.changed() => {}
                            }
                        }
                    },
                );
                (
                    None,
                    Some(Task::spawn("leadership", &ended_tx, |rx| elector.run(rx))),
                    Some(listener),
                )
            }
        };
        info!("purser running");
        let _watchdog = service_manager(activity.clone(), role.clone(), clock.clone());
        let failed = |name: &str, panic: Option<String>| match panic {
            Some(why) => format!("the {name} task panicked ({why}); purser stopped"),
            None => format!("the {name} task ended by itself; purser stopped"),
        };
        // A replica outlives the database not answering: it stands by until
        // it answers again, while another (that can reach it) may lead. One
        // daemon on a file stops instead: its disk is its only store.
        let replica = elector.is_some();
        let store_failed = |(failure, _): (String, bool)| {
            format!(
                "the store {store_name} failed ({failure}); purser stopped rather than run on blind: \
                 check the store (the disk full or read-only? the database reachable?), then start it again"
            )
        };
        tokio::pin!(stop);
        let cause = loop {
            // Stand by until this replica leads.
            let leads = async {
                loop {
                    if matches!(*role.borrow_and_update(), Role::Sole | Role::Leader { .. }) {
                        return;
                    }
                    if role.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                _ = &mut stop => break None,
                failure = activity.store_failure() => {
                    if replica && failure.1 {
                        tracing::warn!(error = %failure.0, "the database does not answer; standing by until it does");
                        activity.store_recovered();
                        continue;
                    }
                    break Some(store_failed(failure));
                }
                Some((name, panic)) = ended.recv() => break Some(failed(name, panic)),
                _ = leads => {}
            }
            let mut term = Term::start(&work, &clock);
            let lost = async {
                loop {
                    if matches!(*role.borrow_and_update(), Role::Standby { .. }) {
                        return;
                    }
                    if role.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            let mut unreachable = false;
            let outcome = tokio::select! {
                _ = &mut stop => Some(None),
                failure = activity.store_failure() => {
                    if replica && failure.1 {
                        tracing::error!(error = %failure.0, "the database does not answer: leading work stops until it does");
                        unreachable = true;
                        None
                    } else {
                        Some(Some(store_failed(failure)))
                    }
                }
                Some((name, panic)) = ended.recv() => Some(Some(failed(name, panic))),
                Some((name, panic)) = term.ended.recv() => Some(Some(failed(name, panic))),
                _ = lost => None,
            };
            if outcome.is_none() {
                info!(
                    "this replica no longer leads: stopping its polls, deliveries, pages and chat connections"
                );
                if tokio::time::timeout(grace, term.stop()).await.is_err() {
                    tracing::warn!(
                        "leading work did not stop within the shutdown timeout; cut off"
                    );
                }
                if unreachable {
                    // Led again only once the lease is renewed (the database
                    // answers) or given up (it did not, in time).
                    tokio::select! {
                        _ = &mut stop => break None,
                        _ = role.changed() => {}
                    }
                    activity.store_recovered();
                }
                continue;
            }
            if let Some(Some(cause)) = &outcome {
                tracing::error!(%cause, "stopping");
            }
            info!("stopping: finishing polls under way and sends that are due");
            let graceful = async {
                if let Some(http) = http.as_mut() {
                    http.stop().await;
                }
                term.stop().await;
            };
            if tokio::time::timeout(grace, graceful).await.is_err() {
                let a = activity.get();
                tracing::warn!(
                    polls = a.polls_in_flight,
                    sweeps = a.sweeps_in_flight,
                    sending = a.deliveries.values().filter(|d| d.is_none()).count(),
                    "the shutdown timeout passed: what is still under way is cut off; at the next start polls are made again, notices not yet sent are sent and calls to clouds are read back"
                );
            }
            break outcome.flatten();
        };
        // Stopped while standing by: no more chat is taken either.
        if let Some(http) = http.as_mut() {
            let _ = tokio::time::timeout(grace, http.stop()).await;
        }
        // The lead is given up once the leading work has stopped, so a
        // standby starts only after this replica has finished sending.
        if let Some(e) = elector.as_mut() {
            let _ = tokio::time::timeout(grace, e.stop()).await;
        }
        if let Some(l) = listener.as_mut() {
            l.stop.send_replace(true);
        }
        // No chat arrives any more: answers under way finish and go out.
        tasks.finish(grace).await;
        if let Some(ops) = ops.as_mut() {
            let _ = tokio::time::timeout(grace, ops.stop()).await;
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        match cause {
            None => Ok(()),
            Some(cause) => Err(anyhow::anyhow!(cause)),
        }
    }
}

/// One spell of leading: the tasks only the leader runs, and how they end.
struct Term {
    scheduler: Task,
    dispatcher: Task,
    board: Task,
    escalator: Task,
    stop_chat: watch::Sender<bool>,
    telegram: Option<AbortOnDrop>,
    _chat: Vec<AbortOnDrop>,
    ended: mpsc::UnboundedReceiver<(&'static str, Option<String>)>,
}

impl Term {
    fn start(work: &LeaderWork, clock: &Arc<dyn Clock>) -> Term {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let scheduler = work.scheduler.clone();
        let dispatcher = work.dispatcher.clone();
        let board = work.board.clone();
        let escalator = work.escalator.clone();
        let (stop_chat, chat_rx) = watch::channel(false);
        let telegram = work.telegram.clone().map(|(bot, mode)| {
            let (stop, clock) = (chat_rx.clone(), clock.clone());
            AbortOnDrop(tokio::spawn(async move {
                match mode {
                    TelegramMode::Polling => {
                        keep_connected("telegram", clock, stop, |rx| {
                            telegram::poll(bot.clone(), rx)
                        })
                        .await
                    }
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
        let mut chat = Vec::new();
        if let Some(s) = work.slack_socket.clone() {
            let (stop, clock) = (chat_rx.clone(), clock.clone());
            chat.push(AbortOnDrop(tokio::spawn(keep_connected(
                "slack",
                clock,
                stop,
                move |rx| slack_socket::run(s.clone(), rx),
            ))));
        }
        if let Some(bot) = work.discord_bot.clone() {
            let (stop, clock) = (chat_rx.clone(), clock.clone());
            chat.push(AbortOnDrop(tokio::spawn(async move {
                match bot {
                    DiscordBot::Gateway(gw) => {
                        keep_connected("discord", clock, stop, move |rx| {
                            discord_gateway::run(gw.clone(), rx)
                        })
                        .await
                    }
                    DiscordBot::Register(app) => {
                        match discord::register(&app.http).await {
                            Ok(()) => info!("discord /purser command published"),
                            Err(e) => tracing::warn!(error = %e, "could not publish the discord /purser command"),
                        }
                    }
                }
            })));
        }
        Term {
            scheduler: Task::spawn("scheduler", &ended_tx, |rx| scheduler.run(rx)),
            dispatcher: Task::spawn("dispatcher", &ended_tx, |rx| dispatcher.run(rx)),
            board: Task::spawn("request board", &ended_tx, |rx| board.run(rx)),
            escalator: Task::spawn("escalator", &ended_tx, |rx| escalator.run(rx)),
            stop_chat,
            telegram,
            _chat: chat,
            ended,
        }
    }

    /// Stops scheduling, lets polls under way finish and sends what is due,
    /// closes the chat connections.
    async fn stop(&mut self) {
        self.stop_chat.send_replace(true);
        self.scheduler.stop().await;
        self.dispatcher.stop().await;
        self.board.stop().await;
        self.escalator.stop().await;
        // The bot confirms the updates it handled on its way out.
        if let Some(t) = self.telegram.as_mut() {
            let _ = (&mut t.0).await;
        }
    }
}

/// Under systemd (`Type=notify`): says purser is up, and, when the unit
/// sets `WatchdogSec`, feeds the watchdog at half its period for as long as
/// the scheduler keeps ticking (a standby, which runs none, for as long as
/// it runs), so that a wedged scheduler gets the process restarted. Does
/// nothing elsewhere.
fn service_manager(
    activity: Activity,
    role: watch::Receiver<Role>,
    clock: Arc<dyn Clock>,
) -> Option<AbortOnDrop> {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell the service manager purser is ready");
    }
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(std::time::Duration::from_millis(100));
    info!(
        period_ms = period.as_millis() as u64,
        "feeding the service manager's watchdog"
    );
    Some(AbortOnDrop(tokio::spawn(async move {
        let mut withheld = false;
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let leads = matches!(*role.borrow(), Role::Sole | Role::Leader { .. });
            let stuck = leads
                .then(|| activity.get().scheduler_stuck(clock.now()))
                .flatten();
            match stuck {
                None => {
                    withheld = false;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                Some(why) if !withheld => {
                    withheld = true;
                    tracing::error!(%why, "not feeding the watchdog: the service manager restarts purser unless the scheduler recovers");
                }
                Some(_) => {}
            }
        }
    })))
}

/// How long `/readyz` waits for the store to answer.
const STORE_ANSWERS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// What `/readyz` says: this replica's role (`role: leader` or `role:
/// standby`), on PostgreSQL the lease, and why it is not ready when it is
/// not: the store does not answer or its schema is not this build's, a
/// store call failed, the lease cannot be read, or the scheduler is stuck.
fn readiness(
    role: watch::Receiver<Role>,
    activity: Activity,
    store: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    config: &Config,
) -> http::Readiness {
    let replica = match &config.store.backend {
        Backend::Postgres(pg) => Some(pg.ha.name.clone()),
        Backend::Sqlite { .. } => None,
    };
    Arc::new(move || {
        let (mut body, mut why) = described(
            &role.borrow(),
            replica.as_deref(),
            &activity.get(),
            clock.now(),
        );
        let store = store.clone();
        Box::pin(async move {
            match tokio::time::timeout(STORE_ANSWERS_WITHIN, store.schema()).await {
                Err(_) => why.push(format!(
                    "the store did not answer within {}s",
                    STORE_ANSWERS_WITHIN.as_secs()
                )),
                Ok(Err(e)) => why.push(format!("the store does not answer: {e}")),
                Ok(Ok((applied, known))) if applied > known => why.push(format!(
                    "the store is at migration {applied}, newer than this build's {known} (a newer purser migrated it): upgrade this replica"
                )),
                Ok(Ok((applied, known))) if applied < known => why.push(format!(
                    "the store is at migration {applied}, older than this build's {known}: restart to migrate it"
                )),
                Ok(Ok(_)) => {}
            }
            for w in &why {
                body.push_str(&format!("not ready: {w}\n"));
            }
            (why.is_empty(), body)
        })
    })
}

/// What `/readyz` says of this replica's own state, and what keeps it from
/// being ready, at `now` (the store is asked separately).
fn described(
    role: &Role,
    replica: Option<&str>,
    activity: &crate::engine::activity::ActivityState,
    now: chrono::DateTime<chrono::Utc>,
) -> (String, Vec<String>) {
    let mut body = format!("role: {}\n", role.name());
    if let Some(name) = replica {
        body.push_str(&format!("replica: {name}\n"));
    }
    let mut why = Vec::new();
    match role {
        Role::Leader { lead, failed, .. } => {
            body.push_str(&format!(
                "leading since: {}\nlease until: {}\n",
                lead.since.to_rfc3339(),
                lead.expires_at.to_rfc3339()
            ));
            if *failed > 0 {
                body.push_str(&format!("lease renewals failing: {failed}\n"));
            }
        }
        Role::Standby {
            leader: Some(lead), ..
        } => body.push_str(&format!(
            "leader: {}\nlease until: {}\n",
            lead.holder,
            lead.expires_at.to_rfc3339()
        )),
        Role::Standby { leader: None, .. } | Role::Sole => {}
    }
    if let Some(e) = &activity.store_failing {
        why.push(e.clone());
    }
    match role {
        // A standby that cannot read the lease could not take over either.
        Role::Standby { error: Some(e), .. } => {
            why.push(format!("the lease cannot be read: {e}"));
        }
        Role::Sole | Role::Leader { .. } => {
            if let Some((at, _)) = activity.scheduler_tick {
                body.push_str(&format!("scheduler ticked: {}\n", at.to_rfc3339()));
            }
            why.extend(activity.scheduler_stuck(now));
        }
        Role::Standby { .. } => {}
    }
    (body, why)
}

/// A long-running task, its stop signal, and its handle (aborted when
/// dropped). It reports on `ended` if it ends, and how.
struct Task {
    stop: watch::Sender<bool>,
    handle: AbortOnDrop,
    stopped: bool,
}

type Ended = mpsc::UnboundedSender<(&'static str, Option<String>)>;

impl Task {
    fn spawn<F: Future<Output = ()> + Send + 'static>(
        name: &'static str,
        ended: &Ended,
        run: impl FnOnce(watch::Receiver<bool>) -> F,
    ) -> Task {
        let (stop, rx) = watch::channel(false);
        let work = run(rx);
        let ended = ended.clone();
        let handle = tokio::spawn(async move {
            let panicked = guard::caught(work).await.err();
            let _ = ended.send((name, panicked));
        });
        Task {
            stop,
            handle: AbortOnDrop(handle),
            stopped: false,
        }
    }

    /// Tells it to stop and waits until it has (at once if it had).
    async fn stop(&mut self) {
        self.stop.send_replace(true);
        if !self.stopped {
            let _ = (&mut self.handle.0).await;
            self.stopped = true;
        }
    }
}

/// Keeps a chat connection: `connect` again, with backoff, whenever it ends
/// (the platform closed it for good, or it panicked), until `stop`.
async fn keep_connected<F: Future<Output = ()>>(
    name: &'static str,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    connect: impl Fn(watch::Receiver<bool>) -> F,
) {
    let mut failures = 0u32;
    loop {
        if let Err(why) = guard::caught(connect(stop.clone())).await {
            tracing::error!(connection = name, panic = %why, "the connection failed inside purser");
        }
        if *stop.borrow() {
            return;
        }
        failures = failures.saturating_add(1);
        let wait = crate::domain::backoff::SENDING.after(failures);
        tracing::error!(connection = name, retry_in = %crate::domain::duration::format(wait), "the connection ended; connecting again");
        tokio::select! {
            _ = clock.sleep_until(clock.now() + wait) => {}
            _ = stop.changed() => return,
        }
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
/// One chat command run from the terminal as the configured person `name`
/// (on the host, whoever can read the config and the store is trusted as
/// anyone in it). An approval carries the request out here, under the same
/// lease a running daemon honours.
pub async fn ask(config: &Config, name: &str, text: &str) -> anyhow::Result<(bool, String)> {
    let Some(person) = config.people.iter().find(|p| p.name == name) else {
        let known: Vec<&str> = config.people.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!(
            "no person {name:?} in the config's [[people]]{}",
            if known.is_empty() {
                String::new()
            } else {
                format!("; known: {}", known.join(", "))
            }
        );
    };
    let clock: Arc<dyn Clock> = Arc::new(crate::engine::clock::SystemClock);
    let store: Arc<dyn Database> = match &config.store.backend {
        Backend::Sqlite { path } => Arc::new(SqliteStore::open(path).await?),
        Backend::Postgres(pg) => Arc::new(crate::database::postgres(pg).await?),
    };
    let mut actions: HashMap<String, Arc<dyn Actions>> = HashMap::new();
    for p in &config.providers {
        let adapter = build_adapter(&p.kind, &p.credentials, clock.clone(), Some(store.clone()));
        if let Some(a) = adapter.actions {
            actions.insert(p.name.clone(), a);
        }
    }
    let executor = Arc::new(Executor::new(
        store.clone(),
        Arc::new(config.accounts.clone()),
        actions,
        clock.clone(),
    ));
    let identities = [(
        "terminal".to_owned(),
        person.name.clone(),
        crate::domain::people::Person {
            name: person.name.clone(),
            role: person.role,
        },
    )];
    let chat = ChatOps {
        store: store.clone(),
        refs: store.clone(),
        entries: store.clone(),
        accounts: Arc::new(config.accounts.clone()),
        entered: config.entered_balance_accounts(),
        directory: crate::domain::people::Directory::new(identities),
        clock,
        routing: config.routing(),
        outbox: None,
        approvals: approvals(config, &store, executor, None),
        oncall: Arc::new(escalation_settings(config)),
        escalations: store.clone(),
    };
    let reply = chat
        .handle(
            &crate::engine::chatops::Asker {
                platform: "terminal".into(),
                user: person.name.clone(),
            },
            text,
        )
        .await;
    store.close().await;
    Ok((
        reply.kind == crate::engine::chatops::ReplyKind::Done,
        reply.text(),
    ))
}

pub fn approvals(
    config: &Config,
    store: &Arc<dyn Database>,
    executor: Arc<Executor>,
    board: Option<BoardSignal>,
) -> Arc<Approvals> {
    Arc::new(Approvals {
        requests: store.clone(),
        store: store.clone(),
        accounts: Arc::new(config.accounts.clone()),
        policies: Arc::new(config.policies()),
        tiers: config.approvals.tiers.clone(),
        ttl: config.approvals.expire_after,
        second_factors: Arc::new(second_factors(config)),
        executor,
        board,
    })
}

/// What the escalator needs: calendar, targets, chains, rotations and
/// how to reach each person.
pub fn escalation_settings(config: &Config) -> crate::engine::escalator::Settings {
    let o = &config.oncall;
    crate::engine::escalator::Settings {
        calendar: o.calendar.clone(),
        calendars: o
            .severity_calendars
            .iter()
            .map(|(s, (_, c))| (*s, c.clone()))
            .collect(),
        responses: o.responses.clone(),
        chains: o.chains.clone(),
        schedules: o.schedules.clone(),
        overrides: o.overrides.clone(),
        people: config
            .people
            .iter()
            .map(|p| crate::engine::escalator::Contact {
                name: p.name.clone(),
                identities: p.identities.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_not_ready_while_it_cannot_read_the_lease() {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let state = crate::engine::activity::ActivityState::default();
        let standby = Role::Standby {
            leader: None,
            error: None,
        };
        assert_eq!(
            described(&standby, Some("b"), &state, now),
            ("role: standby\nreplica: b\n".to_owned(), vec![])
        );
        let blind = Role::Standby {
            leader: None,
            error: Some("store: connection refused".into()),
        };
        assert_eq!(
            described(&blind, Some("b"), &state, now).1,
            vec!["the lease cannot be read: store: connection refused".to_owned()]
        );
    }

    #[test]
    fn the_leader_is_not_ready_while_its_scheduler_is_stuck_a_standby_is_not_judged_on_it() {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let state = crate::engine::activity::ActivityState {
            scheduler_tick: Some((now - chrono::Duration::minutes(5), None)),
            ..Default::default()
        };
        let (body, why) = described(&Role::Sole, None, &state, now);
        assert!(body.contains("scheduler ticked: "), "{body}");
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("busy with one turn"), "{why:?}");
        let standby = Role::Standby {
            leader: None,
            error: None,
        };
        assert!(described(&standby, None, &state, now).1.is_empty());
    }

    #[tokio::test]
    async fn a_task_that_panics_or_ends_says_so() {
        let (tx, mut ended) = mpsc::unbounded_channel();
        let _a = Task::spawn("scheduler", &tx, |_| async {
            panic!("index out of bounds")
        });
        assert_eq!(
            ended.recv().await,
            Some(("scheduler", Some("index out of bounds".to_owned())))
        );
        let _b = Task::spawn("dispatcher", &tx, |_| async {});
        assert_eq!(ended.recv().await, Some(("dispatcher", None)));
        // One stopped when asked ends quietly too; the supervisor has stopped
        // listening by then.
        let mut c = Task::spawn("board", &tx, |mut rx| async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        c.stop().await;
        assert_eq!(ended.recv().await, Some(("board", None)));
    }
}
