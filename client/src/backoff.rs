//! Reconnect delays: exponential from
//! [`RECONNECT_MIN_MS`] to [`RECONNECT_MAX_MS`], each jittered so a fleet of devices (or
//! machines) that lost the same relay does not come back in step. The randomness is the
//! caller's (a CSPRNG's `u32`), so this stays pure and the wasm core can use it too.
//!
//! [`Backoff`] counts failures for a loop that reconnects (the daemon's relay link, `ctl
//! watch`); [`delay_ms`] is the same delay for callers that keep the count themselves (the
//! controller, per machine).

use muxagent_proto::limits::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};

/// The failures of one reconnecting loop since it last succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One more failure: how long to wait before the next attempt ([`delay_ms`]), given a
    /// random `u32`.
    pub fn failed(&mut self, random: u32) -> u64 {
        self.failures = self.failures.saturating_add(1);
        delay_ms(self.failures, random)
    }

    /// It worked: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The delay before reconnect attempt number `failures` (1 after the first failure): the base
/// doubles per failure up to [`RECONNECT_MAX_MS`], and the delay is uniform in
/// `[base / 2, base × 3 / 2]` (±50 %), never above [`RECONNECT_MAX_MS`].
pub fn delay_ms(failures: u32, random: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    let base = RECONNECT_MIN_MS
        .saturating_mul(1 << doublings)
        .min(RECONNECT_MAX_MS);
    (base / 2 + u64::from(random) % (base + 1)).min(RECONNECT_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_minimum_to_the_maximum_with_jitter() {
        assert_eq!(delay_ms(1, 0), RECONNECT_MIN_MS / 2);
        assert_eq!(
            delay_ms(1, RECONNECT_MIN_MS as u32),
            RECONNECT_MIN_MS * 3 / 2
        );
        assert_eq!(delay_ms(2, 0), RECONNECT_MIN_MS);
        assert_eq!(delay_ms(3, 0), RECONNECT_MIN_MS * 2);
        for failures in [0, 1, 2, 5, 10, 40, u32::MAX] {
            for random in [0, 1, 1_000, 77_777, u32::MAX] {
                let delay = delay_ms(failures, random);
                assert!(delay >= RECONNECT_MIN_MS / 2, "{failures} {random}");
                assert!(delay <= RECONNECT_MAX_MS, "{failures} {random}");
            }
        }
        assert_eq!(delay_ms(40, 0), RECONNECT_MAX_MS / 2);
        assert_eq!(
            delay_ms(40, u32::MAX),
            RECONNECT_MAX_MS
                .min(RECONNECT_MAX_MS / 2 + u64::from(u32::MAX) % (RECONNECT_MAX_MS + 1))
        );
    }

    #[test]
    fn a_backoff_grows_with_failures_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.failed(0), RECONNECT_MIN_MS / 2);
        assert_eq!(backoff.failed(0), RECONNECT_MIN_MS);
        assert_eq!(backoff.failed(0), RECONNECT_MIN_MS * 2);
        assert_eq!(backoff.failures(), 3);
        backoff.reset();
        assert_eq!(backoff.failed(0), RECONNECT_MIN_MS / 2);
        for _ in 0..100 {
            assert!(backoff.failed(u32::MAX) <= RECONNECT_MAX_MS);
        }
    }

    #[test]
    fn different_randomness_spreads_the_delays() {
        let delays: std::collections::BTreeSet<u64> = (0..50u32)
            .map(|r| delay_ms(4, r.wrapping_mul(2_654_435_761)))
            .collect();
        assert!(delays.len() > 40, "{delays:?}");
    }
}
