//! The composition root: builds every adapter and task from a validated config.
//! `main` and the integration tests both start purser through here.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tracing::info;

use crate::adapters::discord::DiscordApp;
use crate::adapters::discord_gateway::DiscordGateway;
use crate::adapters::heartbeat;
use crate::adapters::http;
use crate::adapters::metrics::Metrics;
use crate::adapters::slack_socket::SlackSocket;
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::tasks::Tasks;
use crate::adapters::telegram::{self, TelegramBot};
use crate::config::{Backend, Config, TelegramMode};
use crate::database::Database;
use crate::engine::activity::Activity;
use crate::engine::approvals::Approvals;
use crate::engine::board::{Board, BoardSignal};
use crate::engine::charts::Charts;
use crate::engine::chatops::{ChatOps, OutboxSignal};
use crate::engine::dispatcher::{Dispatcher, Judge};
use crate::engine::escalator::Escalator;
use crate::engine::executor::Executor;
use crate::engine::leadership::{Gate, Role};
use crate::engine::poller::{LimitedProvider, Poller};
use crate::engine::scheduler::Scheduler;
mod adapters;
mod chat;
mod store;
mod supervise;

pub use adapters::{Adapter, Bots, Outputs, build_adapter, build_outputs, build_provider, pagers};
use store::{Election, open_store};
use supervise::{Task, Term, change_listener, readiness, service_manager, until};

use crate::ports::{Actions, Clock, Meter, Provider, Store};

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

/// What the Discord bot does when purser starts.
#[derive(Clone)]
enum DiscordBot {
    /// Keeps the gateway connection (publishing `/purser` first).
    Gateway(Arc<DiscordGateway>),
    /// Publishes `/purser`; interactions come over HTTP.
    Register(Arc<DiscordApp>),
}

/// The metrics registry, with a series for each provider and output.
fn metrics(config: &Config) -> Metrics {
    let names = |it: &mut dyn Iterator<Item = &String>| it.cloned().collect::<Vec<_>>();
    Metrics::new(
        env!("CARGO_PKG_VERSION"),
        env!("PURSER_COMMIT"),
        &names(&mut config.providers.iter().map(|p| &p.name)),
        &names(&mut config.outputs.iter().map(|o| &o.name)),
    )
}

/// Said at every start, and raised as calendar_expiring by the scheduler,
/// until the holiday calendar's file is extended.
fn warn_if_the_calendar_runs_out(config: &Config, clock: &Arc<dyn Clock>) {
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
}

/// `/metrics`: the registry, with what the store holds now, and whether
/// this replica leads.
fn scrape(
    metrics: &Arc<Metrics>,
    store: &Arc<dyn Database>,
    role: &watch::Receiver<Role>,
    clock: &Arc<dyn Clock>,
) -> http::Scrape {
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
}

/// The scheduler: each account polled on the config's schedule, purser's
/// own calendar watched, the heartbeat pinged.
fn scheduler(
    config: &Config,
    providers: HashMap<String, LimitedProvider>,
    poller: Poller,
    requests: Arc<Approvals>,
    store: Arc<dyn Store>,
    activity: Activity,
    written: Arc<Notify>,
) -> Scheduler {
    Scheduler {
        requests: Some(requests),
        accounts: config.accounts.clone(),
        providers,
        poller,
        jitter: config.scheduler.jitter,
        timezone: config.scheduler.timezone,
        retention: config.store.retention,
        store,
        activity,
        outbox_written: written,
        own: config
            .oncall
            .calendar_file
            .as_ref()
            .map(|file| crate::engine::poller::OwnWatch {
                rules: config.own_rules.clone(),
                covers: config.oncall.calendar_years.clone(),
                file: file.clone(),
                zone: config.oncall.calendar.zone,
            }),
        heartbeat: config.heartbeat.as_ref().map(|h| {
            Arc::new(heartbeat::Pinger::new(h.url.clone(), h.method, h.timeout))
                as Arc<dyn crate::ports::Heartbeat>
        }),
    }
}

/// `/metrics`, `/healthz` and `/readyz` on an address of their own.
async fn ops_listener(
    addr: std::net::SocketAddr,
    ready: http::Readiness,
    scrape: http::Scrape,
) -> anyhow::Result<Listener> {
    Ok((
        bind(addr, "metrics.listen", "PURSER_METRICS__LISTEN").await?,
        http::ops_router(Some(http::Ops {
            ready,
            metrics: Some(scrape),
        })),
        http::Limits::within_open_files(64),
    ))
}

impl Application {
    /// Opens the store and builds the tasks. `providers` replaces configured
    /// provider adapters by name (tests use it to plug in misbehaving ones).
    ///
    /// Longer than most functions here on purpose: it is the wiring, each
    /// part built from those above it in the order they depend on one
    /// another; the parts with any logic of their own are built elsewhere.
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        mut providers: HashMap<String, Arc<dyn Provider>>,
    ) -> anyhow::Result<Application> {
        let (store, election, role) = open_store(&config, &clock).await?;
        let shared: Arc<dyn Store> = store.clone();
        let metrics = Arc::new(metrics(&config));
        let meter: Arc<dyn Meter> = metrics.clone();
        let (limited, actions) =
            adapters::providers(&config, &clock, &store, &meter, &mut providers);
        warn_if_the_calendar_runs_out(&config, &clock);
        let executor = Arc::new(Executor::new(
            store.clone(),
            config.accounts.clone(),
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
            recorder: None,
            prices: Default::default(),
        }
        .recording_together(recorders(&config.store.backend));
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
            accounts: config.accounts.clone(),
        };
        let scheduler = scheduler(
            &config,
            limited,
            poller,
            approvals.clone(),
            shared.clone(),
            activity.clone(),
            written.clone(),
        );
        let mut outputs = build_outputs(
            &config,
            &clock,
            store.clone(),
            &Arc::new(Charts {
                store: shared.clone(),
                accounts: config.accounts.clone(),
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
            accounts: Arc::new(
                config
                    .accounts
                    .iter()
                    .map(|a| (a.account.id.to_string(), a.account.clone()))
                    .collect(),
            ),
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
        let chat = chat::answerer(
            &config,
            &store,
            &clock,
            OutboxSignal {
                activity: activity.clone(),
                written: written.clone(),
            },
            &approvals,
            &oncall,
        );
        // Work started for one chat request; drained at the stop.
        let tasks = Tasks::default();
        let ready = readiness(
            role.clone(),
            activity.clone(),
            store.clone(),
            clock.clone(),
            &config,
        );
        let scrape = scrape(&metrics, &store, &role, &clock);
        let fronts = chat::fronts(
            chat::Parts {
                config: &config,
                chat,
                store: &store,
                clock: &clock,
                bots: &bots,
                tasks: &tasks,
            },
            http::Ops {
                ready: ready.clone(),
                // Not here when it has an address of its own.
                metrics: config.metrics.is_none().then(|| scrape.clone()),
            },
        )
        .await?;
        let ops = match &config.metrics {
            Some(m) => Some(ops_listener(m.listen, ready, scrape).await?),
            None => None,
        };
        Ok(Application {
            work: LeaderWork {
                scheduler: Arc::new(scheduler),
                dispatcher: Arc::new(dispatcher),
                board: Arc::new(board),
                escalator: Arc::new(escalator),
                telegram: fronts.telegram,
                slack_socket: fronts.slack_socket,
                discord_bot: fronts.discord_bot,
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
            http: fronts.http,
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
    ///
    /// One function on purpose: the loop's arms share the stop, the channel
    /// of ended tasks and the term of leading, and the order of the steps
    /// after it (listener, lead, change listener, answers, metrics) is what
    /// makes a stop lose nothing.
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
                let listener = change_listener(store, outbox, board, clock.clone(), &ended_tx);
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
            let leads = until(&mut role, |r| matches!(r, Role::Sole | Role::Leader { .. }));
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
            let lost = until(&mut role, |r| matches!(r, Role::Standby { .. }));
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
        config.accounts.clone(),
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
        accounts: config.accounts.clone(),
        entered: config.entered_balance_accounts(),
        directory: crate::domain::people::Directory::new(identities),
        clock,
        routing: config.routing(),
        outbox: None,
        approvals: approvals(config, &store, executor, None),
        oncall: Arc::new(escalation_settings(config)),
        escalations: store.clone(),
        views: Default::default(),
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
        accounts: config.accounts.clone(),
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

/// Tasks that record polls: SQLite takes one writer at a time, so one; a
/// PostgreSQL store takes several, each batch a round trip per statement,
/// so half its connections, leaving the rest to chat and deliveries.
fn recorders(backend: &Backend) -> usize {
    match backend {
        Backend::Sqlite { .. } => 1,
        Backend::Postgres(pg) => usize::try_from(pg.pool / 2).unwrap_or(1).max(1),
    }
}
