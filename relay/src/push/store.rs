//! The devices' push subscriptions: one endpoint per device key, in memory (with each
//! device's push rate) and in a `muxagent-store` log in the data folder, so they outlive a
//! restart.
//!
//! The log holds `(device, Some(endpoint))` for a subscription and `(device, None)` for its
//! removal, each appended and synced before the device is answered. Replaying it gives the
//! table; once it holds more than twice the live table (and at least
//! [`RELAY_PUSH_COMPACT_FLOOR`] records), it is rewritten to the live table (atomically:
//! `Log::rewrite`). So disk use stays within about twice what the subscriptions themselves take.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::limits::RELAY_PUSH_COMPACT_FLOOR;
use muxagent_proto::frame::PushEndpoint;
use muxagent_proto::identity::Fingerprint;
use muxagent_store::limits::LOG_SEGMENT_LEN;
use muxagent_store::{Log, Options};

/// Subfolder of the push folder holding the log.
const LOG_DIR: &str = "subscriptions";

/// One record of the log.
type Record = (Fingerprint, Option<PushEndpoint>);

/// A device's pushes, as a token bucket in thousandths of a push.
#[derive(Clone, Copy, Debug)]
struct Rate {
    milli: u32,
    last: Instant,
}

/// A device's subscription.
#[derive(Debug)]
struct Subscription {
    endpoint: Box<str>,
    rate: Rate,
}

/// What a device may push: a burst, refilled at a rate per minute.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimit {
    pub burst: u32,
    pub per_min: u32,
}

/// The table of subscriptions. Pure state: the log is [`SubscriptionLog`].
#[derive(Debug)]
pub(crate) struct Subscriptions {
    table: HashMap<Fingerprint, Subscription>,
    cap: usize,
    rate: RateLimit,
}

/// Why a push was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// The device has no subscription.
    None,
    /// The device is over its rate.
    RateLimited,
}

impl Subscriptions {
    pub(crate) fn new(cap: usize, rate: RateLimit) -> Self {
        Subscriptions {
            table: HashMap::new(),
            cap,
            rate,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, device: &Fingerprint) -> Option<&str> {
        self.table.get(device).map(|sub| &*sub.endpoint)
    }

    /// Whether `device` may get a subscription now: it has one (to replace), or the table is
    /// below its cap.
    pub(crate) fn has_room_for(&self, device: &Fingerprint) -> bool {
        self.table.contains_key(device) || self.table.len() < self.cap
    }

    /// Set or remove `device`'s subscription (no cap check: see [`Self::has_room_for`]). A
    /// replaced subscription keeps the device's rate state.
    pub(crate) fn apply(&mut self, device: Fingerprint, endpoint: Option<&str>, now: Instant) {
        match endpoint {
            Some(endpoint) => {
                let rate = self.table.get(&device).map_or(
                    Rate {
                        milli: self.rate.burst.saturating_mul(1000),
                        last: now,
                    },
                    |sub| sub.rate,
                );
                self.table.insert(
                    device,
                    Subscription {
                        endpoint: endpoint.into(),
                        rate,
                    },
                );
            }
            None => {
                self.table.remove(&device);
            }
        }
    }

    /// Take one push for `device`: its endpoint, if it has a subscription and is within its
    /// rate.
    pub(crate) fn take(&mut self, device: &Fingerprint, now: Instant) -> Result<Box<str>, Take> {
        let limit = self.rate;
        let sub = self.table.get_mut(device).ok_or(Take::None)?;
        let rate = &mut sub.rate;
        // per_min pushes a minute earn per_min / 60 thousandths of a push a millisecond.
        let elapsed_ms = now.saturating_duration_since(rate.last).as_millis();
        let earned = elapsed_ms.saturating_mul(u128::from(limit.per_min)) / 60;
        if earned > 0 {
            let full = limit.burst.saturating_mul(1000);
            rate.milli = u128::from(rate.milli)
                .saturating_add(earned)
                .min(u128::from(full)) as u32;
            rate.last = now;
        }
        if rate.milli < 1000 {
            return Err(Take::RateLimited);
        }
        rate.milli -= 1000;
        Ok(sub.endpoint.clone())
    }

    /// Every subscription, for a compaction of the log.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.table
            .iter()
            .map(|(device, sub)| (*device, Some(sub.endpoint.to_string())))
            .collect()
    }
}

/// The durable side: the log of subscription changes.
pub(crate) struct SubscriptionLog {
    log: Log<Record>,
    /// Records in the log now.
    records: usize,
}

impl SubscriptionLog {
    /// Open (or create) the log in `push_dir` and replay it: the subscriptions it holds.
    pub(crate) fn open(
        push_dir: &Path,
    ) -> Result<(SubscriptionLog, Vec<(Fingerprint, PushEndpoint)>), String> {
        let dir = push_dir.join(LOG_DIR);
        let options = Options {
            segment_len: LOG_SEGMENT_LEN,
            retention: None,
        };
        let error = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "cannot {what} the push subscriptions {}: {e}",
                dir.display()
            )
        };
        let (mut log, report) = Log::open(&dir, options).map_err(|e| error("open", &e))?;
        if let Some(cut) = &report.truncated {
            crate::warn(format_args!(
                "push subscriptions: cut a torn tail of {} bytes (never acknowledged)",
                cut.dropped_bytes
            ));
        }
        let mut live: HashMap<Fingerprint, PushEndpoint> = HashMap::new();
        let mut records = 0;
        for item in log.iter().map_err(|e| error("read", &e))? {
            let (_, (device, endpoint)) = item.map_err(|e| error("read", &e))?;
            records += 1;
            match endpoint {
                Some(endpoint) => live.insert(device, endpoint),
                None => live.remove(&device),
            };
        }
        Ok((SubscriptionLog { log, records }, live.into_iter().collect()))
    }

    /// Append one change and sync it.
    pub(crate) fn append_durable(
        &mut self,
        device: Fingerprint,
        endpoint: Option<PushEndpoint>,
    ) -> Result<(), String> {
        self.log
            .append(&(device, endpoint))
            .map_err(|e| e.to_string())?;
        self.log.sync().map_err(|e| e.to_string())?;
        self.records += 1;
        Ok(())
    }

    /// Whether the log holds enough dead records to be rewritten for `live` subscriptions.
    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        self.records > RELAY_PUSH_COMPACT_FLOOR.max(2 * live)
    }

    /// Replace the log with `live` (atomic: a crash leaves the old log or the new one).
    pub(crate) fn compact(&mut self, live: &[Record]) -> Result<(), String> {
        self.log.rewrite(live).map_err(|e| e.to_string())?;
        self.records = live.len();
        Ok(())
    }

    /// Records in the log (for tests).
    #[cfg(test)]
    fn records(&self) -> usize {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn device(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    #[test]
    fn the_table_is_capped_and_a_device_replaces_its_own() {
        let now = Instant::now();
        let mut subs = Subscriptions::new(
            2,
            RateLimit {
                burst: 2,
                per_min: 60,
            },
        );
        for n in 0..2 {
            assert!(subs.has_room_for(&device(n)));
            subs.apply(device(n), Some("https://a/1"), now);
        }
        assert!(!subs.has_room_for(&device(2)));
        assert!(subs.has_room_for(&device(1)), "replacing is not adding");
        subs.apply(device(1), Some("https://a/2"), now);
        assert_eq!(subs.get(&device(1)), Some("https://a/2"));
        subs.apply(device(0), None, now);
        assert!(subs.has_room_for(&device(2)));
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn a_device_pushes_within_its_rate() {
        let now = Instant::now();
        let mut subs = Subscriptions::new(
            10,
            RateLimit {
                burst: 2,
                per_min: 60,
            },
        );
        assert_eq!(subs.take(&device(0), now), Err(Take::None));
        subs.apply(device(0), Some("https://a/1"), now);
        assert!(subs.take(&device(0), now).is_ok());
        assert!(subs.take(&device(0), now).is_ok());
        assert_eq!(subs.take(&device(0), now), Err(Take::RateLimited));
        // One a second at 60 a minute.
        let later = now + Duration::from_millis(1_000);
        assert!(subs.take(&device(0), later).is_ok());
        assert_eq!(subs.take(&device(0), later), Err(Take::RateLimited));
        // Replacing the subscription does not refill the bucket.
        subs.apply(device(0), Some("https://a/2"), later);
        assert_eq!(subs.take(&device(0), later), Err(Take::RateLimited));
        // A long pause refills to the burst, no more.
        let much_later = later + Duration::from_secs(3600);
        assert!(subs.take(&device(0), much_later).is_ok());
        assert!(subs.take(&device(0), much_later).is_ok());
        assert_eq!(subs.take(&device(0), much_later), Err(Take::RateLimited));
    }

    /// What the table costs per subscription, measured: 100 000 subscriptions with FCM-sized
    /// (190-byte) endpoints, resident memory before and after. Run alone:
    /// `cargo test -p muxagent-relay --lib memory_per_subscription -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run alone"]
    fn memory_per_subscription() {
        fn rss_kib() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        }
        const COUNT: u32 = 100_000;
        let now = Instant::now();
        let mut subs = Subscriptions::new(
            COUNT as usize,
            RateLimit {
                burst: 20,
                per_min: 30,
            },
        );
        let before = rss_kib();
        for n in 0..COUNT {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            let endpoint = format!("https://fcm.googleapis.com/fcm/send/{n:0>154}");
            assert_eq!(endpoint.len(), 190);
            subs.apply(Fingerprint(key), Some(&endpoint), now);
        }
        let after = rss_kib();
        println!(
            "{COUNT} subscriptions of 190-byte endpoints: {} KiB, {} bytes each",
            after - before,
            (after - before) * 1024 / u64::from(COUNT)
        );
        assert_eq!(subs.len(), COUNT as usize);
    }

    #[test]
    fn the_log_replays_and_compacts() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (mut log, live) = SubscriptionLog::open(dir.path()).expect("open");
            assert!(live.is_empty());
            for round in 0..1500u32 {
                let endpoint = format!("https://a/{round}");
                log.append_durable(device((round % 3) as u8), Some(endpoint))
                    .expect("append");
            }
            log.append_durable(device(2), None).expect("append");
            assert!(log.wants_compaction(2));
            log.compact(&[
                (device(0), Some("https://a/1497".into())),
                (device(1), Some("https://a/1498".into())),
            ])
            .expect("compact");
            assert_eq!(log.records(), 2);
            log.append_durable(device(0), Some("https://a/new".into()))
                .expect("append");
        }
        let (log, mut live) = SubscriptionLog::open(dir.path()).expect("reopen");
        live.sort();
        assert_eq!(
            live,
            vec![
                (device(0), "https://a/new".to_string()),
                (device(1), "https://a/1498".to_string()),
            ]
        );
        assert_eq!(log.records(), 3);
        assert!(!log.wants_compaction(2));
    }
}
