//! The inbound byte budget of one key: a token bucket that may go negative; [`Window`], a
//! count of events per period; and [`Windows`], one per source prefix.
//!
//! A connection spends every byte it reads from its socket, WebSocket headers and control
//! frames included ([`crate::meter`]), and the signatures it makes the relay verify; while the
//! balance is negative it reads nothing until the bucket has refilled to zero, so the client's
//! TCP window closes and the client slows down (DERP applies its limiter the same way, before
//! reading a frame). The live connections of one device key (tabs, `ctl watch` beside `ctl
//! approve`) share one [`Budget`], so opening more of them never buys more bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A [`Bucket`] shared by the connections of one key.
pub(crate) struct Budget(Mutex<Bucket>);

impl Budget {
    pub(crate) fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Budget(Mutex::new(Bucket::new(rate_per_sec, burst, now)))
    }

    /// See [`Bucket::spend`].
    pub(crate) fn spend(&self, bytes: usize, now: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spend(bytes, now);
    }

    /// See [`Bucket::wait`].
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wait(now)
    }
}

pub(crate) struct Bucket {
    /// Bytes available; negative when overspent.
    balance: i64,
    rate: i64,
    burst: i64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Bucket {
            balance: i64::from(burst),
            rate: i64::from(rate_per_sec.max(1)),
            burst: i64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let earned = (elapsed.as_nanos().min(u128::from(u64::MAX)) as i128 * i128::from(self.rate)
            / 1_000_000_000) as i64;
        if earned > 0 {
            self.balance = self.balance.saturating_add(earned).min(self.burst);
            // Advance by the time the earned bytes took, so fractions are not lost.
            let used =
                Duration::from_nanos((earned as u128 * 1_000_000_000 / self.rate as u128) as u64);
            self.last += used;
            if self.balance == self.burst {
                self.last = now;
            }
        }
    }

    /// Take `bytes` from the budget (possibly going negative).
    pub(crate) fn spend(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.balance = self
            .balance
            .saturating_sub(bytes.min(i64::MAX as usize) as i64);
    }

    /// How long to wait before reading again; `None` when reading may go on now.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.balance >= 0 {
            return None;
        }
        let missing = (-self.balance) as u128;
        let nanos = missing * 1_000_000_000 / self.rate as u128 + 1;
        Some(Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64))
    }
}

/// At most `max` events per `period`, counted in fixed windows (a burst of up to 2 × `max`
/// can straddle two windows; that is within what the limits allow for).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    pub(crate) fn new(now: Instant) -> Self {
        Window {
            start: now,
            count: 0,
        }
    }

    /// Count one event at `now`; `false` when it is past `max` in the current window.
    pub(crate) fn allow(&mut self, now: Instant, max: u32, period: Duration) -> bool {
        if now.saturating_duration_since(self.start) >= period {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= max
    }
}

/// A [`Window`] per key (a source prefix), for at most `cap` keys. A key seen again within its
/// period keeps its count, however its connections come and go. Past `cap` keys, those whose
/// period has passed are forgotten (at most once a second: the sweep is O(`cap`)), and keys
/// that still find no room share one window.
pub(crate) struct Windows<K> {
    by_key: HashMap<K, Window>,
    shared: Window,
    cap: usize,
    swept_at: Instant,
}

impl<K: Hash + Eq> Windows<K> {
    pub(crate) fn new(cap: usize, now: Instant) -> Self {
        Windows {
            by_key: HashMap::new(),
            shared: Window::new(now),
            cap,
            swept_at: now,
        }
    }

    /// Count one event of `key` at `now`; `false` when it is past `max` in its window.
    pub(crate) fn allow(&mut self, key: K, now: Instant, max: u32, period: Duration) -> bool {
        if !self.by_key.contains_key(&key)
            && self.by_key.len() >= self.cap
            && now.saturating_duration_since(self.swept_at) >= Duration::from_secs(1)
        {
            self.swept_at = now;
            self.by_key
                .retain(|_, window| now.saturating_duration_since(window.start) < period);
        }
        if let Some(window) = self.by_key.get_mut(&key) {
            return window.allow(now, max, period);
        }
        if self.by_key.len() < self.cap {
            let mut window = Window::new(now);
            let allowed = window.allow(now, max, period);
            self.by_key.insert(key, window);
            return allowed;
        }
        self.shared.allow(now, max, period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_per_key_and_share_one_past_their_cap() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut windows = Windows::new(2, start);
        assert!(windows.allow(1, start, 1, minute));
        assert!(!windows.allow(1, start, 1, minute));
        assert!(windows.allow(2, start, 1, minute));
        // Past the cap, new keys share one window ...
        assert!(windows.allow(3, start, 1, minute));
        assert!(!windows.allow(4, start, 1, minute));
        // ... until the old ones' period has passed and they are swept.
        let later = start + minute;
        assert!(windows.allow(4, later, 1, minute));
        assert!(windows.allow(5, later, 1, minute));
        assert!(!windows.allow(4, later, 1, minute));
    }

    #[test]
    fn a_window_counts_per_period() {
        let start = Instant::now();
        let mut window = Window::new(start);
        let second = Duration::from_secs(1);
        assert!((0..3).all(|_| window.allow(start, 3, second)));
        assert!(!window.allow(start + Duration::from_millis(999), 3, second));
        assert!(window.allow(start + second, 3, second));
    }

    #[test]
    fn overspending_waits_for_the_refill() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1000, 2000, start);
        bucket.spend(1500, start);
        assert_eq!(bucket.wait(start), None);
        bucket.spend(1500, start);
        let wait = bucket.wait(start).unwrap_or_default();
        assert!(
            wait > Duration::from_millis(990) && wait < Duration::from_millis(1010),
            "{wait:?}"
        );
        assert_eq!(bucket.wait(start + Duration::from_millis(1001)), None);
    }

    #[test]
    fn never_exceeds_the_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1000, 2000, start);
        bucket.spend(0, start + Duration::from_secs(100));
        bucket.spend(2001, start + Duration::from_secs(100));
        assert!(bucket.wait(start + Duration::from_secs(100)).is_some());
    }
}
