//! Pacing calls to a rate-limited API.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

/// Departures evenly spaced and 3 % slower than a documented limit, so that a few milliseconds of scheduling or
/// network jitter cannot put `limit + 1` requests into any one-second window
/// of a server that counts strictly.
///
/// Each caller reserves the next free slot on a fixed grid before it sleeps.
/// A limiter that checks, sleeps and checks again (governor's `until_ready`)
/// loses the timer's lag at every slot: 3 % of the rate at 200 a second. Here
/// a late wake-up never moves the later slots.
pub struct Pacer {
    period: StdDuration,
    next: Mutex<tokio::time::Instant>,
    /// A second limit, `count` in any `span` (Telegram: 20 a minute in a
    /// group), and the slots given out within the last span.
    window: Option<(usize, StdDuration)>,
    recent: Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl Pacer {
    /// For a documented limit of `limit` requests a second.
    pub fn new(limit: NonZeroU32) -> Pacer {
        Pacer {
            period: StdDuration::from_nanos(1_000_000_000u64 * 100 / (u64::from(limit.get()) * 97)),
            next: Mutex::new(tokio::time::Instant::now()),
            window: None,
            recent: Mutex::default(),
        }
    }

    /// For "one every `period`" (chat platforms count per channel).
    pub fn every(period: StdDuration) -> Pacer {
        Pacer {
            period,
            next: Mutex::new(tokio::time::Instant::now()),
            window: None,
            recent: Mutex::default(),
        }
    }

    /// One every `period`, and at most `count` in any `span`: bursts go at
    /// the short spacing until the longer limit is reached.
    pub fn every_within(period: StdDuration, count: usize, span: StdDuration) -> Pacer {
        Pacer {
            window: Some((count.max(1), span)),
            ..Pacer::every(period)
        }
    }

    /// Returns at this caller's slot.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let mut slot = (*next).max(tokio::time::Instant::now());
            if let Some((count, span)) = self.window {
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                if recent.len() >= count {
                    // The slot `count` places back must have left the span.
                    slot = slot.max(recent[recent.len() - count] + span);
                }
                recent.push_back(slot);
                while recent.len() > count {
                    recent.pop_front();
                }
            }
            *next = slot + self.period;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// At most `count` departures in any `span`, counted when they leave: a
/// caller waits for room here, then for a second pace (a bot's, shared by
/// its channels), and only then is counted. A `Pacer` window counts the
/// slot it gives out, so a caller held up after its slot would let a later
/// one, on time, into the server's window: the 429 this avoids.
pub struct Bucket {
    count: usize,
    span: StdDuration,
    sent: tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl Bucket {
    pub fn new(count: usize, span: StdDuration) -> Bucket {
        Bucket {
            count: count.max(1),
            span,
            sent: tokio::sync::Mutex::default(),
        }
    }

    /// Returns when there is room here and `then` has let this caller go.
    pub async fn wait_then(&self, then: &Pacer) {
        // Held until counted: two callers never take the same room.
        let mut sent = self.sent.lock().await;
        if sent.len() >= self.count {
            tokio::time::sleep_until(sent[sent.len() - self.count] + self.span).await;
        }
        then.wait().await;
        sent.push_back(tokio::time::Instant::now());
        while sent.len() > self.count {
            sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn per_second(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Departures of `callers` concurrent calls through one pacer, as offsets
    /// from the start, on tokio's paused clock.
    async fn departures(limit: u32, callers: usize) -> Vec<StdDuration> {
        let pacer = Arc::new(Pacer::new(per_second(limit)));
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let pacer = pacer.clone();
            tasks.spawn(async move {
                pacer.wait().await;
                tokio::time::Instant::now() - start
            });
        }
        let mut out = tasks.join_all().await;
        out.sort();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_stays_under_the_limit_in_every_second() {
        for limit in [1, 10, 20, 40, 200] {
            let times = departures(limit, 5 * limit as usize).await;
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..]
                    .iter()
                    .take_while(|u| **u - *t < StdDuration::from_secs(1))
                    .count();
                assert!(
                    in_window <= limit as usize,
                    "{limit}/s: {in_window} in one second"
                );
            }
            // ... and close to it: 97 % of the limit, sustained.
            let span = (*times.last().unwrap() - times[0]).as_secs_f64();
            let rate = (times.len() - 1) as f64 / span;
            assert!(
                rate > 0.96 * f64::from(limit),
                "{limit}/s paced at {rate:.2}/s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_windowed_pacer_keeps_both_limits() {
        // Telegram in a group: one a second, twenty a minute.
        let pacer = Arc::new(Pacer::every_within(
            StdDuration::from_secs(1),
            20,
            StdDuration::from_secs(60),
        ));
        let start = tokio::time::Instant::now();
        let mut times = Vec::new();
        for _ in 0..45 {
            pacer.wait().await;
            times.push(tokio::time::Instant::now() - start);
        }
        assert_eq!(times[19], StdDuration::from_secs(19), "a burst at 1/s");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= StdDuration::from_secs(1));
        }
        for (i, t) in times.iter().enumerate() {
            let in_minute = times[i..]
                .iter()
                .take_while(|u| **u - *t < StdDuration::from_secs(60))
                .count();
            assert!(in_minute <= 20, "{in_minute} within a minute from {t:?}");
        }
        assert_eq!(times[20], StdDuration::from_secs(60));
        assert_eq!(times[40], StdDuration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_counts_departures_held_up_by_the_shared_pace() {
        // Discord: 5 in 5 s per channel, under a bot-wide pace whose first
        // five slots other calls have taken: the channel's first message
        // leaves at 2 s, and its sixth may not leave before 7 s.
        let global = Arc::new(Pacer::every(StdDuration::from_millis(400)));
        let start = tokio::time::Instant::now();
        let mut others = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let global = global.clone();
            others.spawn(async move { global.wait().await });
        }
        tokio::task::yield_now().await;
        let bucket = Bucket::new(5, StdDuration::from_secs(5));
        let mut times = Vec::new();
        for _ in 0..12 {
            bucket.wait_then(&global).await;
            times.push(tokio::time::Instant::now() - start);
        }
        others.join_all().await;
        assert_eq!(times[0], StdDuration::from_millis(2_000));
        for i in 5..times.len() {
            assert!(
                times[i] - times[i - 5] >= StdDuration::from_secs(5),
                "six in 5 s: {times:?}"
            );
        }
        assert_eq!(times[5], StdDuration::from_secs(7), "and no later");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= StdDuration::from_millis(400));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pacer_lets_the_next_call_go_at_once() {
        let pacer = Pacer::new(per_second(2));
        pacer.wait().await;
        tokio::time::advance(StdDuration::from_secs(5)).await;
        let before = tokio::time::Instant::now();
        pacer.wait().await;
        assert_eq!(tokio::time::Instant::now(), before);
    }
}
