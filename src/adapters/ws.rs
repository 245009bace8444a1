//! What the WebSocket clients (Slack Socket Mode, Discord's gateway) share:
//! how long to wait before reconnecting, noticing a connection gone quiet,
//! and stopping.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Waits between reconnections: 1 s doubling to a minute, reset once a
/// connection works; five minutes for failures a retry will not mend soon
/// (a refused token), so the logs say so without flooding.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

/// 1 s, doubling to a minute.
const RECONNECT: crate::domain::backoff::Backoff = crate::domain::backoff::Backoff {
    first: chrono::Duration::seconds(1),
    cap: chrono::Duration::seconds(60),
};

impl Backoff {
    pub const MAX: Duration = Duration::from_secs(60);
    pub const LASTING: Duration = Duration::from_secs(300);

    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        RECONNECT.after(self.failures).to_std().unwrap_or(Self::MAX)
    }

    pub fn lasting(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::LASTING
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A connection's heartbeat: time to send a ping every `every`; quiet when
/// nothing has been heard for three of them.
#[derive(Debug)]
pub struct Quiet {
    every: Duration,
    last: Instant,
    next: Instant,
}

impl Quiet {
    pub fn new(every: Duration) -> Quiet {
        let now = Instant::now();
        Quiet {
            every,
            last: now,
            next: now + every,
        }
    }

    pub fn heard(&mut self) {
        self.last = Instant::now();
    }

    /// Waits for the next ping time; `Some(seconds)` when the peer has been
    /// silent too long.
    pub async fn check(&mut self) -> Option<u64> {
        tokio::time::sleep_until(self.next).await;
        self.next = Instant::now() + self.every;
        let silent = self.last.elapsed();
        (silent >= self.every * 3).then_some(silent.as_secs())
    }
}

/// Completes when `stop` says so, or when whoever could say so is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.lasting(), Backoff::LASTING);
        b.reset();
        assert_eq!(b.failed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_silent_for_three_intervals_is_quiet() {
        let mut q = Quiet::new(Duration::from_secs(10));
        assert_eq!(q.check().await, None);
        q.heard();
        assert_eq!(q.check().await, None);
        assert_eq!(q.check().await, None);
        // 30 s since the last word.
        assert_eq!(q.check().await, Some(30));
    }
}
