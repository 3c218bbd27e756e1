//! Latency samples and their percentiles.

use std::fmt;
use std::time::Duration;

/// Round-trip latencies of one scenario, in nanoseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn push(&mut self, latency: Duration) {
        self.0
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// p50, p90, p99, p99.9 and max.
    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let at = |p: f64| -> Duration {
            if self.0.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((self.0.len() as f64) * p).ceil() as usize;
            Duration::from_nanos(self.0[rank.clamp(1, self.0.len()) - 1])
        };
        Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

#[derive(Clone, Copy, Default)]
pub struct Summary {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

/// A duration as milliseconds with sensible precision.
pub struct Ms(pub Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 10.0 {
            write!(f, "{ms:.2}")
        } else if ms < 100.0 {
            write!(f, "{ms:.1}")
        } else {
            write!(f, "{ms:.0}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::default();
        for ms in 1..=1000 {
            latencies.push(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.p50, Duration::from_millis(500));
        assert_eq!(summary.p99, Duration::from_millis(990));
        assert_eq!(summary.p999, Duration::from_millis(999));
        assert_eq!(summary.max, Duration::from_millis(1000));
        assert_eq!(Latencies::default().summary().max, Duration::ZERO);
    }
}
