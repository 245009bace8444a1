//! Watching what runs: the leader's tasks, the service manager, readiness.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::info;

use super::{DiscordBot, LeaderWork};
use crate::adapters::discord;
use crate::adapters::discord_gateway;
use crate::adapters::http;
use crate::adapters::postgres::PgStore;
use crate::adapters::slack_socket;
use crate::adapters::telegram;
use crate::config::{Backend, Config, TelegramMode};
use crate::database::Database;
use crate::engine::activity::Activity;
use crate::engine::board::BoardSignal;
use crate::engine::chatops::OutboxSignal;
use crate::engine::guard;
use crate::engine::leadership::Role;
use crate::ports::Clock;

/// One spell of leading: the tasks only the leader runs, and how they end.
pub(super) struct Term {
    scheduler: Task,
    dispatcher: Task,
    board: Task,
    escalator: Task,
    stop_chat: watch::Sender<bool>,
    telegram: Option<AbortOnDrop>,
    _chat: Vec<AbortOnDrop>,
    pub(super) ended: mpsc::UnboundedReceiver<(&'static str, Option<String>)>,
}

impl Term {
    pub(super) fn start(work: &LeaderWork, clock: &Arc<dyn Clock>) -> Term {
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
    pub(super) async fn stop(&mut self) {
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
pub(super) fn service_manager(
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

/// What `/readyz` says: this replica's role (`role: leader` or `role:
/// standby`), on PostgreSQL the lease, and why it is not ready when it is
/// not: the store does not answer or its schema is not this build's, a
/// store call failed, the lease cannot be read, or the scheduler is stuck.
pub(super) fn readiness(
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
pub(super) fn described(
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
pub(super) struct Task {
    pub(super) stop: watch::Sender<bool>,
    handle: AbortOnDrop,
    stopped: bool,
}

impl Task {
    pub(super) fn spawn<F: Future<Output = ()> + Send + 'static>(
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
    pub(super) async fn stop(&mut self) {
        self.stop.send_replace(true);
        if !self.stopped {
            let _ = (&mut self.handle.0).await;
            self.stopped = true;
        }
    }
}

/// A task that ends with its owner: if `run_until_stopped` is dropped midway,
/// its tasks stop too instead of running on detached.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a chat connection: `connect` again, with backoff, whenever it ends
/// (the platform closed it for good, or it panicked), until `stop`.
pub(super) async fn keep_connected<F: Future<Output = ()>>(
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

/// How long `/readyz` waits for the store to answer.
pub(super) const STORE_ANSWERS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) type Ended = mpsc::UnboundedSender<(&'static str, Option<String>)>;

/// On PostgreSQL: what tells the leader of other replicas' writes (to the
/// outbox, to requests), kept up while the database comes and goes.
pub(super) fn change_listener(
    store: PgStore,
    outbox: OutboxSignal,
    board: BoardSignal,
    clock: Arc<dyn Clock>,
    ended: &Ended,
) -> Task {
    Task::spawn("change listener", ended, move |mut rx| async move {
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
    })
}

/// Until this replica's role is one `wanted` accepts; never, should the
/// election be gone.
pub(super) async fn until(role: &mut watch::Receiver<Role>, wanted: impl Fn(&Role) -> bool) {
    loop {
        if wanted(&role.borrow_and_update()) {
            return;
        }
        if role.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
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
