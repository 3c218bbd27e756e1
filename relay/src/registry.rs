//! The registry: accounts, their devices and machines, who paired with what, who is an owner,
//! and revoked keys, folded from verified [`RegistryEntry`]s. Pure state and rules; no IO (the
//! log is [`crate::log`]), no pairing ids (the router checks those before an entry is accepted,
//! since they live only in memory).
//!
//! # Account model
//!
//! - An account is named by the fingerprint of the device that created it: the first device to
//!   register a machine. That device is the account's first **owner**. A device with no
//!   machines has no account (its account is "itself", empty), and can reach nobody.
//! - `RegisterMachine` (signed by the device, with the machine's consent signature) adds the
//!   machine to the device's account and **pairs** the device with it. If the machine is
//!   already in an account, the device *joins* that account instead, paired with that machine
//!   only: the machine's consent, given through a fresh pairing, is the proof that whoever
//!   runs the machine let this device reach it — and nothing more. A device already in another
//!   account is refused.
//! - A device **reaches** (sends to, sees the presence of) the machines it paired with; an
//!   owner reaches every machine of its account. A machine is told of the devices that reach it.
//! - `GrantOwner` (signed by an owner) makes another device of the account an owner.
//! - `RevokeMachine` (signed by an owner of the machine's account or a device paired with the
//!   machine) removes the machine and bars its key for good: it can neither log in nor pair
//!   again.
//! - `RevokeDevice` (signed by an owner of the device's account, or by the device itself)
//!   removes the device and its pairs and bars its key for good.
//! - `UnpairMachine` (signed by the machine) removes its own record and its pairs; it may pair
//!   again later.
//! - A key is a device or a machine, never both.
//!
//! Owners are peers: any owner may revoke any other. An account whose owners are all revoked
//! keeps its machines and paired devices, but nobody can make a new owner.
//!
//! # Replaying the log
//!
//! Every stored entry is checked again when the relay starts ([`Rules::Replay`]). Before
//! owners existed, any device of an account could revoke any of its machines, and logs hold
//! such entries; replay keeps that wider rule for `RevokeMachine`. Every entry the live rules
//! accept the wider one accepts too, so a log replays to the state its relay had, whether it
//! was written before or after owners.
//!
//! Every map is bounded: machines and devices per account, keys and pairs in total.

use std::collections::{HashMap, HashSet};

use muxagent_proto::frame::{Hostname, RegistryEntry};
use muxagent_proto::identity::Fingerprint;

/// The bounds the fold enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub machines_per_account: usize,
    pub devices_per_account: usize,
    pub keys: usize,
    pub pairs: usize,
}

/// Which rules an entry is checked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rules {
    /// A client's request now.
    Live,
    /// An entry of the relay's own log, at start (see the module docs).
    Replay,
}

/// A registered machine.
#[derive(Clone, Debug)]
pub(crate) struct MachineRecord {
    pub account: Fingerprint,
    pub hostname: Hostname,
}

/// A device of an account.
#[derive(Clone, Debug)]
pub(crate) struct DeviceRecord {
    pub account: Fingerprint,
    pub owner: bool,
    /// The machines it registered and that are still registered, oldest first.
    pub paired: Vec<Fingerprint>,
}

#[derive(Clone, Default, Debug)]
pub(crate) struct Account {
    pub devices: Vec<Fingerprint>,
    pub machines: Vec<Fingerprint>,
}

/// Accounts, machines, devices and revoked keys.
#[derive(Clone, Default, Debug)]
pub(crate) struct Registry {
    machines: HashMap<Fingerprint, MachineRecord>,
    /// Devices with an account; devices without one are absent.
    devices: HashMap<Fingerprint, DeviceRecord>,
    accounts: HashMap<Fingerprint, Account>,
    revoked: HashSet<Fingerprint>,
    /// Pairs over every device record.
    pairs: usize,
}

impl Registry {
    pub(crate) fn machine(&self, machine: &Fingerprint) -> Option<&MachineRecord> {
        self.machines.get(machine)
    }

    pub(crate) fn device(&self, device: &Fingerprint) -> Option<&DeviceRecord> {
        self.devices.get(device)
    }

    pub(crate) fn device_account(&self, device: &Fingerprint) -> Option<Fingerprint> {
        self.devices.get(device).map(|record| record.account)
    }

    pub(crate) fn account(&self, account: &Fingerprint) -> Option<&Account> {
        self.accounts.get(account)
    }

    pub(crate) fn is_revoked(&self, key: &Fingerprint) -> bool {
        self.revoked.contains(key)
    }

    pub(crate) fn is_device(&self, key: &Fingerprint) -> bool {
        self.devices.contains_key(key)
    }

    /// Whether `device` may reach `machine`: both in one account, and the device an owner or
    /// paired with the machine.
    pub(crate) fn may_reach(&self, device: &Fingerprint, machine: &Fingerprint) -> bool {
        let (Some(record), Some(target)) = (self.devices.get(device), self.machines.get(machine))
        else {
            return false;
        };
        record.account == target.account && (record.owner || record.paired.contains(machine))
    }

    /// The machines `device` may reach.
    pub(crate) fn reachable(&self, device: &Fingerprint) -> &[Fingerprint] {
        match self.devices.get(device) {
            Some(record) if record.owner => self
                .accounts
                .get(&record.account)
                .map_or(&[], |account| account.machines.as_slice()),
            Some(record) => &record.paired,
            None => &[],
        }
    }

    /// The devices that may reach `machine`, in the account's order.
    pub(crate) fn allowed(&self, machine: &Fingerprint) -> Vec<Fingerprint> {
        let Some(record) = self.machines.get(machine) else {
            return Vec::new();
        };
        self.accounts
            .get(&record.account)
            .map(|account| {
                account
                    .devices
                    .iter()
                    .filter(|device| self.may_reach(device, machine))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (self.accounts.len(), self.machines.len(), self.revoked.len())
    }

    fn keys(&self) -> usize {
        self.machines.len() + self.devices.len() + self.revoked.len()
    }

    /// Whether `entry` may be applied now, by the registry's rules alone. The reason is for
    /// people.
    pub(crate) fn check(
        &self,
        entry: &RegistryEntry,
        caps: &Caps,
        rules: Rules,
    ) -> Result<(), &'static str> {
        match entry {
            RegistryEntry::RegisterMachine {
                device,
                machine,
                hostname,
                ..
            } => {
                // A new name must be one people can read; the log may hold older ones.
                if rules == Rules::Live {
                    muxagent_proto::frame::validate_hostname(hostname)?;
                }
                self.check_register(&device.fingerprint(), &machine.fingerprint(), caps)
            }
            RegistryEntry::RevokeMachine {
                device, machine, ..
            } => {
                let device = device.fingerprint();
                let Some(record) = self.machines.get(machine) else {
                    return Err("no such machine is registered");
                };
                if self.device_account(&device) != Some(record.account) {
                    return Err("the machine is not in this device's account");
                }
                if rules == Rules::Live && !self.may_reach(&device, machine) {
                    return Err(
                        "only an owner of the account or a device paired with the machine may revoke it",
                    );
                }
                Ok(())
            }
            RegistryEntry::UnpairMachine { machine, .. } => {
                if !self.machines.contains_key(&machine.fingerprint()) {
                    return Err("this machine is not registered");
                }
                Ok(())
            }
            RegistryEntry::GrantOwner { owner, device, .. } => {
                let author = self.devices.get(&owner.fingerprint());
                let Some(author) = author.filter(|author| author.owner) else {
                    return Err("only an owner of the account may make a device an owner");
                };
                let Some(target) = self.devices.get(device) else {
                    return Err("that device is not in an account");
                };
                if target.account != author.account {
                    return Err("that device is not in this account");
                }
                if target.owner {
                    return Err("that device is an owner already");
                }
                Ok(())
            }
            RegistryEntry::RevokeDevice { author, device, .. } => {
                let Some(target) = self.devices.get(device) else {
                    return Err(if self.revoked.contains(device) {
                        "that device is revoked already"
                    } else {
                        "that device is not in an account"
                    });
                };
                let author = author.fingerprint();
                if author == *device {
                    return Ok(());
                }
                match self.devices.get(&author) {
                    Some(record) if record.owner && record.account == target.account => Ok(()),
                    Some(record) if record.account == target.account => Err(
                        "only an owner of the account, or the device itself, may revoke a device",
                    ),
                    _ => Err("that device is not in this account"),
                }
            }
        }
    }

    fn check_register(
        &self,
        device: &Fingerprint,
        machine: &Fingerprint,
        caps: &Caps,
    ) -> Result<(), &'static str> {
        if device == machine {
            return Err("a key cannot register itself");
        }
        if self.revoked.contains(machine) {
            return Err("this machine's key is revoked");
        }
        if self.revoked.contains(device) {
            return Err("this device's key is revoked");
        }
        if self.machines.contains_key(device) {
            return Err("this key is a machine, not a device");
        }
        if self.devices.contains_key(machine) {
            return Err("this machine's key is a device of an account");
        }
        let record = self.devices.get(device);
        let new_pair = record.is_none_or(|record| !record.paired.contains(machine));
        if new_pair && self.pairs >= caps.pairs {
            return Err("the relay's registry is full");
        }
        let device_account = record.map(|record| record.account);
        match self.machines.get(machine) {
            Some(target) => {
                if device_account.is_some_and(|account| account != target.account) {
                    return Err("this device belongs to another account");
                }
                if device_account.is_none() {
                    let members = self.accounts.get(&target.account);
                    if members.is_some_and(|a| a.devices.len() >= caps.devices_per_account) {
                        return Err("the account has its maximum number of devices");
                    }
                    if self.keys() >= caps.keys {
                        return Err("the relay's registry is full");
                    }
                }
            }
            None => {
                let account = device_account.unwrap_or(*device);
                if self
                    .accounts
                    .get(&account)
                    .is_some_and(|a| a.machines.len() >= caps.machines_per_account)
                {
                    return Err("the account has its maximum number of machines");
                }
                if self.keys() + 2 > caps.keys {
                    return Err("the relay's registry is full");
                }
            }
        }
        Ok(())
    }

    /// Apply an entry that passed [`Registry::check`]. Returns the account it changed.
    pub(crate) fn apply(&mut self, entry: &RegistryEntry) -> Option<Fingerprint> {
        match entry {
            RegistryEntry::RegisterMachine {
                device,
                machine,
                hostname,
                ..
            } => {
                let device = device.fingerprint();
                let machine_fp = machine.fingerprint();
                let account = match self.machines.get(&machine_fp) {
                    Some(record) => record.account,
                    None => self.device_account(&device).unwrap_or(device),
                };
                let members = self.accounts.entry(account).or_default();
                if !members.devices.contains(&device) {
                    members.devices.push(device);
                }
                if !members.machines.contains(&machine_fp) {
                    members.machines.push(machine_fp);
                }
                // The device that founds an account owns it; one that joins does not.
                let record = self.devices.entry(device).or_insert_with(|| DeviceRecord {
                    account,
                    owner: account == device,
                    paired: Vec::new(),
                });
                if !record.paired.contains(&machine_fp) {
                    record.paired.push(machine_fp);
                    self.pairs += 1;
                }
                self.machines.insert(
                    machine_fp,
                    MachineRecord {
                        account,
                        hostname: hostname.clone(),
                    },
                );
                Some(account)
            }
            RegistryEntry::RevokeMachine { machine, .. } => {
                let account = self.remove_machine(machine);
                self.revoked.insert(*machine);
                account
            }
            RegistryEntry::UnpairMachine { machine, .. } => {
                self.remove_machine(&machine.fingerprint())
            }
            RegistryEntry::GrantOwner { device, .. } => {
                let record = self.devices.get_mut(device)?;
                record.owner = true;
                Some(record.account)
            }
            RegistryEntry::RevokeDevice { device, .. } => {
                self.revoked.insert(*device);
                let record = self.devices.remove(device)?;
                self.pairs = self.pairs.saturating_sub(record.paired.len());
                if let Some(members) = self.accounts.get_mut(&record.account) {
                    members.devices.retain(|d| d != device);
                    if members.devices.is_empty() && members.machines.is_empty() {
                        self.accounts.remove(&record.account);
                    }
                }
                Some(record.account)
            }
        }
    }

    fn remove_machine(&mut self, machine: &Fingerprint) -> Option<Fingerprint> {
        let record = self.machines.remove(machine)?;
        if let Some(members) = self.accounts.get_mut(&record.account) {
            members.machines.retain(|m| m != machine);
            for device in &members.devices {
                if let Some(device) = self.devices.get_mut(device) {
                    let before = device.paired.len();
                    device.paired.retain(|m| m != machine);
                    self.pairs = self.pairs.saturating_sub(before - device.paired.len());
                }
            }
        }
        Some(record.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muxagent_proto::frame::{PairingId, SignedEntry};
    use muxagent_proto::identity::{Identity, SignDomain};

    const CAPS: Caps = Caps {
        machines_per_account: 2,
        devices_per_account: 2,
        keys: 100,
        pairs: 100,
    };

    thread_local! {
        /// Keys made from seeds, kept: making one is slow in a debug build.
        static KEYS: std::cell::RefCell<HashMap<u8, std::rc::Rc<Identity>>> =
            std::cell::RefCell::new(HashMap::new());
    }

    fn id(seed: u8) -> std::rc::Rc<Identity> {
        KEYS.with(|keys| {
            keys.borrow_mut()
                .entry(seed)
                .or_insert_with(|| std::rc::Rc::new(Identity::from_secret_bytes(&[seed; 64])))
                .clone()
        })
    }

    fn fp(seed: u8) -> Fingerprint {
        id(seed).public().fingerprint()
    }

    fn register(device: u8, machine: u8) -> RegistryEntry {
        let pairing_id = PairingId([machine; 16]);
        let consent = RegistryEntry::consent_message(&fp(device), &pairing_id);
        RegistryEntry::RegisterMachine {
            device: id(device).public(),
            machine: id(machine).public(),
            hostname: Hostname::try_from("box").unwrap_or_default(),
            pairing_id,
            machine_consent: id(machine).sign(SignDomain::RegistryEntry, &consent),
            at: 0,
        }
    }

    fn revoke(device: u8, machine: u8) -> RegistryEntry {
        RegistryEntry::RevokeMachine {
            device: id(device).public(),
            machine: fp(machine),
            at: 0,
        }
    }

    fn unpair(machine: u8) -> RegistryEntry {
        RegistryEntry::UnpairMachine {
            machine: id(machine).public(),
            at: 0,
        }
    }

    fn grant(owner: u8, device: u8) -> RegistryEntry {
        RegistryEntry::GrantOwner {
            owner: id(owner).public(),
            device: fp(device),
            at: 0,
        }
    }

    fn revoke_device(author: u8, device: u8) -> RegistryEntry {
        RegistryEntry::RevokeDevice {
            author: id(author).public(),
            device: fp(device),
            at: 0,
        }
    }

    /// What the relay does with a request: sign by `author`, verify, check, apply.
    fn submit(
        registry: &mut Registry,
        caps: &Caps,
        author: u8,
        entry: &RegistryEntry,
    ) -> Result<(), String> {
        let signed = SignedEntry::sign(&id(author), entry).map_err(|e| e.to_string())?;
        let entry = signed.verify().map_err(|e| e.to_string())?;
        registry.check(&entry, caps, Rules::Live)?;
        registry.apply(&entry);
        Ok(())
    }

    /// `entry` signed by the key it names as its author, under the wide caps.
    fn accept(registry: &mut Registry, entry: &RegistryEntry) -> Result<(), String> {
        accept_with(registry, &WIDE, entry)
    }

    fn accept_with(
        registry: &mut Registry,
        caps: &Caps,
        entry: &RegistryEntry,
    ) -> Result<(), String> {
        let author = match entry {
            RegistryEntry::RegisterMachine { device, .. }
            | RegistryEntry::RevokeMachine { device, .. } => *device,
            RegistryEntry::UnpairMachine { machine, .. } => *machine,
            RegistryEntry::GrantOwner { owner, .. } => *owner,
            RegistryEntry::RevokeDevice { author, .. } => *author,
        };
        let seed = KEYS
            .with(|keys| {
                keys.borrow()
                    .iter()
                    .find(|(_, key)| key.public() == author)
                    .map(|(seed, _)| *seed)
            })
            .ok_or("unknown test key")?;
        submit(registry, caps, seed, entry)
    }

    // The matrix's world. Account A: founder FOUNDER (an owner) with machines M1 and M2;
    // OWNER joined through M1 and was made an owner; PAIRED and TARGET joined through M1;
    // OTHER joined through M2 only; REVOKED joined through M2 and was revoked. Account B:
    // FOREIGN with machine NB. NEWCOMER is in no account.
    const FOUNDER: u8 = 1;
    const OWNER: u8 = 2;
    const PAIRED: u8 = 3;
    const OTHER: u8 = 4;
    const TARGET: u8 = 5;
    const REVOKED: u8 = 6;
    const NEWCOMER: u8 = 7;
    const FOREIGN: u8 = 20;
    const M1: u8 = 10;
    const M2: u8 = 11;
    const NB: u8 = 30;

    const WIDE: Caps = Caps {
        machines_per_account: 8,
        devices_per_account: 8,
        keys: 100,
        pairs: 100,
    };

    fn world() -> Registry {
        let mut registry = Registry::default();
        let steps = [
            (FOUNDER, register(FOUNDER, M1)),
            (FOUNDER, register(FOUNDER, M2)),
            (OWNER, register(OWNER, M1)),
            (FOUNDER, grant(FOUNDER, OWNER)),
            (PAIRED, register(PAIRED, M1)),
            (TARGET, register(TARGET, M1)),
            (OTHER, register(OTHER, M2)),
            (REVOKED, register(REVOKED, M2)),
            (FOUNDER, revoke_device(FOUNDER, REVOKED)),
            (FOREIGN, register(FOREIGN, NB)),
        ];
        for (author, entry) in steps {
            let signed = SignedEntry::sign(&id(author), &entry).expect("signs");
            let entry = signed.verify().expect("verifies");
            registry
                .check(&entry, &WIDE, Rules::Live)
                .expect("the world builds");
            registry.apply(&entry);
        }
        registry
    }

    /// Every entry kind × every relation of its author to the target, as the relay rules.
    /// Targets: machine M1 for the machine entries, device TARGET (a device paired with M1,
    /// not an owner) for the device entries. Each cell runs on a fresh world.
    #[test]
    fn authorization_matrix() {
        const Y: bool = true; // accepted
        const N: bool = false; // refused
        #[rustfmt::skip]
        let matrix: &[(&str, u8, [bool; 5])] = &[
            //                                            Register Revoke Unpair Grant   Revoke
            // author                                     M1       M1     M1     TARGET  TARGET
            ("the founder (an owner)",         FOUNDER,  [Y,       Y,     N,     Y,      Y]),
            ("an owner it made",               OWNER,    [Y,       Y,     N,     Y,      Y]),
            ("a device paired with M1",        PAIRED,   [Y,       Y,     N,     N,      N]),
            ("TARGET itself (paired with M1)", TARGET,   [Y,       Y,     N,     N,      Y]),
            ("another device of the account",  OTHER,    [Y,       N,     N,     N,      N]),
            ("a device of another account",    FOREIGN,  [N,       N,     N,     N,      N]),
            ("a revoked device",               REVOKED,  [N,       N,     N,     N,      N]),
            ("a device in no account",         NEWCOMER, [Y,       N,     N,     N,      N]),
            ("the machine M1 itself",          M1,       [N,       N,     Y,     N,      N]),
            ("another machine of the account", M2,       [N,       N,     N,     N,      N]),
        ];
        let base = world();
        let mut failures = Vec::new();
        for (relation, author, expected) in matrix {
            let entries = [
                register(*author, M1),
                revoke(*author, M1),
                unpair(M1),
                grant(*author, TARGET),
                revoke_device(*author, TARGET),
            ];
            let names = [
                "RegisterMachine",
                "RevokeMachine",
                "UnpairMachine",
                "GrantOwner",
                "RevokeDevice",
            ];
            for ((entry, name), want) in entries.iter().zip(names).zip(expected) {
                let mut registry = base.clone();
                let got = submit(&mut registry, &WIDE, *author, entry);
                if got.is_ok() != *want {
                    failures.push(format!(
                        "{name} by {relation}: {got:?}, expected accepted = {want}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn a_founder_owns_and_reaches_all_a_joiner_only_its_machines() {
        let registry = world();
        assert_eq!(registry.device(&fp(FOUNDER)).map(|d| d.owner), Some(true));
        assert_eq!(registry.device(&fp(PAIRED)).map(|d| d.owner), Some(false));
        assert!(registry.may_reach(&fp(FOUNDER), &fp(M2)));
        assert!(
            registry.may_reach(&fp(OWNER), &fp(M2)),
            "a granted owner reaches all"
        );
        assert!(registry.may_reach(&fp(PAIRED), &fp(M1)));
        assert!(!registry.may_reach(&fp(PAIRED), &fp(M2)));
        assert!(!registry.may_reach(&fp(FOREIGN), &fp(M1)));
        assert!(!registry.may_reach(&fp(REVOKED), &fp(M2)));
        assert_eq!(registry.reachable(&fp(OTHER)), &[fp(M2)]);
        assert_eq!(registry.reachable(&fp(FOUNDER)), &[fp(M1), fp(M2)]);
        assert_eq!(
            registry.allowed(&fp(M2)),
            vec![fp(FOUNDER), fp(OWNER), fp(OTHER)]
        );
    }

    #[test]
    fn a_revoked_device_loses_its_pairs_and_its_key_for_good() {
        let mut registry = world();
        assert!(registry.allowed(&fp(M1)).contains(&fp(TARGET)));
        accept(&mut registry, &revoke_device(OWNER, TARGET)).unwrap();
        assert!(registry.is_revoked(&fp(TARGET)));
        assert!(registry.device(&fp(TARGET)).is_none());
        assert!(!registry.allowed(&fp(M1)).contains(&fp(TARGET)));
        assert!(
            accept(&mut registry, &register(TARGET, M1)).is_err(),
            "a revoked device pairs again"
        );
        assert_eq!(
            accept(&mut registry, &revoke_device(OWNER, TARGET)),
            Err("that device is revoked already".into())
        );
        // A device may leave by itself; an owner may too.
        accept(&mut registry, &revoke_device(PAIRED, PAIRED)).unwrap();
        accept(&mut registry, &revoke_device(FOUNDER, FOUNDER)).unwrap();
        assert!(
            registry.may_reach(&fp(OWNER), &fp(M1)),
            "the other owner stays"
        );
        assert!(
            registry.account(&fp(FOUNDER)).is_some(),
            "the account keeps its name"
        );
    }

    #[test]
    fn machines_leaving_drop_their_pairs() {
        let mut registry = world();
        let pairs = registry.pairs;
        accept(&mut registry, &unpair(M1)).unwrap();
        // FOUNDER, OWNER, PAIRED and TARGET were paired with M1.
        assert_eq!(registry.pairs, pairs - 4);
        assert!(registry.reachable(&fp(PAIRED)).is_empty());
        // M1 pairs again through PAIRED: it joins PAIRED's account, paired with PAIRED only.
        accept(&mut registry, &register(PAIRED, M1)).unwrap();
        assert_eq!(
            registry.allowed(&fp(M1)),
            vec![fp(FOUNDER), fp(OWNER), fp(PAIRED)]
        );
        accept(&mut registry, &revoke(FOUNDER, M1)).unwrap();
        assert!(registry.reachable(&fp(PAIRED)).is_empty());
    }

    #[test]
    fn grants_name_a_device_of_the_account_once() {
        let mut registry = world();
        assert_eq!(
            accept(&mut registry, &grant(FOUNDER, OWNER)),
            Err("that device is an owner already".into())
        );
        assert!(accept(&mut registry, &grant(FOUNDER, FOREIGN)).is_err());
        assert!(accept(&mut registry, &grant(FOUNDER, NEWCOMER)).is_err());
        assert!(
            accept(&mut registry, &grant(FOUNDER, M1)).is_err(),
            "a machine is no device"
        );
        accept(&mut registry, &grant(OWNER, OTHER)).unwrap();
        assert!(registry.may_reach(&fp(OTHER), &fp(M1)));
        // A device of another account is never revoked from this one.
        assert!(accept(&mut registry, &revoke_device(FOUNDER, FOREIGN)).is_err());
        assert!(accept(&mut registry, &revoke_device(FOUNDER, M1)).is_err());
    }

    #[test]
    fn replay_keeps_the_wider_rule_older_logs_were_written_under() {
        let mut registry = world();
        let entry = revoke(OTHER, M1);
        assert!(registry.check(&entry, &WIDE, Rules::Live).is_err());
        assert_eq!(registry.check(&entry, &WIDE, Rules::Replay), Ok(()));
        // Outside the account even replay refuses.
        assert!(
            registry
                .check(&revoke(FOREIGN, M1), &WIDE, Rules::Replay)
                .is_err()
        );
        registry.apply(&entry);
        assert!(registry.is_revoked(&fp(M1)));
    }

    #[test]
    fn a_new_hostname_with_bidi_or_invisible_characters_is_refused() {
        let registry = Registry::default();
        for bad in ["b\u{202e}ox", "box\u{200b}"] {
            let mut entry = register(1, 10);
            if let RegistryEntry::RegisterMachine { hostname, .. } = &mut entry {
                *hostname = Hostname::try_from(bad).unwrap_or_default();
            }
            let error = registry.check(&entry, &WIDE, Rules::Live).unwrap_err();
            assert!(error.contains("bidi or invisible"), "{error}");
            // An older log's entry still replays.
            assert_eq!(registry.check(&entry, &WIDE, Rules::Replay), Ok(()));
        }
        assert_eq!(registry.check(&register(1, 10), &WIDE, Rules::Live), Ok(()));
    }

    #[test]
    fn pairs_are_capped_relay_wide() {
        let caps = Caps { pairs: 2, ..WIDE };
        let mut registry = Registry::default();
        for entry in [register(1, 10), register(1, 11)] {
            registry.check(&entry, &caps, Rules::Live).unwrap();
            registry.apply(&entry);
        }
        assert_eq!(
            registry.check(&register(2, 10), &caps, Rules::Live),
            Err("the relay's registry is full")
        );
        // Registering a pair it already has adds nothing, so it passes.
        assert_eq!(registry.check(&register(1, 10), &caps, Rules::Live), Ok(()));
    }

    #[test]
    fn first_device_names_the_account_and_others_join_through_a_machine() {
        let mut registry = Registry::default();
        accept_with(&mut registry, &CAPS, &register(1, 10)).unwrap();
        let account = fp(1);
        assert_eq!(registry.device_account(&account), Some(account));
        accept_with(&mut registry, &CAPS, &register(2, 10)).unwrap();
        assert_eq!(registry.device_account(&fp(2)), Some(account));
        // Device 2 now registers a new machine into the shared account.
        accept_with(&mut registry, &CAPS, &register(2, 11)).unwrap();
        assert_eq!(registry.machine(&fp(11)).map(|m| m.account), Some(account));
        // Caps: a third machine is refused.
        assert!(accept_with(&mut registry, &CAPS, &register(1, 12)).is_err());
        // A device of another account cannot take a machine.
        accept_with(&mut registry, &CAPS, &register(3, 20)).unwrap();
        assert!(accept_with(&mut registry, &CAPS, &register(3, 10)).is_err());
        // Keys are a device or a machine.
        assert!(accept_with(&mut registry, &CAPS, &register(10, 30)).is_err());
        assert!(accept_with(&mut registry, &CAPS, &register(4, 1)).is_err());
    }

    #[test]
    fn revoke_bars_the_key_for_good() {
        let mut registry = Registry::default();
        accept(&mut registry, &register(1, 10)).unwrap();
        assert!(
            accept(&mut registry, &revoke(3, 10)).is_err(),
            "outsider revoked"
        );
        accept(&mut registry, &revoke(1, 10)).unwrap();
        assert!(registry.is_revoked(&fp(10)));
        assert!(registry.machine(&fp(10)).is_none());
        assert!(accept(&mut registry, &register(1, 10)).is_err());
        assert!(accept(&mut registry, &revoke(1, 10)).is_err());
    }

    #[test]
    fn unpair_removes_the_record_only() {
        let mut registry = Registry::default();
        accept(&mut registry, &register(1, 10)).unwrap();
        accept(&mut registry, &unpair(10)).unwrap();
        assert!(registry.machine(&fp(10)).is_none());
        assert!(accept(&mut registry, &unpair(10)).is_err());
        accept(&mut registry, &register(1, 10)).unwrap();
    }
}
