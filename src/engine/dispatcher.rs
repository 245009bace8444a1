//! Delivers the outbox: each output on its own, so that one that hangs or
//! refuses holds up no other; each notice in order, retried with backoff,
//! marked delivered once it went out. A notice an output never takes after
//! every attempt is kept as failed, and said (delivery_failed) through the
//! other outputs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, warn};

use super::activity::Activity;
use super::guard;
use super::poller::Poller;
use crate::domain::account::AccountSpec;
use crate::domain::backoff::SENDING;
use crate::engine::leadership::Gate;
use crate::ports::{
    Clock, Meter, Notifier, OutboxItem, SendError, Sent, Store, StoreError, StoredNotice,
};

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
    /// Judges at once, when an output loses a notice, what that means for
    /// its account (the delivery_failed alert).
    pub judge: Option<Judge>,
    /// Nothing is sent unless this replica leads.
    pub gate: Gate,
    pub meter: Arc<dyn Meter>,
}

/// What raising delivery_failed needs.
pub struct Judge {
    pub poller: Poller,
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
}

const BATCH: u32 = 100;

/// What one delivery pass over an output did.
#[derive(Debug, Default)]
struct Pass {
    attempted: usize,
    held: Option<DateTime<Utc>>,
}

/// A delivery that finds nothing due looks again this often anyway: a
/// notice queued again by `purser outbox retry` (another process) is sent
/// without a restart.
const LOOK_AGAIN: Duration = Duration::minutes(1);

impl Dispatcher {
    /// The outputs whose delivery `activity` should wait for, before the
    /// dispatcher runs (so that nothing reads as quiet before it starts).
    pub fn announce(&self) {
        self.activity.update(|s| {
            for name in self.outputs.keys() {
                s.deliveries.insert(name.clone(), None);
            }
        });
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.announce();
        let this = self;
        if let Err(e) = this.orphans().await {
            error!(error = %e, "reading the outbox failed");
            this.activity.store_failed(&e);
        }
        let mut workers = JoinSet::new();
        let mut wakes = Vec::new();
        for name in this.outputs.keys() {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            let (this, name, stop) = (this.clone(), name.clone(), shutdown.clone());
            workers.spawn(async move { this.deliver_loop(&name, &wake, stop).await });
        }
        loop {
            tokio::select! {
                _ = this.written.notified() => {
                    for w in &wakes {
                        w.notify_one();
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        // Each delivery finishes the pass it is in.
        while workers.join_next().await.is_some() {}
        info!("dispatcher stopped");
    }

    /// Notices queued for outputs no longer configured: kept as failed.
    async fn orphans(&self) -> Result<(), StoreError> {
        for output in self.store.pending_outputs().await? {
            if self.outputs.contains_key(&output) {
                continue;
            }
            let far = self.clock.now() + Duration::days(36_500);
            let items = self.store.due_notices(&output, far, u32::MAX).await?;
            warn!(%output, notices = items.len(), "notices for an output that is no longer configured; kept as failed");
            for item in &items {
                self.store
                    .mark_failed(item.id, "the output is no longer configured", None)
                    .await?;
            }
            self.judge(&items).await;
        }
        Ok(())
    }

    /// One output's delivery, until `shutdown`.
    async fn deliver_loop(&self, name: &str, wake: &Notify, mut shutdown: watch::Receiver<bool>) {
        let idle = |state: Option<super::activity::Idle>| {
            self.activity.update(|s| {
                s.deliveries.insert(name.to_owned(), state);
            })
        };
        loop {
            let seen = self.activity.get().notices_written;
            idle(None);
            let now = self.clock.now();
            let pass = match self.deliver_due(name, now).await {
                Ok(pass) => pass,
                Err(e) => {
                    error!(output = name, error = %e, "reading the outbox failed");
                    self.activity.store_failed(&e);
                    Pass::default()
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if let Some(until) = pass.held {
                // New notices wait too: sending them now would only be
                // refused again, and may lengthen the pause.
                idle(Some((seen, Some(until))));
                tokio::select! {
                    _ = self.clock.sleep_until(until) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if pass.attempted > 0 {
                continue;
            }
            let next = self.store.next_notice_due(name).await.ok().flatten();
            idle(Some((seen, next)));
            let look = next.map_or(now + LOOK_AGAIN, |n| n.min(now + LOOK_AGAIN));
            tokio::select! {
                _ = wake.notified() => {}
                _ = self.clock.sleep_until(look) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sends what is due on `output` at `now`: how many items were
    /// attempted, and until when the output asked to be left alone if it
    /// did (the rest of the pass then waits too).
    async fn deliver_due(&self, output: &str, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let items = self.store.due_notices(output, now, BATCH).await?;
        let limit = self
            .outputs
            .get(output)
            .map_or(1, |o| o.notifier.group_limit());
        for group in groups(&items, |_| limit) {
            if let Some(until) = self.deliver(&group, now).await? {
                return Ok(Pass {
                    attempted: items.len(),
                    held: Some(until),
                });
            }
        }
        Ok(Pass {
            attempted: items.len(),
            held: None,
        })
    }

    /// Delivers one group (one output; one item unless the output groups);
    /// `Some(until)` when the output is rate limited until then.
    async fn deliver(
        &self,
        group: &[&OutboxItem],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(first) = group.first() else {
            return Ok(None);
        };
        let span = tracing::info_span!(
            "deliver",
            output = %first.output,
            notice_id = %first.notice.id,
            account = %first.notice.account,
            rule = %first.notice.rule.as_str(),
            notices = group.len()
        );
        self.deliver_group(group, first, now).instrument(span).await
    }

    async fn deliver_group(
        &self,
        group: &[&OutboxItem],
        first: &OutboxItem,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(output) = self.outputs.get(&first.output) else {
            return Ok(None);
        };
        if !self.gate.open_at(self.clock.now()) {
            return Err(StoreError::NotLeader(
                "this replica no longer leads; the leader sends".into(),
            ));
        }
        let ids: Vec<i64> = group.iter().map(|i| i.id).collect();
        let again = self.store.sending(&ids, self.clock.now()).await?;
        if again > 0 {
            warn!(output = %first.output, notices = again, notice_id = %first.notice.id, "sending again what was being sent when purser (or a replica) stopped: the receiver may have it already, and drops it by its id");
            self.activity.update(|s| s.sent_again += u64::from(again));
        }
        let send = async {
            if let [item] = group {
                output.notifier.send(&item.notice).await
            } else {
                let notices: Vec<StoredNotice> = group.iter().map(|i| i.notice.clone()).collect();
                output.notifier.send_group(&notices).await
            }
        };
        // A fault in an output's code is that output's failure, retried.
        let sent = guard::caught(send).await.unwrap_or_else(|why| {
            Err(SendError::transient(format!("failed inside purser: {why}")))
        });
        let attempts = group.iter().map(|i| i.attempts).max().unwrap_or(0);
        let retrying = |e: &SendError| e.is_retryable() && attempts + 1 < output.max_attempts;
        let result = match &sent {
            Ok(()) => Sent::Delivered,
            Err(SendError::RateLimited { .. }) => Sent::RateLimited,
            Err(e) if retrying(e) => Sent::Retrying,
            Err(_) => Sent::Failed,
        };
        self.meter.notices(&first.output, result, group.len());
        let held = sent.as_ref().err().and_then(|e| e.held_until(now));
        let mut lost = Vec::new();
        for item in group {
            match (&sent, held) {
                (Ok(()), _) => self.store.mark_delivered(item.id, self.clock.now()).await?,
                (Err(e), Some(until)) => {
                    warn!(output = %item.output, fingerprint = %item.notice.fingerprint, error = %e, until = %until, "the output asks purser to wait; nothing goes to it until then");
                    self.store.postpone(item.id, &e.to_string(), until).await?;
                }
                (Err(e), None) if retrying(e) => {
                    let retry_at = now + SENDING.after(attempts.saturating_add(1));
                    warn!(output = %item.output, fingerprint = %item.notice.fingerprint, error = %e, attempt = attempts + 1, of = output.max_attempts, retry_at = %retry_at, "delivery failed; will retry");
                    self.store
                        .mark_failed(item.id, e.message(), Some(retry_at))
                        .await?;
                }
                (Err(e), None) => {
                    error!(output = %item.output, fingerprint = %item.notice.fingerprint, error = %e.message(), attempts = attempts + 1, "delivery failed for good: the notice is kept as failed (purser outbox list --failed) and delivery_failed goes to the other outputs");
                    self.store.mark_failed(item.id, e.message(), None).await?;
                    lost.push((*item).clone());
                }
            }
        }
        self.judge(&lost).await;
        Ok(held)
    }

    /// Raises delivery_failed at once for the accounts of `lost` notices.
    async fn judge(&self, lost: &[OutboxItem]) {
        let Some(judge) = &self.judge else { return };
        let mut wrote = false;
        let mut seen: Vec<&str> = Vec::new();
        for item in lost {
            let account = item.notice.account.as_str();
            if seen.contains(&account) {
                continue;
            }
            seen.push(account);
            let Some(a) = judge
                .accounts
                .iter()
                .find(|a| a.account.id.as_str() == account)
            else {
                continue;
            };
            match judge.poller.judge_deliveries(a).await {
                Ok(w) => wrote |= w,
                Err(e) => {
                    error!(account = account, error = %e, "recording delivery_failed failed");
                    self.activity.store_failed(&e);
                }
            }
        }
        if wrote {
            // Counted before the wake, as a poll's notices are.
            self.activity.update(|s| s.notices_written += 1);
            self.written.notify_one();
        }
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
}
