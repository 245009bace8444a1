//! The one HTTP listener: `/healthz` and each configured platform's routes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

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
    work: tokio::task::JoinHandle<Reply>,
    request: impl FnOnce(Reply) -> Option<reqwest::RequestBuilder> + Send + 'static,
) {
    tokio::spawn(async move {
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

pub fn router(
    slack: Option<Arc<SlackEndpoint>>,
    discord: Option<Arc<DiscordEndpoint>>,
    telegram: Option<Arc<TelegramWebhook>>,
) -> Router {
    let mut app = Router::new().route("/healthz", get(|| async { "ok\n" }));
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

/// Serves until `stop` completes; requests under way are finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}
