//! Admission of new keys to the registry: how fast the relay lets keys in at all. Keys are
//! free to make, so the registry's caps would fill at whatever rate its write limits allow;
//! this holds the net growth of the whole relay to one bucket of keys per hour (keys that
//! leave give theirs back), and counts the registrations that add keys per source network, so
//! that one network takes no more than its share. The numbers and the arithmetic of how long
//! the cap takes to fill are in `crate::limits` (`RELAY_NEW_KEYS_PER_HOUR`). Pure: the
//! caller passes the time.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::bucket::Windows;

const HOUR: Duration = Duration::from_secs(3600);

/// The rates [`Admission`] enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdmissionLimits {
    pub keys_per_hour: u32,
    pub burst: u32,
    pub registrations_per_prefix_per_hour: u32,
    /// Networks counted at once.
    pub prefixes: usize,
    /// IPv6 addresses are counted per prefix of this length.
    pub ipv6_prefix_len: u8,
}

/// Why a registration that adds keys is refused now, for people.
pub(crate) const NETWORK_FULL: &str = "too many new devices and machines were paired from this \
     network in the last hour; try again in an hour";
pub(crate) const RELAY_BUSY: &str = "the relay is taking new devices and machines slowly right \
     now; try again in a few minutes (devices and machines paired already are not affected)";

pub(crate) struct Admission {
    limits: AdmissionLimits,
    /// Keys the relay may add now, in thousandths of a key.
    milli: u64,
    last: Instant,
    by_network: Windows<IpAddr>,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits, now: Instant) -> Self {
        Admission {
            limits,
            milli: u64::from(limits.burst) * 1000,
            last: now,
            by_network: Windows::new(limits.prefixes, now),
        }
    }

    fn refill(&mut self, now: Instant) {
        // keys_per_hour keys an hour earn keys_per_hour / 3 600 thousandths a millisecond.
        let elapsed_ms = now.saturating_duration_since(self.last).as_millis();
        let earned = elapsed_ms.saturating_mul(u128::from(self.limits.keys_per_hour)) / 3600;
        if earned > 0 {
            let full = u128::from(self.limits.burst) * 1000;
            self.milli = (u128::from(self.milli) + earned).min(full) as u64;
            self.last = now;
        }
    }

    /// Take `keys` (the keys a registration from `prefix` adds) or say why not. A registration
    /// that adds none always passes and counts for nothing.
    pub(crate) fn take(
        &mut self,
        prefix: IpAddr,
        keys: usize,
        now: Instant,
    ) -> Result<(), &'static str> {
        if keys == 0 {
            return Ok(());
        }
        let network = network(prefix, self.limits.ipv6_prefix_len);
        let max = self.limits.registrations_per_prefix_per_hour;
        if !self.by_network.allow(network, now, max, HOUR) {
            return Err(NETWORK_FULL);
        }
        self.refill(now);
        let need = keys as u64 * 1000;
        if self.milli < need {
            return Err(RELAY_BUSY);
        }
        self.milli -= need;
        Ok(())
    }

    /// `keys` left the registry (or a taken registration was not stored): they go back into
    /// the bucket, up to its burst.
    pub(crate) fn give_back(&mut self, keys: usize, now: Instant) {
        self.refill(now);
        let full = u64::from(self.limits.burst) * 1000;
        self.milli = self.milli.saturating_add(keys as u64 * 1000).min(full);
    }
}

/// The network `prefix` counts in: IPv4 as it comes (already a /24), IPv6 cut to `len` bits.
fn network(prefix: IpAddr, len: u8) -> IpAddr {
    match prefix {
        IpAddr::V4(_) => prefix,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: AdmissionLimits = AdmissionLimits {
        keys_per_hour: 600,
        burst: 600,
        registrations_per_prefix_per_hour: 20,
        prefixes: 1024,
        ipv6_prefix_len: 48,
    };

    fn v4(n: u8) -> IpAddr {
        IpAddr::from([10, 0, n, 0])
    }

    #[test]
    fn a_network_takes_its_share_and_ipv6_counts_per_48() {
        let now = Instant::now();
        let mut admission = Admission::new(LIMITS, now);
        for _ in 0..20 {
            admission.take(v4(1), 2, now).unwrap();
        }
        assert_eq!(admission.take(v4(1), 2, now), Err(NETWORK_FULL));
        // Two /64s of one /48 are one network.
        let a: IpAddr = "2001:db8:1:1::".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::".parse().unwrap();
        for _ in 0..10 {
            admission.take(a, 1, now).unwrap();
            admission.take(b, 1, now).unwrap();
        }
        assert_eq!(admission.take(b, 1, now), Err(NETWORK_FULL));
        // A registration adding nothing is never counted.
        assert_eq!(admission.take(v4(1), 0, now), Ok(()));
        // An hour later the network's count starts over.
        assert!(admission.take(v4(1), 2, now + HOUR).is_ok());
    }

    /// The attacker's best: every network it needs, every token the bucket earns. Net growth
    /// stays within the burst plus the hourly rate, and keys given back make room again.
    #[test]
    fn the_relay_adds_no_more_than_its_rate_from_any_number_of_networks() {
        let start = Instant::now();
        let limits = AdmissionLimits {
            prefixes: 100_000,
            ..LIMITS
        };
        let mut admission = Admission::new(limits, start);
        let mut added = 0u64;
        let mut network = 0u32;
        // Ten simulated hours, one attempt a second from a fresh network each time.
        for second in 0..36_000u64 {
            let now = start + Duration::from_secs(second);
            network += 1;
            let prefix = IpAddr::from(network.to_be_bytes());
            if admission.take(prefix, 2, now).is_ok() {
                added += 2;
            }
        }
        assert!(added <= 600 + 10 * 600, "{added} keys in ten hours");
        assert!(added >= 10 * 600 - 2, "{added} keys in ten hours");
        let now = start + Duration::from_secs(36_000);
        let mut spare = 0;
        while admission.take(v4(200 + spare), 2, now).is_ok() {
            spare += 1;
        }
        assert!(spare <= 1, "the bucket held {spare} spare registrations");
        assert_eq!(admission.take(v4(250), 2, now), Err(RELAY_BUSY));
        admission.give_back(2, now);
        assert_eq!(admission.take(v4(250), 2, now), Ok(()));
    }
}
