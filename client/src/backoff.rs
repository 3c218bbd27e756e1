//! Reconnect delays: exponential from
//! [`RECONNECT_MIN_MS`] to [`RECONNECT_MAX_MS`], each jittered so a fleet of devices that lost
//! the same relay does not come back in step. The randomness is the caller's.

use muxagent_proto::limits::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};

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
    fn different_randomness_spreads_the_delays() {
        let delays: std::collections::BTreeSet<u64> = (0..50u32)
            .map(|r| delay_ms(4, r.wrapping_mul(2_654_435_761)))
            .collect();
        assert!(delays.len() > 40, "{delays:?}");
    }
}
