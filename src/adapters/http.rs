//! The one HTTP listener: `/healthz` and each configured platform's routes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use chrono::{DateTime, Utc};

use axum::Router;
use axum::routing::{get, post};

use super::discord::{self, DiscordEndpoint};
use super::slack::{self, SlackEndpoint};
use super::telegram::{self, TelegramWebhook};
use crate::engine::chatops::{Asker, ChatOps, Reply};

/// Slack and Discord both want an answer within 3 seconds: work this long,
/// then acknowledge and answer later.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(2500);

/// A chat answer: ready within the platform's window, or still being worked on.
pub enum Answer {
    Now(Reply),
    Later(tokio::task::JoinHandle<Reply>),
}

/// Runs `text` for `asker`, waiting at most `within` for the answer (zero:
/// never waits, the platform is acknowledged first).
pub async fn answer(
    chat: Arc<ChatOps>,
    asker: Asker,
    text: String,
    within: std::time::Duration,
) -> Answer {
    answer_with(async move { chat.handle(&asker, &text).await }, within).await
}

/// Runs `work`, waiting at most `within` for its reply.
pub async fn answer_with(
    work: impl Future<Output = Reply> + Send + 'static,
    within: std::time::Duration,
) -> Answer {
    let mut work = tokio::spawn(work);
    if !within.is_zero() {
        match tokio::time::timeout(within, &mut work).await {
            Ok(Ok(reply)) => return Answer::Now(reply),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a chat command's task failed");
                return Answer::Now(Reply::failed("purser failed to answer; try again."));
            }
            Err(_) => {}
        }
    }
    Answer::Later(work)
}

/// Sends a late answer, built by `request` once it is ready, and logs a
/// failure to deliver it (the platform has already been acknowledged).
pub fn deliver_later(
    tasks: &super::tasks::Tasks,
    work: tokio::task::JoinHandle<Reply>,
    request: impl FnOnce(Reply) -> Option<reqwest::RequestBuilder> + Send + 'static,
) {
    tasks.spawn("late chat answer", async move {
        let Ok(reply) = work.await else { return };
        let Some(req) = request(reply) else { return };
        let sent = req.timeout(std::time::Duration::from_secs(10)).send().await;
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            tracing::warn!(error = %e.without_url(), "could not deliver a late chat answer");
        }
    });
}

/// A failed request, with what lies beneath ("error sending request" alone
/// does not say whether the name did not resolve or the peer refused), and
/// without its URL, which may hold a token.
pub fn request_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The pause a 429 asks for in its `Retry-After` header (seconds; a date
/// or nothing reads as `fallback`), as the outside system counts it.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    fallback: std::time::Duration,
) -> std::time::Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| seconds(v.trim()))
        .unwrap_or(fallback)
}

/// A count of seconds as platforms write it ("30", "1.5"), refused when it
/// is negative, not finite or not a number.
pub fn seconds(text: &str) -> Option<std::time::Duration> {
    let secs: f64 = text.parse().ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// An HTTP client for purser's own outgoing calls (webhooks, heartbeats),
/// naming purser and its version, giving up after `timeout`.
pub fn client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("purser/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// How far a signed request's timestamp may be from now.
pub const WINDOW_SECS: i64 = 5 * 60;

/// Why a platform request was refused. Logged, never shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forged {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("the timestamp is not a number")]
    BadTimestamp,
    #[error("the timestamp is {0} s from now, outside the 5-minute window")]
    Stale(i64),
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the same signed request was already received")]
    Replayed,
}

/// The request's timestamp (Unix seconds), if within the window of `now`.
pub fn within_window(text: &str, now: DateTime<Utc>) -> Result<i64, Forged> {
    let ts: i64 = text.trim().parse().map_err(|_| Forged::BadTimestamp)?;
    let skew = now.timestamp() - ts;
    if skew.abs() > WINDOW_SECS {
        return Err(Forged::Stale(skew));
    }
    Ok(ts)
}

/// Signatures accepted within the window: a captured request replayed inside
/// it is refused.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    pub fn first_use(&self, signature: &str, ts: i64, now: DateTime<Utc>) -> Result<(), Forged> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, t| now.timestamp() - *t <= WINDOW_SECS);
        if seen.insert(signature.to_owned(), ts).is_some() {
            return Err(Forged::Replayed);
        }
        Ok(())
    }
}

/// Whether this replica is ready, and what it says of itself (its role,
/// the lease, why it is not ready), for `/readyz`.
pub type Readiness =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, (bool, String)> + Send + Sync>;

/// The metrics exposition with its content type, or why it could not be read.
pub type Scrape = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<(&'static str, String), String>>
        + Send
        + Sync,
>;

/// What the people running purser ask of it: `/readyz`, and `/metrics`
/// where this listener serves them (`/healthz` is always served).
#[derive(Clone)]
pub struct Ops {
    pub ready: Readiness,
    pub metrics: Option<Scrape>,
}

pub fn router(
    slack: Option<Arc<SlackEndpoint>>,
    discord: Option<Arc<DiscordEndpoint>>,
    telegram: Option<Arc<TelegramWebhook>>,
) -> Router {
    router_with(slack, discord, telegram, None)
}

/// `/healthz`, and `/readyz` and `/metrics` as `ops` says.
pub fn ops_router(ops: Option<Ops>) -> Router {
    let mut app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    let Some(ops) = ops else {
        return app;
    };
    let ready = ops.ready;
    app = app.route(
        "/readyz",
        get(move || {
            let ready = ready();
            async move {
                let (ok, body) = ready.await;
                let status = if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                };
                (status, body)
            }
        }),
    );
    if let Some(scrape) = ops.metrics {
        app = app.route(
            "/metrics",
            get(move || {
                let scrape = scrape();
                async move {
                    match scrape.await {
                        Ok((kind, text)) => (
                            axum::http::StatusCode::OK,
                            [(axum::http::header::CONTENT_TYPE, kind)],
                            text,
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "a metrics scrape failed");
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; charset=utf-8",
                                )],
                                format!("{e}\n"),
                            )
                        }
                    }
                }
            }),
        );
    }
    app
}

pub fn router_with(
    slack: Option<Arc<SlackEndpoint>>,
    discord: Option<Arc<DiscordEndpoint>>,
    telegram: Option<Arc<TelegramWebhook>>,
    ops: Option<Ops>,
) -> Router {
    let mut app = ops_router(ops);
    if let Some(s) = slack {
        app = app.merge(
            Router::new()
                .route("/slack/commands", post(slack::command))
                .route("/slack/interactions", post(slack::interaction))
                .with_state(s),
        );
    }
    if let Some(d) = discord {
        app = app.merge(
            Router::new()
                .route("/discord/interactions", post(discord::interaction))
                .with_state(d),
        );
    }
    if let Some(t) = telegram {
        app = app.merge(
            Router::new()
                .route("/telegram/webhook", post(telegram::webhook))
                .with_state(t),
        );
    }
    app
}

/// What the listener allows, so that idle or slow clients cannot take the
/// descriptors polls and the store need.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; when full, the oldest idle one is closed
    /// to make room, and a new one is turned away only if none is idle.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head this long after
    /// connecting, or after its last answer, is closed.
    pub header_timeout: std::time::Duration,
}

/// Descriptors kept for polls, the store and chat connections.
const RESERVED_FILES: usize = 256;

impl Limits {
    /// At most `wanted` connections; fewer when the process's open-file
    /// limit would leave fewer than 256 descriptors for everything else.
    pub fn within_open_files(wanted: usize) -> Limits {
        let max = match open_file_limit() {
            Some(limit) if limit.saturating_sub(RESERVED_FILES) < wanted => {
                let fitted = limit.saturating_sub(RESERVED_FILES).max(16);
                tracing::warn!(
                    open_files = limit,
                    wanted,
                    allowed = fitted,
                    "the open-file limit is low: fewer HTTP connections are allowed, so that polls and the store keep descriptors (raise LimitNOFILE or ulimit -n)"
                );
                fitted
            }
            _ => wanted,
        };
        Limits {
            max_connections: max,
            header_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The soft limit on open files, where the system says (Linux).
pub(crate) fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A connection as the listener keeps it: how many requests it is
/// answering now, and how to close it.
struct Conn {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// Counts a request under way on its connection while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Open = Arc<Mutex<VecDeque<Conn>>>;

/// Serves until `stop` completes; requests under way are then given a few
/// seconds to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let open: Open = Arc::default();
    let (closing, closed) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: pause rather than
                    // spin, while connections close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some((id, busy, close)) = admit(&open, limits.max_connections, &mut next_id) else {
            drop(stream);
            continue;
        };
        let (open, mut closed) = (open.clone(), closed.clone());
        let routes = TowerToHyperService::new(app.clone());
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let under_way = Busy::new(&busy);
                let answer = hyper::service::Service::call(&routes, req);
                async move {
                    let answer = answer.await;
                    drop(under_way);
                    answer
                }
            });
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http1.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Made room for a newer one: closed at once.
                _ = close.notified() => {}
                _ = async { let _ = closed.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|c| c.id != id);
        });
    }
    closing.send_replace(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Makes room for one more connection, closing the oldest idle one when
/// full; `None` when every one is answering a request.
fn admit(
    open: &Open,
    max: usize,
    next_id: &mut u64,
) -> Option<(u64, Arc<AtomicUsize>, Arc<Notify>)> {
    let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
    if open.len() >= max {
        let idle = open
            .iter()
            .position(|c| c.busy.load(Ordering::SeqCst) == 0)?;
        if let Some(c) = open.remove(idle) {
            c.close.notify_one();
        }
    }
    *next_id += 1;
    let busy = Arc::new(AtomicUsize::new(0));
    let close = Arc::new(Notify::new());
    open.push_back(Conn {
        id: *next_id,
        busy: busy.clone(),
        close: close.clone(),
    });
    Some((*next_id, busy, close))
}
