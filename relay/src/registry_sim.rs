//! The attacker's registry loops against the relay's own pieces — the registry's rules,
//! admission of new keys, the per-account request count and the log on disk — on a fake
//! clock. The attacker has every network it wants, so the per-connection and per-network
//! request limits never bind; what is left to hold it is what these tests check: the keys the
//! registry holds and the bytes of its log stay bounded, and an honest newcomer still gets in.
//! Signatures are not made or checked (a verified entry is the input here).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::limits::{
    RELAY_ADMISSION_IPV6_PREFIX_LEN, RELAY_ADMISSION_PREFIXES, RELAY_MAX_DEVICES_PER_ACCOUNT,
    RELAY_MAX_MACHINES_PER_ACCOUNT, RELAY_MAX_REGISTRY_KEYS, RELAY_MAX_REGISTRY_PAIRS,
    RELAY_MAX_REVOKED_PER_ACCOUNT, RELAY_NEW_KEY_REGISTRATIONS_PER_PREFIX_PER_HOUR,
    RELAY_NEW_KEYS_BURST, RELAY_NEW_KEYS_PER_HOUR, RELAY_REGISTRY_COMPACT_FLOOR,
    RELAY_REGISTRY_RATE_ACCOUNTS, RELAY_REGISTRY_REQUESTS_PER_ACCOUNT_PER_HOUR,
};
use muxagent_proto::Bytes64;
use muxagent_proto::frame::{Hostname, PairingId, RegistryEntry, SignedEntry};
use muxagent_proto::identity::{Fingerprint, PublicIdentity, Signature};

use crate::admission::{Admission, AdmissionLimits};
use crate::bucket::Windows;
use crate::log::{Record, RegistryLog};
use crate::registry::{Caps, Registry, Rules};

const HOUR: Duration = Duration::from_secs(3600);

/// The relay's registry path, sans IO but for the log: count, check, admit, append, apply,
/// give back, compact.
struct Relay {
    registry: Registry,
    caps: Caps,
    admission: Admission,
    accounts: Windows<Fingerprint>,
    log: RegistryLog,
    dir: tempfile::TempDir,
    compactions: usize,
    appended: usize,
}

impl Relay {
    fn new(floor: usize, now: Instant) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, _) = RegistryLog::open(dir.path(), floor).expect("log opens");
        Relay {
            registry: Registry::default(),
            caps: Caps {
                machines_per_account: RELAY_MAX_MACHINES_PER_ACCOUNT,
                devices_per_account: RELAY_MAX_DEVICES_PER_ACCOUNT,
                revoked_per_account: RELAY_MAX_REVOKED_PER_ACCOUNT,
                keys: RELAY_MAX_REGISTRY_KEYS,
                pairs: RELAY_MAX_REGISTRY_PAIRS,
            },
            admission: Admission::new(
                AdmissionLimits {
                    keys_per_hour: RELAY_NEW_KEYS_PER_HOUR,
                    burst: RELAY_NEW_KEYS_BURST,
                    registrations_per_prefix_per_hour:
                        RELAY_NEW_KEY_REGISTRATIONS_PER_PREFIX_PER_HOUR as u32,
                    prefixes: RELAY_ADMISSION_PREFIXES,
                    ipv6_prefix_len: RELAY_ADMISSION_IPV6_PREFIX_LEN,
                },
                now,
            ),
            accounts: Windows::new(RELAY_REGISTRY_RATE_ACCOUNTS, now),
            log,
            dir,
            compactions: 0,
            appended: 0,
        }
    }

    fn submit(
        &mut self,
        network: IpAddr,
        entry: &RegistryEntry,
        now: Instant,
    ) -> Result<(), String> {
        self.registry.check(entry, &self.caps, Rules::Live)?;
        let revocation = matches!(
            entry,
            RegistryEntry::RevokeMachine { .. } | RegistryEntry::RevokeDevice { .. }
        );
        let account = self.registry.rate_account(entry);
        let max = RELAY_REGISTRY_REQUESTS_PER_ACCOUNT_PER_HOUR as u32;
        if !revocation && !self.accounts.allow(account, now, max, HOUR) {
            return Err("account rate".into());
        }
        let new_keys = self.registry.new_keys(entry);
        self.admission.take(network, new_keys, now)?;
        self.log.append_durable(signed(entry))?;
        self.appended += 1;
        let before = self.registry.keys();
        self.registry.apply(entry);
        let gone = before.saturating_sub(self.registry.keys());
        self.admission.give_back(gone, now);
        if self.log.wants_compaction(self.registry.keys()) {
            self.log.compact(self.registry.snapshot())?;
            self.compactions += 1;
        }
        Ok(())
    }

    /// The registry a restart would fold from the log.
    fn reopened(self) -> (Registry, u64) {
        let Relay { log, dir, caps, .. } = self;
        let bytes = log.disk_len();
        drop(log);
        let (_log, records) = RegistryLog::open(dir.path(), usize::MAX).expect("log reopens");
        let mut registry = Registry::default();
        for record in records {
            match record {
                Record::Account(account) => registry.restore(&account).expect("restores"),
                Record::Entry(signed) => {
                    let entry: RegistryEntry =
                        postcard::from_bytes(&signed.entry).expect("decodes");
                    registry
                        .check(&entry, &caps, Rules::Replay)
                        .expect("replays");
                    registry.apply(&entry);
                }
            }
        }
        (registry, bytes)
    }
}

/// A key made from a number: no key generation, the registry only sees public keys.
fn key(n: u64) -> PublicIdentity {
    let mut signing = [0u8; 32];
    signing[..8].copy_from_slice(&n.to_le_bytes());
    PublicIdentity {
        signing,
        noise: [7; 32],
    }
}

fn signed(entry: &RegistryEntry) -> SignedEntry {
    SignedEntry {
        entry: postcard::to_allocvec(entry).expect("encodes"),
        signature: Signature(Bytes64([0; 64])),
    }
}

fn register(device: u64, machine: u64) -> RegistryEntry {
    RegistryEntry::RegisterMachine {
        device: key(device),
        machine: key(machine),
        hostname: Hostname::try_from("flood").unwrap_or_default(),
        pairing_id: PairingId([1; 16]),
        machine_consent: Signature(Bytes64([0; 64])),
        at: 0,
    }
}

fn revoke(device: u64, machine: u64) -> RegistryEntry {
    RegistryEntry::RevokeMachine {
        device: key(device),
        machine: key(machine).fingerprint(),
        at: 0,
    }
}

fn unpair(machine: u64) -> RegistryEntry {
    RegistryEntry::UnpairMachine {
        machine: key(machine),
        at: 0,
    }
}

fn revoke_self(device: u64) -> RegistryEntry {
    RegistryEntry::RevokeDevice {
        author: key(device),
        device: key(device).fingerprint(),
        at: 0,
    }
}

/// A fresh network for every attempt.
fn network(n: u64) -> IpAddr {
    IpAddr::from(((n as u32) | 0x0a00_0000).to_be_bytes())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loop {
    /// One device and one machine: register, unpair, again.
    Unpair,
    /// Register → unpair with two keys per account, moving to a new account whenever one is
    /// held back by its request count.
    UnpairManyAccounts,
    /// A fresh device and machine each round: register, revoke the machine.
    Revoke,
    /// A fresh device and machine each round: register, revoke the machine, revoke the device.
    RevokeLeave,
}

#[derive(Debug)]
struct Outcome {
    attempts: u64,
    appended: usize,
    compactions: usize,
    keys: usize,
    log_bytes: u64,
    /// Whether a newcomer pairs once the flood is over.
    newcomer_admitted: bool,
}

/// `attempts` rounds of `kind`, one every `step`, each from a fresh network, then a newcomer.
/// Checks a restart folds the same registry.
fn flood(kind: Loop, attempts: u64, step: Duration, floor: usize) -> Outcome {
    let start = Instant::now();
    let mut relay = Relay::new(floor, start);
    let mut account = 0u64;
    let mut now = start;
    for n in 0..attempts {
        now = start + step * n as u32;
        let from = network(n);
        // Keys: devices are 2n, machines 2n + 1 (a fresh pair per round or per account).
        match kind {
            Loop::Unpair => {
                let _ = relay.submit(from, &register(0, 1), now);
                let _ = relay.submit(from, &unpair(1), now);
            }
            Loop::UnpairManyAccounts => {
                let (d, m) = (2 * account, 2 * account + 1);
                let registered = relay.submit(from, &register(d, m), now);
                if registered == Err("account rate".to_string()) {
                    account += 1;
                    continue;
                }
                let _ = relay.submit(from, &unpair(m), now);
            }
            Loop::Revoke | Loop::RevokeLeave => {
                let (d, m) = (2 * n, 2 * n + 1);
                if relay.submit(from, &register(d, m), now).is_err() {
                    continue;
                }
                relay.submit(from, &revoke(d, m), now).expect("revokes");
                if kind == Loop::RevokeLeave {
                    relay.submit(from, &revoke_self(d), now).expect("leaves");
                }
            }
        }
    }
    // A newcomer a minute later, from a network of its own.
    let later = now + Duration::from_secs(60);
    let newcomer = u64::MAX / 2;
    let newcomer_admitted = relay
        .submit(
            IpAddr::from([192, 0, 2, 1]),
            &register(newcomer, newcomer + 1),
            later,
        )
        .is_ok();
    let outcome = Outcome {
        attempts,
        appended: relay.appended,
        compactions: relay.compactions,
        keys: relay.registry.keys(),
        log_bytes: relay.log.disk_len(),
        newcomer_admitted,
    };
    let live = relay.registry.clone();
    let (restored, _) = relay.reopened();
    assert_eq!(
        restored, live,
        "{kind:?}: a restart folds the same registry"
    );
    outcome
}

/// Bytes the log may take for `keys` live keys: account records (~100 bytes a key; 256 is
/// ample for these small accounts) and the entries allowed since the last compaction.
fn log_bound(keys: usize, floor: usize) -> u64 {
    (keys * 256 + (floor + 1) * 400) as u64
}

#[test]
fn floods_of_each_loop_keep_the_registry_and_its_log_bounded() {
    const FLOOR: usize = 64;
    let step = Duration::from_secs(1);
    for kind in [Loop::Unpair, Loop::UnpairManyAccounts, Loop::RevokeLeave] {
        let outcome = flood(kind, 300, step, FLOOR);
        assert!(outcome.newcomer_admitted, "{kind:?}: {outcome:?}");
        assert!(
            outcome.log_bytes <= log_bound(outcome.keys, FLOOR),
            "{kind:?}: {outcome:?}"
        );
        assert!(outcome.keys <= 2 * 300, "{kind:?}: {outcome:?}");
    }
    // Register → unpair: two keys; the account's hourly count stops it at 120 entries.
    let outcome = flood(Loop::Unpair, 300, step, FLOOR);
    assert_eq!(
        outcome.appended,
        RELAY_REGISTRY_REQUESTS_PER_ACCOUNT_PER_HOUR + 1
    );
    // Register → revoke → leave: nothing is left, however long it runs.
    let outcome = flood(Loop::RevokeLeave, 300, step, FLOOR);
    assert_eq!(outcome.keys, 2, "only the newcomer's");
    assert!(outcome.compactions > 0, "{outcome:?}");
}

/// Fresh keys every tenth of a second, each pair kept (a device with its revoked machine):
/// the relay takes its burst and then its hourly rate, no more.
#[test]
fn a_flood_of_fresh_accounts_is_held_to_the_admission_rate() {
    let outcome = flood(
        Loop::Revoke,
        3_000,
        Duration::from_millis(100),
        RELAY_REGISTRY_COMPACT_FLOOR,
    );
    // 300 s: the burst (600 keys) and 300 s of the rate (50 keys), in pairs.
    let most = RELAY_NEW_KEYS_BURST as usize + RELAY_NEW_KEYS_PER_HOUR as usize * 300 / 3600;
    assert!(outcome.keys <= most + 2, "{outcome:?}");
    assert!(outcome.keys >= most - 2, "{outcome:?}");
}

/// An hour of each loop at the attacker's best rate, at the default limits: the numbers for
/// relay/README. Run alone (~1 minute of fsyncs):
/// `cargo test -p muxagent-relay --lib an_hour_of_each_loop -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run alone"]
fn an_hour_of_each_loop() {
    for (kind, step) in [
        (Loop::Unpair, Duration::from_millis(100)),
        (Loop::UnpairManyAccounts, Duration::from_millis(500)),
        (Loop::Revoke, Duration::from_millis(100)),
        (Loop::RevokeLeave, Duration::from_millis(500)),
    ] {
        let attempts = HOUR.as_millis() as u64 / step.as_millis() as u64;
        let outcome = flood(kind, attempts, step, RELAY_REGISTRY_COMPACT_FLOOR);
        println!(
            "{kind:?}, one attempt every {step:?}: {} attempts, {} entries appended, {} \
             compactions, {} keys, log {} bytes, newcomer admitted: {}",
            outcome.attempts,
            outcome.appended,
            outcome.compactions,
            outcome.keys,
            outcome.log_bytes,
            outcome.newcomer_admitted
        );
    }
}

/// Start-up with a million keys, before and after compaction: the time to fold a compacted log
/// of 250 000 accounts (a device paired with two machines, one revoked key: 1 000 000 keys),
/// and what re-verifying the entries that built it would take (measured on 2 000 real
/// registrations, then scaled: 500 000 registrations of two signatures and 250 000
/// revocations of one). Run alone, optimized:
/// `cargo test --release -p muxagent-relay --lib startup_with_a_million_keys -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run alone"]
fn startup_with_a_million_keys() {
    use muxagent_proto::identity::Identity;

    use crate::registry::{AccountRecord, DeviceSnapshot};

    const ACCOUNTS: u64 = 250_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let fingerprint = |n: u64| key(n).fingerprint();
    let accounts: Vec<AccountRecord> = (0..ACCOUNTS)
        .map(|n| AccountRecord {
            name: fingerprint(4 * n),
            machines: vec![
                (
                    fingerprint(4 * n + 1),
                    Hostname::try_from("box").unwrap_or_default(),
                ),
                (
                    fingerprint(4 * n + 2),
                    Hostname::try_from("box").unwrap_or_default(),
                ),
            ],
            devices: vec![DeviceSnapshot {
                key: fingerprint(4 * n),
                owner: true,
                paired: vec![0, 1],
            }],
            revoked: vec![fingerprint(4 * n + 3)],
        })
        .collect();
    {
        let (mut log, _) = RegistryLog::open(dir.path(), 0).expect("opens");
        log.compact(accounts).expect("compacts");
        println!("compacted log of 1 000 000 keys: {} bytes", log.disk_len());
    }
    let caps = Caps {
        machines_per_account: RELAY_MAX_MACHINES_PER_ACCOUNT,
        devices_per_account: RELAY_MAX_DEVICES_PER_ACCOUNT,
        revoked_per_account: RELAY_MAX_REVOKED_PER_ACCOUNT,
        keys: RELAY_MAX_REGISTRY_KEYS,
        pairs: RELAY_MAX_REGISTRY_PAIRS,
    };
    let started = Instant::now();
    let (_log, records) = RegistryLog::open(dir.path(), 0).expect("opens");
    let read = started.elapsed();
    let mut registry = Registry::default();
    for record in &records {
        if let Record::Account(account) = record {
            registry.restore(account).expect("restores");
        }
    }
    let folded = started.elapsed();
    assert_eq!(registry.keys(), 1_000_000);
    println!("after: read {read:?}, read and folded {folded:?}");

    // Before: every entry verified again.
    const SAMPLE: u32 = 2_000;
    let entries: Vec<SignedEntry> = (0..SAMPLE)
        .map(|n| {
            let mut secret = [0u8; 64];
            secret[..4].copy_from_slice(&n.to_le_bytes());
            let device = Identity::from_secret_bytes(&secret);
            secret[4] = 1;
            let machine = Identity::from_secret_bytes(&secret);
            let pairing_id = PairingId([1; 16]);
            let consent =
                RegistryEntry::consent_message(&device.public().fingerprint(), &pairing_id);
            let entry = RegistryEntry::RegisterMachine {
                device: device.public(),
                machine: machine.public(),
                hostname: Hostname::try_from("box").unwrap_or_default(),
                pairing_id,
                machine_consent: machine.sign(
                    muxagent_proto::identity::SignDomain::RegistryEntry,
                    &consent,
                ),
                at: 0,
            };
            SignedEntry::sign(&device, &entry).expect("signs")
        })
        .collect();
    let started = Instant::now();
    let mut registry = Registry::default();
    for signed in &entries {
        let entry = signed.verify().expect("verifies");
        registry
            .check(&entry, &caps, Rules::Replay)
            .expect("checks");
        registry.apply(&entry);
    }
    let per_registration = started.elapsed() / SAMPLE;
    let signature = per_registration / 2;
    let million = per_registration * 500_000 + signature * 250_000;
    println!(
        "before: {per_registration:?} a registration (two signatures); 1 000 000 keys \
         (500 000 registrations, 250 000 revocations) ≈ {million:?}"
    );
}
