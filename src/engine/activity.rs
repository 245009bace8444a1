//! What the engine's tasks are doing, published so that tests (and a future
//! health endpoint) can wait for quiet instead of sleeping.

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A task waiting, having seen this many writes; with when it is due next.
pub type Idle = (u64, Option<DateTime<Utc>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityState {
    /// The earliest moment the scheduler will next start a poll; `None` while it works.
    pub next_poll_due: Option<DateTime<Utc>>,
    pub polls_in_flight: usize,
    /// Request sweeps under way (expiring, closing tasks, resuming).
    pub sweeps_in_flight: usize,
    /// Counts evaluations that wrote notices to the outbox.
    pub notices_written: u64,
    /// Per output, its delivery is waiting, having seen this many writes,
    /// with the time its next retry is due, if any; `None` while it sends.
    pub deliveries: std::collections::BTreeMap<String, Option<Idle>>,
    /// Counts writes to requests that their cards in chat should show.
    pub request_changes: u64,
    /// The request board is waiting, having seen this many changes; with
    /// the time its next retry is due, if any.
    pub board_idle: Option<(u64, Option<DateTime<Utc>>)>,
    /// The escalator is waiting, having seen this many outbox writes (alerts
    /// firing, acknowledged, resolved); with when its next step or page is due.
    pub escalator_idle: Option<(u64, Option<DateTime<Utc>>)>,
    /// Notices and pages sent again because a send was cut off (a crash, a
    /// replica's death) before it was recorded: the one repeat there can be.
    pub sent_again: u64,
    /// The store refused a read or a write: purser cannot keep its books,
    /// and the daemon stops (non-zero) rather than run on as if healthy.
    pub store_failing: Option<String>,
    /// Whether that failure was the store not answering (it may again).
    pub store_unreachable: bool,
    /// When the scheduler's loop last began a turn, and, once it finished
    /// it, when it is due to wake; `None` while it does not run.
    pub scheduler_tick: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// How late the scheduler may be past its own wake-up (or busy in one
/// turn) before it counts as stuck: longer than any store call should take.
pub const SCHEDULER_STUCK_AFTER: chrono::Duration = chrono::Duration::seconds(90);

impl ActivityState {
    /// Why the scheduler counts as stuck at `now`, if it does: a turn that
    /// has not ended, or a wake-up that has not come, 90 s late.
    pub fn scheduler_stuck(&self, now: DateTime<Utc>) -> Option<String> {
        let (began, wake) = self.scheduler_tick?;
        match wake {
            None if now - began > SCHEDULER_STUCK_AFTER => Some(format!(
                "the scheduler has been busy with one turn since {} (polls, pruning or a sweep hang: is the store answering?)",
                began.to_rfc3339()
            )),
            Some(wake) if now - wake > SCHEDULER_STUCK_AFTER => Some(format!(
                "the scheduler was due to wake at {} and has not",
                wake.to_rfc3339()
            )),
            _ => None,
        }
    }

    /// Nothing due at or before `t` is left to poll, evaluate or send.
    pub fn quiet_at(&self, t: DateTime<Utc>) -> bool {
        self.next_poll_due.is_some_and(|n| n > t)
            && self.polls_in_flight == 0
            && self.sweeps_in_flight == 0
            && self.deliveries.values().all(|d| {
                d.is_some_and(|(seen, next)| {
                    seen == self.notices_written && next.is_none_or(|n| n > t)
                })
            })
            && self.board_idle.is_some_and(|(seen, next)| {
                seen == self.request_changes && next.is_none_or(|n| n > t)
            })
            && self.escalator_idle.is_some_and(|(seen, next)| {
                seen == self.notices_written && next.is_none_or(|n| n > t)
            })
    }
}

#[derive(Clone)]
pub struct Activity {
    tx: watch::Sender<ActivityState>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            tx: watch::Sender::new(ActivityState::default()),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut ActivityState)) {
        self.tx.send_modify(f);
    }

    pub fn get(&self) -> ActivityState {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ActivityState> {
        self.tx.subscribe()
    }

    /// Records that the store failed (the first failure is kept).
    pub fn store_failed(&self, error: &crate::ports::StoreError) {
        // Not a failure: another replica took over, and this one's leading
        // work is being stopped.
        if let Some(why) = error.not_leader() {
            tracing::warn!(%why, "a write as leader was refused");
            return;
        }
        self.tx.send_if_modified(|s| {
            if s.store_failing.is_some() {
                return false;
            }
            s.store_failing = Some(error.to_string());
            s.store_unreachable = error.is_unreachable();
            true
        });
    }

    /// The store answers again: failures are watched for afresh.
    pub fn store_recovered(&self) {
        self.tx.send_if_modified(|s| {
            let was = s.store_failing.take().is_some();
            s.store_unreachable = false;
            was
        });
    }

    /// Waits until the store has failed; what it said, and whether it was
    /// the store not answering.
    pub async fn store_failure(&self) -> (String, bool) {
        let mut rx = self.tx.subscribe();
        let failure = rx
            .wait_for(|s| s.store_failing.is_some())
            .await
            .ok()
            .and_then(|s| Some((s.store_failing.clone()?, s.store_unreachable)));
        match failure {
            Some(f) => f,
            // The sender lives as long as `self`.
            None => std::future::pending().await,
        }
    }
}

/// One unit of work counted in flight (a poll, a sweep) until it ends, or
/// until it is dropped unfinished: a task cut off (its lead lost, a stop
/// past its timeout) must not stay counted, or nothing would read as quiet.
pub struct InFlight {
    activity: Activity,
    count: fn(&mut ActivityState) -> &mut usize,
    done: bool,
}

impl InFlight {
    pub fn start(activity: &Activity, count: fn(&mut ActivityState) -> &mut usize) -> InFlight {
        activity.count(count, |n| n.saturating_add(1), |_| {});
        InFlight {
            activity: activity.clone(),
            count,
            done: false,
        }
    }

    /// Ends it, with `also` changed in the same update.
    pub fn finish(mut self, also: impl FnOnce(&mut ActivityState)) {
        self.done = true;
        self.activity
            .count(self.count, |n| n.saturating_sub(1), also);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.activity
                .count(self.count, |n| n.saturating_sub(1), |_| {});
        }
    }
}

impl Activity {
    /// Steps a count of work in flight, with `also` changed in the same
    /// update. Waiters hear of it when the count leaves or reaches zero, or
    /// when `also` changed something: every waiter watches for quiet, none
    /// for a count's steps on the way, and waking them at each of a cycle's
    /// 10,000 polls cost a thread switch each.
    fn count(
        &self,
        count: fn(&mut ActivityState) -> &mut usize,
        step: impl FnOnce(usize) -> usize,
        also: impl FnOnce(&mut ActivityState),
    ) {
        self.tx.send_if_modified(|s| {
            let was = *count(s);
            *count(s) = step(was);
            let counted = s.clone();
            also(s);
            (was == 0) != (*count(s) == 0) || *s != counted
        });
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_cut_off_is_no_longer_counted_in_flight() {
        let a = Activity::new();
        let done = InFlight::start(&a, |s| &mut s.polls_in_flight);
        let cut = InFlight::start(&a, |s| &mut s.polls_in_flight);
        assert_eq!(a.get().polls_in_flight, 2);
        done.finish(|s| s.notices_written += 1);
        assert_eq!((a.get().polls_in_flight, a.get().notices_written), (1, 1));
        drop(cut);
        assert_eq!(a.get().polls_in_flight, 0);
    }

    #[test]
    fn waiters_hear_of_work_starting_and_ending_not_of_each_step_between() {
        let a = Activity::new();
        let mut rx = a.subscribe();
        let first = InFlight::start(&a, |s| &mut s.polls_in_flight);
        assert!(rx.has_changed().unwrap(), "no longer quiet");
        rx.borrow_and_update();
        let second = InFlight::start(&a, |s| &mut s.polls_in_flight);
        first.finish(|_| {});
        assert!(!rx.has_changed().unwrap(), "2, then 1 in flight");
        assert_eq!(a.get().polls_in_flight, 1, "read as it stands all the same");
        let third = InFlight::start(&a, |s| &mut s.polls_in_flight);
        third.finish(|s| s.notices_written += 1);
        assert!(rx.has_changed().unwrap(), "a write is heard");
        rx.borrow_and_update();
        drop(second);
        assert!(rx.has_changed().unwrap(), "quiet again");
        assert_eq!(rx.borrow_and_update().polls_in_flight, 0);
    }

    #[test]
    fn a_scheduler_late_past_its_wake_or_stuck_in_a_turn_is_said_to_be() {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let secs = chrono::Duration::seconds;
        let mut s = ActivityState::default();
        assert_eq!(s.scheduler_stuck(t), None, "not running: nothing to judge");
        s.scheduler_tick = Some((t, Some(t + secs(20))));
        assert_eq!(s.scheduler_stuck(t + secs(110)), None);
        let late = s.scheduler_stuck(t + secs(111)).unwrap_or_default();
        assert!(late.contains("due to wake"), "{late}");
        s.scheduler_tick = Some((t, None));
        assert_eq!(s.scheduler_stuck(t + secs(90)), None);
        let busy = s.scheduler_stuck(t + secs(91)).unwrap_or_default();
        assert!(busy.contains("busy with one turn"), "{busy}");
    }
}
