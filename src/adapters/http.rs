//! The one HTTP listener: `/healthz` and each configured platform's routes.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::slack::{self, SlackEndpoint};

pub fn router(slack: Option<Arc<SlackEndpoint>>) -> Router {
    let mut app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    if let Some(s) = slack {
        app = app.merge(
            Router::new()
                .route("/slack/commands", post(slack::command))
                .route("/slack/interactions", post(slack::interaction))
                .with_state(s),
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
