//! Delivers the outbox: each notice to each output, in order, retried with
//! backoff, marked delivered once it went out.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use super::activity::Activity;
use crate::ports::{Clock, Notifier, OutboxItem, SendError, Store, StoreError};

pub struct Output {
    pub notifier: Arc<dyn Notifier>,
    pub max_attempts: u32,
}

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub outputs: HashMap<String, Output>,
    pub written: Arc<Notify>,
    pub activity: Activity,
}

const BATCH: u32 = 100;

/// 5 s, 10 s, 20 s … capped at 10 minutes.
fn backoff(attempts: u32) -> Duration {
    let secs = 5i64.saturating_mul(1i64 << attempts.min(16));
    Duration::seconds(secs.min(600))
}

impl Dispatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let seen = self.activity.get().notices_written;
            let now = self.clock.now();
            self.activity.update(|s| s.dispatcher_idle = None);
            let sent = match self.deliver_due(now).await {
                Ok(n) => n,
                Err(e) => {
                    error!(error = %e, "reading the outbox failed");
                    0
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if sent > 0 {
                continue;
            }
            let next = self.store.next_notice_due().await.ok().flatten();
            self.activity
                .update(|s| s.dispatcher_idle = Some((seen, next)));
            tokio::select! {
                _ = self.written.notified() => {}
                _ = sleep_until_opt(&*self.clock, next) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!("dispatcher stopped");
    }

    /// Sends everything due at `now`; returns how many items were attempted.
    async fn deliver_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let items = self.store.due_notices(now, BATCH).await?;
        for item in &items {
            self.deliver(item, now).await?;
        }
        Ok(items.len())
    }

    async fn deliver(&self, item: &OutboxItem, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(output) = self.outputs.get(&item.output) else {
            warn!(output = %item.output, "notice for an output that is no longer configured; dropped");
            return self
                .store
                .mark_failed(item.id, "output no longer configured", None)
                .await;
        };
        match output.notifier.send(&item.notice).await {
            Ok(()) => self.store.mark_delivered(item.id, self.clock.now()).await,
            Err(SendError::Retryable(e)) if item.attempts + 1 < output.max_attempts => {
                let retry_at = now + backoff(item.attempts);
                warn!(output = %item.output, alert.fingerprint = %item.notice.fingerprint, error = %e, attempt = item.attempts + 1, "delivery failed; will retry");
                self.store.mark_failed(item.id, &e, Some(retry_at)).await
            }
            Err(e) => {
                error!(output = %item.output, alert.fingerprint = %item.notice.fingerprint, error = %e, attempts = item.attempts + 1, "delivery abandoned");
                self.store.mark_failed(item.id, &e.to_string(), None).await
            }
        }
    }
}

async fn sleep_until_opt(clock: &dyn Clock, at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::seconds(5));
        assert_eq!(backoff(1), Duration::seconds(10));
        assert_eq!(backoff(3), Duration::seconds(40));
        assert_eq!(backoff(30), Duration::seconds(600));
    }
}
