//! How long purser waits before trying again, whatever it tries: a send to
//! an output or a person, a chat connection, a call to a cloud, a
//! WebSocket reconnection. One rule: the first wait, doubling after each
//! further failure, up to a cap; optionally with "equal jitter" (half of
//! the wait fixed, half spread by a seed) so that many retries begun
//! together do not come back together.

use chrono::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

/// A notice or a page that failed: 5 s, 10 s, 20 s … up to 10 minutes;
/// also a chat connection that ended.
pub const SENDING: Backoff = Backoff {
    first: Duration::seconds(5),
    cap: Duration::minutes(10),
};

impl Backoff {
    /// The wait after `failures` failures in a row (1: the first).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first
            .checked_mul(1i32 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The same wait with equal jitter: half of it fixed, the other half
    /// spread by `seed` (in milliseconds).
    pub fn jittered(&self, failures: u32, seed: u64) -> Duration {
        let half = self.after(failures) / 2;
        let spread = half.num_milliseconds().max(0).unsigned_abs();
        let extra = if spread == 0 { 0 } else { seed % (spread + 1) };
        half + Duration::milliseconds(i64::try_from(extra).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_first_up_to_the_cap() {
        let s = |n| Duration::seconds(n);
        assert_eq!(SENDING.after(0), s(5), "before any failure: the first wait");
        assert_eq!(SENDING.after(1), s(5));
        assert_eq!(SENDING.after(2), s(10));
        assert_eq!(SENDING.after(4), s(40));
        assert_eq!(SENDING.after(8), s(600));
        assert_eq!(SENDING.after(u32::MAX), s(600), "no overflow");
    }

    #[test]
    fn jitter_keeps_half_and_spreads_the_rest() {
        let b = Backoff {
            first: Duration::seconds(1),
            cap: Duration::seconds(60),
        };
        assert_eq!(b.jittered(3, 0), Duration::seconds(2));
        assert_eq!(b.jittered(3, 2_000), Duration::seconds(4));
        assert_eq!(b.jittered(3, 2_001), Duration::seconds(2));
        for seed in [1, 999, 123_456_789, u64::MAX] {
            let w = b.jittered(20, seed);
            assert!(
                w >= Duration::seconds(30) && w <= Duration::seconds(60),
                "{w}"
            );
        }
    }
}
