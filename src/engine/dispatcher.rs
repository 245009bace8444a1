//! Delivers the outbox: each notice to each output, in order, retried with
//! backoff, marked delivered once it went out.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use super::activity::Activity;
use crate::ports::{Clock, Notifier, OutboxItem, SendError, Store, StoreError, StoredNotice};

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
                    self.activity.store_failed(&e);
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
                _ = super::clock::sleep_until_opt(&*self.clock, next) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!("dispatcher stopped");
    }

    /// Sends everything due at `now`; returns how many items were attempted.
    async fn deliver_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let items = self.store.due_notices(now, BATCH).await?;
        for group in groups(&items, |output| {
            self.outputs
                .get(output)
                .map_or(1, |o| o.notifier.group_limit())
        }) {
            self.deliver(&group, now).await?;
        }
        Ok(items.len())
    }

    /// Delivers one group (one output; one item unless the output groups).
    async fn deliver(&self, group: &[&OutboxItem], now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        let Some(output) = self.outputs.get(&first.output) else {
            warn!(output = %first.output, "notice for an output that is no longer configured; dropped");
            for item in group {
                self.store
                    .mark_failed(item.id, "output no longer configured", None)
                    .await?;
            }
            return Ok(());
        };
        let sent = if let [item] = group {
            output.notifier.send(&item.notice).await
        } else {
            let notices: Vec<StoredNotice> = group.iter().map(|i| i.notice.clone()).collect();
            output.notifier.send_group(&notices).await
        };
        let attempts = group.iter().map(|i| i.attempts).max().unwrap_or(0);
        for item in group {
            match &sent {
                Ok(()) => self.store.mark_delivered(item.id, self.clock.now()).await?,
                Err(SendError::Retryable(e)) if attempts + 1 < output.max_attempts => {
                    let retry_at = now + backoff(attempts);
                    warn!(output = %item.output, alert.fingerprint = %item.notice.fingerprint, error = %e, attempt = attempts + 1, "delivery failed; will retry");
                    self.store.mark_failed(item.id, e, Some(retry_at)).await?;
                }
                Err(e) => {
                    error!(output = %item.output, alert.fingerprint = %item.notice.fingerprint, error = %e, attempts = attempts + 1, "delivery abandoned");
                    self.store
                        .mark_failed(item.id, &e.to_string(), None)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Outbox items in delivery groups: per output, the items of one account
/// decided at the same moment (one poll's evaluation), up to the output's
/// group limit; in the order their first item is due.
fn groups(items: &[OutboxItem], limit: impl Fn(&str) -> usize) -> Vec<Vec<&OutboxItem>> {
    let mut out: Vec<Vec<&OutboxItem>> = Vec::new();
    for item in items {
        let max = limit(&item.output).max(1);
        let joins = out.iter_mut().find(|g| {
            let head = &g[0];
            g.len() < max
                && head.output == item.output
                && head.notice.account == item.notice.account
                && head.notice.decided_at == item.notice.decided_at
        });
        match joins {
            Some(g) if max > 1 => g.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64, output: &str, account: &str, minute: i64) -> OutboxItem {
        let mut notice =
            crate::engine::alert_view::tests::notice(crate::domain::alert::NoticeKind::Firing);
        notice.account = account.into();
        notice.decided_at += Duration::minutes(minute);
        OutboxItem {
            id,
            output: output.into(),
            attempts: 0,
            notice,
        }
    }

    #[test]
    fn one_accounts_notices_from_one_poll_go_together_where_the_output_groups() {
        let items = vec![
            item(1, "robot", "acme", 0),
            item(2, "chat", "acme", 0),
            item(3, "robot", "acme", 0),
            item(4, "robot", "other", 0),
            item(5, "robot", "acme", 1),
            item(6, "robot", "acme", 0),
            item(7, "chat", "acme", 0),
        ];
        let ids = |limit: usize| -> Vec<Vec<i64>> {
            groups(&items, |o| if o == "robot" { limit } else { 1 })
                .iter()
                .map(|g| g.iter().map(|i| i.id).collect())
                .collect()
        };
        assert_eq!(ids(10), [vec![1, 3, 6], vec![2], vec![4], vec![5], vec![7]]);
        assert_eq!(
            ids(2),
            [vec![1, 3], vec![2], vec![4], vec![5], vec![6], vec![7]]
        );
        assert_eq!(ids(1).len(), 7);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::seconds(5));
        assert_eq!(backoff(1), Duration::seconds(10));
        assert_eq!(backoff(3), Duration::seconds(40));
        assert_eq!(backoff(30), Duration::seconds(600));
    }
}
