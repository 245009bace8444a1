//! Starts polls on each account's cron schedule: once at start, then at each
//! tick, shifted by a fixed per-account jitter. A tick that finds the account's
//! previous poll still running is skipped, and missed ticks are not replayed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info};

use super::activity::{Activity, InFlight};
use super::approvals::Approvals;
use super::poller::{LimitedProvider, Poller};
use crate::domain::account::AccountSpec;
use crate::ports::{Heartbeat, Sent, Store};

/// How often requests are swept: overdue ones expired, approved ones whose
/// cloud could not be asked tried again, lost answers read back, and the
/// work of a runner whose lease (30 s) lapsed taken over, within a minute.
const SWEEP_EVERY: Duration = Duration::seconds(20);

pub struct Scheduler {
    /// Requests to expire and to carry on with, swept every minute.
    pub requests: Option<Arc<Approvals>>,
    /// Shared with each poll, which hands its account on to be recorded.
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    pub providers: HashMap<String, LimitedProvider>,
    pub poller: Poller,
    pub jitter: Duration,
    /// The zone the cron schedules are read in.
    pub timezone: chrono_tz::Tz,
    pub retention: Duration,
    pub store: Arc<dyn Store>,
    pub activity: Activity,
    /// Wakes the dispatcher after notices were written.
    pub outbox_written: Arc<Notify>,
    /// What purser watches of itself, judged at each sweep.
    pub own: Option<super::poller::OwnWatch>,
    /// Told each time every account has been polled (a dead man's switch
    /// outside purser raises the alarm when it stops hearing).
    pub heartbeat: Option<Arc<dyn Heartbeat>>,
}

/// Which accounts have been polled since the last heartbeat, and which of
/// them could not be read.
struct Cycle {
    polled: Vec<bool>,
    left: usize,
    blind: Vec<usize>,
}

impl Cycle {
    fn new(accounts: usize) -> Cycle {
        Cycle {
            polled: vec![false; accounts],
            left: accounts,
            blind: Vec::new(),
        }
    }

    /// Counts one finished poll; true when it completes the cycle.
    fn polled(&mut self, idx: usize, read: bool) -> bool {
        if let Some(seen) = self.polled.get_mut(idx) {
            if !read && !self.blind.contains(&idx) {
                self.blind.push(idx);
            }
            if !*seen {
                *seen = true;
                self.left -= 1;
            }
        }
        self.left == 0
    }
}

/// A fixed share of `jitter` for an account, so its polls land at the same
/// offset every time and accounts sharing a schedule spread out.
fn jitter_for(account: &str, jitter: Duration) -> Duration {
    let secs = jitter.num_seconds();
    if secs <= 0 {
        return Duration::zero();
    }
    let h = Sha256::digest(account.as_bytes());
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    Duration::seconds((n % secs.unsigned_abs()) as i64)
}

/// The first tick of `schedule` after `after`, shifted by `offset`; read in
/// `zone`, so that `0 9 * * *` is 09:00 there, across its day boundary.
fn next_tick(
    schedule: &cron::Schedule,
    zone: chrono_tz::Tz,
    offset: Duration,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule
        .after(&(after - offset).with_timezone(&zone))
        .next()
        .map(|t| t.with_timezone(&Utc) + offset)
}

impl Scheduler {
    fn next_tick(&self, idx: usize, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let a = &self.accounts[idx];
        let offset = jitter_for(a.account.id.as_str(), self.jitter);
        next_tick(&a.schedule, self.timezone, offset, after)
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let clock = self.poller.clock.clone();
        let start = clock.now();
        // Everything is polled once at start, so alerts show without waiting for a tick.
        let mut due: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> = (0..self.accounts.len())
            .map(|i| Reverse((start, i)))
            .collect();
        let mut running: JoinSet<(usize, bool)> = JoinSet::new();
        let mut cycle = Cycle::new(self.accounts.len());
        let mut beating: JoinSet<()> = JoinSet::new();
        let mut in_flight = vec![false; self.accounts.len()];
        let mut next_prune = start;
        let mut next_sweep = start;
        let mut sweeping: JoinSet<()> = JoinSet::new();

        loop {
            let now = clock.now();
            self.activity.update(|s| {
                s.next_poll_due = None;
                s.scheduler_tick = Some((now, None));
            });
            while let Some(Reverse((at, idx))) = due.peek().copied() {
                if at > now {
                    break;
                }
                due.pop();
                if in_flight[idx] {
                    debug!(account = %self.accounts[idx].account.id, "previous poll still running; tick skipped");
                } else {
                    in_flight[idx] = self.start(idx, &mut running);
                }
                if let Some(next) = self.next_tick(idx, now) {
                    due.push(Reverse((next, idx)));
                }
            }
            if now >= next_prune {
                match self.store.prune_snapshots(now - self.retention).await {
                    Ok(n) if n > 0 => info!(pruned = n, "old snapshots pruned"),
                    Ok(_) => {}
                    Err(e) => {
                        error!(error = %e, "pruning snapshots failed");
                        self.activity.store_failed(&e);
                    }
                }
                next_prune = now + Duration::hours(1);
            }
            // A sweep still running when the next is due skips it, as polls do.
            if now >= next_sweep {
                if let Some(requests) = self.requests.clone().filter(|_| sweeping.is_empty()) {
                    let activity = self.activity.clone();
                    let sweep = InFlight::start(&activity, |s| &mut s.sweeps_in_flight);
                    sweeping.spawn(async move {
                        match super::guard::caught(requests.sweep(now)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                error!(error = %e, "sweeping requests failed");
                                activity.store_failed(&e);
                            }
                            Err(why) => {
                                error!(panic = %why, "sweeping requests failed inside purser")
                            }
                        }
                        sweep.finish(|_| {});
                    });
                }
                if let Some(own) = &self.own {
                    match super::guard::caught(self.poller.judge_own(own)).await {
                        Ok(Ok(true)) => self.outbox_written.notify_one(),
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => {
                            error!(error = %e, "judging purser's own watch failed");
                            self.activity.store_failed(&e);
                        }
                        Err(why) => error!(panic = %why, "judging purser's own watch failed"),
                    }
                }
                next_sweep = now + SWEEP_EVERY;
            }
            let wake = due
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or(next_prune)
                .min(next_prune)
                .min(next_sweep);
            self.activity.update(|s| {
                s.next_poll_due = Some(wake);
                s.scheduler_tick = Some((now, Some(wake)));
            });

            tokio::select! {
                _ = clock.sleep_until(wake) => {}
                Some(done) = running.join_next() => {
                    if let Ok((idx, read)) = done {
                        in_flight[idx] = false;
                        if cycle.polled(idx, read) {
                            let blind = std::mem::take(&mut cycle.blind);
                            cycle = Cycle::new(self.accounts.len());
                            self.beat(&blind, &mut beating);
                        }
                    }
                }
                Some(_) = sweeping.join_next() => {}
                Some(_) = beating.join_next() => {}
                _ = shutdown.changed() => break,
            }
        }
        while sweeping.join_next().await.is_some() {}
        while beating.join_next().await.is_some() {}

        // Let polls already under way finish and record what they saw.
        while let Some(done) = running.join_next().await {
            if let Ok((idx, _)) = done {
                in_flight[idx] = false;
            }
        }
        self.activity.update(|s| s.scheduler_tick = None);
        info!("scheduler stopped");
    }

    /// Tells the heartbeat that a cycle completed, without holding up
    /// polls; a beat still on its way when the next is due is not doubled.
    fn beat(&self, blind: &[usize], beating: &mut JoinSet<()>) {
        let Some(heartbeat) = self.heartbeat.clone() else {
            return;
        };
        if !beating.is_empty() {
            debug!("the previous heartbeat is still on its way; this one is skipped");
            return;
        }
        let blind: Vec<String> = blind
            .iter()
            .filter_map(|&i| self.accounts.get(i))
            .map(|a| a.account.id.to_string())
            .collect();
        let meter = self.poller.meter.clone();
        beating.spawn(async move {
            let sent = match super::guard::caught(heartbeat.beat(&blind)).await {
                Ok(Ok(())) => {
                    debug!(blind = blind.len(), "heartbeat sent");
                    Sent::Delivered
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the heartbeat could not be sent; the outside check raises the alarm if this goes on");
                    Sent::Failed
                }
                Err(why) => {
                    error!(panic = %why, "sending the heartbeat failed inside purser");
                    Sent::Failed
                }
            };
            meter.heartbeat(sent);
        });
    }

    fn start(&self, idx: usize, running: &mut JoinSet<(usize, bool)>) -> bool {
        let account = self.accounts[idx].clone();
        let Some(provider) = self.providers.get(&account.account.provider).cloned() else {
            error!(account = %account.account.id, provider = %account.account.provider, "no such provider");
            return false;
        };
        let poller = self.poller.clone();
        let activity = self.activity.clone();
        let written = self.outbox_written.clone();
        let poll = InFlight::start(&activity, |s| &mut s.polls_in_flight);
        let span = tracing::info_span!(
            "poll",
            account = %account.account.id,
            provider = %account.account.provider
        );
        running.spawn(async move {
            // A panic here would leave the account marked in flight, never
            // polled again: it is caught and said instead.
            let (wrote, read) = match super::guard::caught(poller.run(account.clone(), &provider)).await {
                Ok(Ok(done)) => (done.wrote, done.read),
                Ok(Err(e)) => {
                    error!(account = %account.account.id, error = %e, "recording the poll failed");
                    activity.store_failed(&e);
                    (false, false)
                }
                Err(why) => {
                    error!(account = %account.account.id, panic = %why, "the poll failed inside purser");
                    (false, false)
                }
            };
            // Count the write before waking the dispatcher, so that it never
            // reports itself caught up with a write it has not seen.
            poll.finish(|s| {
                if wrote {
                    s.notices_written += 1;
                }
            });
            if wrote {
                written.notify_one();
            }
            (idx, read)
        }.instrument(span));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_and_bounded() {
        let j = Duration::seconds(30);
        let a = jitter_for("shop-prod", j);
        assert_eq!(a, jitter_for("shop-prod", j));
        assert!(a >= Duration::zero() && a < j);
        assert_eq!(jitter_for("x", Duration::zero()), Duration::zero());
    }

    #[test]
    fn schedules_are_read_in_the_teams_zone_across_a_day_boundary() {
        use std::str::FromStr;
        let nine = cron::Schedule::from_str("0 0 9 * * *").unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let shanghai = chrono_tz::Asia::Shanghai;
        // 08:30 in Beijing: 09:00 the same day, 01:00 UTC.
        assert_eq!(
            next_tick(
                &nine,
                shanghai,
                Duration::zero(),
                at("2026-12-03T00:30:00Z")
            ),
            Some(at("2026-12-03T01:00:00Z"))
        );
        // 23:30 UTC on the 3rd is already 07:30 on the 4th in Beijing.
        assert_eq!(
            next_tick(
                &nine,
                shanghai,
                Duration::zero(),
                at("2026-12-03T23:30:00Z")
            ),
            Some(at("2026-12-04T01:00:00Z"))
        );
        // 10:00 in Beijing: tomorrow's.
        assert_eq!(
            next_tick(
                &nine,
                shanghai,
                Duration::zero(),
                at("2026-12-03T02:00:00Z")
            ),
            Some(at("2026-12-04T01:00:00Z"))
        );
        // In UTC it would have been 09:00 UTC, 17:00 in Beijing.
        assert_eq!(
            next_tick(
                &nine,
                chrono_tz::UTC,
                Duration::zero(),
                at("2026-12-03T02:00:00Z")
            ),
            Some(at("2026-12-03T09:00:00Z"))
        );
        // The jitter shifts the tick, not the zone's reading of it.
        assert_eq!(
            next_tick(
                &nine,
                shanghai,
                Duration::seconds(20),
                at("2026-12-03T00:30:00Z")
            ),
            Some(at("2026-12-03T01:00:20Z"))
        );
    }
}
