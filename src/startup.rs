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
use crate::adapters::discord::{self, DiscordEndpoint};
use crate::adapters::discord_channel::DiscordChannel;
use crate::adapters::http;
use crate::adapters::huawei::Huawei;
use crate::adapters::simulated::SimulatedProvider;
use crate::adapters::slack::{self, SlackEndpoint};
use crate::adapters::slack_channel::SlackChannel;
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::tencent::Tencent;
use crate::adapters::webhook::Webhook;
use crate::config::{AccountConfig, Cloud, CloudAccess, Config, OutputKind, ProviderKind};
use crate::domain::model::AccountId;
use crate::engine::activity::Activity;
use crate::engine::chatops::{ChatOps, OutboxSignal};
use crate::engine::dispatcher::{Dispatcher, Output};
use crate::engine::poller::{LimitedProvider, Poller};
use crate::engine::scheduler::Scheduler;
use crate::ports::{BalanceEntries, Clock, MessageRefs, Notifier, Provider, Store};

/// Builds the adapter for provider `name`, handing it the credentials of the
/// accounts it reads.
pub fn build_provider(
    kind: &ProviderKind,
    name: &str,
    accounts: &[AccountConfig],
    clock: Arc<dyn Clock>,
    entries: Option<Arc<dyn BalanceEntries>>,
) -> Arc<dyn Provider> {
    let access: HashMap<AccountId, CloudAccess> = accounts
        .iter()
        .filter(|a| a.account.provider == name)
        .filter_map(|a| Some((a.account.id.clone(), a.access.clone()?)))
        .collect();
    match kind {
        ProviderKind::Simulated { scenario } => Arc::new(SimulatedProvider::new(scenario, clock)),
        ProviderKind::Cloud {
            cloud,
            requests_per_second: rps,
        } => match cloud {
            Cloud::Tencent => Arc::new(Tencent::new(access, *rps, clock)),
            Cloud::Alibaba => Arc::new(Alibaba::new(access, *rps, clock)),
            Cloud::Huawei => Arc::new(Huawei::new(access, *rps, clock)),
            Cloud::AzureChina => Arc::new(AzureChina::new(access, *rps, clock, entries)),
        },
    }
}

pub fn build_outputs(
    config: &Config,
    clock: &Arc<dyn Clock>,
    refs: Arc<dyn MessageRefs>,
) -> HashMap<String, Output> {
    config
        .outputs
        .iter()
        .map(|o| {
            let (notifier, max_attempts): (Arc<dyn Notifier>, u32) = match &o.kind {
                OutputKind::Console => (Arc::new(Console), 3),
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
                } => (
                    Arc::new(SlackChannel::new(
                        o.name.clone(),
                        api.clone(),
                        token.clone(),
                        channel.clone(),
                        refs.clone(),
                    )),
                    10,
                ),
                OutputKind::Discord {
                    channel,
                    token,
                    api,
                } => (
                    Arc::new(DiscordChannel::new(
                        o.name.clone(),
                        api.clone(),
                        token.clone(),
                        channel.clone(),
                        refs.clone(),
                    )),
                    10,
                ),
            };
            (
                o.name.clone(),
                Output {
                    notifier,
                    max_attempts,
                },
            )
        })
        .collect()
}

/// A built, not yet running, purser.
pub struct Application {
    scheduler: Scheduler,
    dispatcher: Dispatcher,
    store: SqliteStore,
    activity: Activity,
    /// The listener for chat platforms and `/healthz`, bound at build time so
    /// that a taken port fails the start, not a request later.
    http: Option<(tokio::net::TcpListener, axum::Router)>,
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
        let limited: HashMap<String, LimitedProvider> = config
            .providers
            .iter()
            .map(|p| {
                let provider = providers.remove(&p.name).unwrap_or_else(|| {
                    build_provider(
                        &p.kind,
                        &p.name,
                        &config.accounts,
                        clock.clone(),
                        Some(Arc::new(store.clone())),
                    )
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
        let written = Arc::new(Notify::new());
        let activity = Activity::new();
        let poller = Poller {
            store: shared.clone(),
            clock: clock.clone(),
            outputs: Arc::new(config.outputs.iter().map(|o| o.name.clone()).collect()),
            timeout: config.scheduler.timeout,
        };
        let scheduler = Scheduler {
            accounts: Arc::new(config.accounts.clone()),
            providers: limited,
            poller,
            jitter: config.scheduler.jitter,
            retention: config.store.retention,
            store: shared.clone(),
            activity: activity.clone(),
            outbox_written: written.clone(),
        };
        let dispatcher = Dispatcher {
            store: shared.clone(),
            clock: clock.clone(),
            outputs: build_outputs(&config, &clock, Arc::new(store.clone())),
            written: written.clone(),
            activity: activity.clone(),
        };
        let http = match &config.http {
            None => None,
            Some(h) => {
                let listener = tokio::net::TcpListener::bind(h.listen)
                    .await
                    .with_context(|| format!("listening on {} (http.listen)", h.listen))?;
                let chat = Arc::new(ChatOps {
                    store: shared,
                    entries: Arc::new(store.clone()),
                    accounts: Arc::new(config.accounts.clone()),
                    entered: config.entered_balance_accounts(),
                    directory: config.directory(),
                    clock: clock.clone(),
                    outputs: config.outputs.iter().map(|o| o.name.clone()).collect(),
                    outbox: Some(OutboxSignal {
                        activity: activity.clone(),
                        written: written.clone(),
                    }),
                });
                let slack = config.slack.as_ref().map(|s| {
                    Arc::new(SlackEndpoint {
                        verifier: slack::Verifier::new(s.signing_secret.clone()),
                        chat: chat.clone(),
                        clock: clock.clone(),
                        http: reqwest::Client::new(),
                        answer_within: http::ANSWER_WITHIN,
                    })
                });
                let discord = match &config.discord {
                    None => None,
                    Some(d) => Some(Arc::new(DiscordEndpoint {
                        verifier: discord::Verifier::new(&d.public_key)
                            .map_err(|e| anyhow::anyhow!("discord.public_key: {e}"))?,
                        chat: chat.clone(),
                        clock: clock.clone(),
                        http: reqwest::Client::new(),
                        api: d.api.clone(),
                        application_id: d.application_id.clone(),
                        answer_within: http::ANSWER_WITHIN,
                    })),
                };
                Some((listener, http::router(slack, discord)))
            }
        };
        Ok(Application {
            scheduler,
            dispatcher,
            store,
            activity,
            http,
        })
    }

    /// Where the HTTP listener listens, if one is configured.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn store(&self) -> SqliteStore {
        self.store.clone()
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
        info!("purser running");
        stop.await;
        stop_http.send_replace(true);
        info!("stopping: finishing polls under way and sends that are due");
        stop_scheduler.send_replace(true);
        (&mut scheduler.0)
            .await
            .context("the scheduler task failed")?;
        stop_dispatcher.send_replace(true);
        (&mut dispatcher.0)
            .await
            .context("the dispatcher task failed")?;
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
