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
//! # Revoked keys belong to the account that revoked them
//!
//! A revoked key is barred as long as the account that revoked it exists, and counts against
//! that account ([`Caps::revoked_per_account`]), not a relay-wide pool: a loop of fresh key →
//! register → revoke fills its own account, never the relay. When an account has no device
//! and no machine left it is removed, and its revoked keys are forgotten with it: nobody is
//! left whom they could reach (a forgotten key starts over as a stranger, in no account).
//!
//! Every map is bounded: machines, devices and revoked keys per account, keys and pairs in
//! total. How fast keys may be added at all is [`crate::admission`]'s.

use std::collections::HashMap;

use muxagent_proto::frame::{Hostname, RegistryEntry};
use muxagent_proto::identity::Fingerprint;
use serde::{Deserialize, Serialize};

/// The bounds the fold enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub machines_per_account: usize,
    pub devices_per_account: usize,
    /// Keys an account revoked and keeps barred; at it, the account adds no key.
    pub revoked_per_account: usize,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MachineRecord {
    pub account: Fingerprint,
    pub hostname: Hostname,
}

/// A device of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRecord {
    pub account: Fingerprint,
    pub owner: bool,
    /// The machines it registered and that are still registered, oldest first.
    pub paired: Vec<Fingerprint>,
}

#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    pub devices: Vec<Fingerprint>,
    pub machines: Vec<Fingerprint>,
    /// Keys this account revoked, oldest first: barred while it exists.
    pub revoked: Vec<Fingerprint>,
}

/// One account as a record of the compacted log ([`Registry::snapshot`]): everything the fold
/// knows of it, in its order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountRecord {
    pub name: Fingerprint,
    pub machines: Vec<(Fingerprint, Hostname)>,
    pub devices: Vec<DeviceSnapshot>,
    pub revoked: Vec<Fingerprint>,
}

/// A device in an [`AccountRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceSnapshot {
    pub key: Fingerprint,
    pub owner: bool,
    /// Indices into the account's machines, oldest pair first.
    pub paired: Vec<u16>,
}

/// Accounts, machines, devices and revoked keys.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub(crate) struct Registry {
    machines: HashMap<Fingerprint, MachineRecord>,
    /// Devices with an account; devices without one are absent.
    devices: HashMap<Fingerprint, DeviceRecord>,
    accounts: HashMap<Fingerprint, Account>,
    /// Revoked keys and the account each is charged to.
    revoked: HashMap<Fingerprint, Fingerprint>,
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
        self.revoked.contains_key(key)
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

    /// Keys the registry holds: machines, devices with an account, revoked keys.
    pub(crate) fn keys(&self) -> usize {
        self.machines.len() + self.devices.len() + self.revoked.len()
    }

    /// Keys `entry` would add to the registry (a registration's new machine and new device;
    /// every other entry adds none).
    pub(crate) fn new_keys(&self, entry: &RegistryEntry) -> usize {
        let RegistryEntry::RegisterMachine {
            device, machine, ..
        } = entry
        else {
            return 0;
        };
        usize::from(!self.devices.contains_key(&device.fingerprint()))
            + usize::from(!self.machines.contains_key(&machine.fingerprint()))
    }

    /// The account whose request rate `entry` counts against: the account of the machine it
    /// names, else its author's, else (a key in no account) the author itself.
    pub(crate) fn rate_account(&self, entry: &RegistryEntry) -> Fingerprint {
        let author = entry.author().fingerprint();
        let machine = match entry {
            RegistryEntry::RegisterMachine { machine, .. }
            | RegistryEntry::UnpairMachine { machine, .. } => Some(machine.fingerprint()),
            RegistryEntry::RevokeMachine { machine, .. } => Some(*machine),
            RegistryEntry::GrantOwner { .. } | RegistryEntry::RevokeDevice { .. } => None,
        };
        machine
            .and_then(|machine| self.machines.get(&machine).map(|record| record.account))
            .or_else(|| self.device_account(&author))
            .unwrap_or(author)
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
                    return Err(if self.revoked.contains_key(device) {
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
        if self.revoked.contains_key(machine) {
            return Err("this machine's key is revoked");
        }
        if self.revoked.contains_key(device) {
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
        let account = self
            .machines
            .get(machine)
            .map(|target| target.account)
            .or(device_account)
            .unwrap_or(*device);
        let adds_keys = record.is_none() || !self.machines.contains_key(machine);
        if adds_keys
            && self
                .accounts
                .get(&account)
                .is_some_and(|a| a.revoked.len() >= caps.revoked_per_account)
        {
            return Err(
                "this account has revoked as many keys as it may keep barred, so it takes no \
                 new device or machine; pair with a new device to start a new account",
            );
        }
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
                    return Err(
                        "the account has its maximum number of machines; revoke or unpair one first",
                    );
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
                let account = self.remove_machine(machine)?;
                self.charge_revoked(*machine, account);
                self.remove_if_empty(&account);
                Some(account)
            }
            RegistryEntry::UnpairMachine { machine, .. } => {
                let account = self.remove_machine(&machine.fingerprint())?;
                self.remove_if_empty(&account);
                Some(account)
            }
            RegistryEntry::GrantOwner { device, .. } => {
                let record = self.devices.get_mut(device)?;
                record.owner = true;
                Some(record.account)
            }
            RegistryEntry::RevokeDevice { device, .. } => {
                let record = self.devices.remove(device)?;
                self.pairs = self.pairs.saturating_sub(record.paired.len());
                if let Some(members) = self.accounts.get_mut(&record.account) {
                    members.devices.retain(|d| d != device);
                }
                self.charge_revoked(*device, record.account);
                self.remove_if_empty(&record.account);
                Some(record.account)
            }
        }
    }

    /// Bar `key` for as long as `account` exists, counted against it.
    fn charge_revoked(&mut self, key: Fingerprint, account: Fingerprint) {
        if let Some(members) = self.accounts.get_mut(&account) {
            members.revoked.push(key);
            self.revoked.insert(key, account);
        }
    }

    /// Remove `account` if no device and no machine is left in it, forgetting its revoked keys.
    fn remove_if_empty(&mut self, account: &Fingerprint) {
        let empty = self
            .accounts
            .get(account)
            .is_some_and(|a| a.devices.is_empty() && a.machines.is_empty());
        if !empty {
            return;
        }
        if let Some(members) = self.accounts.remove(account) {
            for key in &members.revoked {
                if self.revoked.get(key) == Some(account) {
                    self.revoked.remove(key);
                }
            }
        }
    }

    /// Every account as a record, for a compaction of the log.
    pub(crate) fn snapshot(&self) -> Vec<AccountRecord> {
        self.accounts
            .iter()
            .map(|(name, account)| self.record_of(name, account))
            .collect()
    }

    fn record_of(&self, name: &Fingerprint, account: &Account) -> AccountRecord {
        let machines: Vec<(Fingerprint, Hostname)> = account
            .machines
            .iter()
            .map(|m| {
                let hostname = self
                    .machines
                    .get(m)
                    .map(|r| r.hostname.clone())
                    .unwrap_or_default();
                (*m, hostname)
            })
            .collect();
        let devices = account
            .devices
            .iter()
            .filter_map(|d| {
                let record = self.devices.get(d)?;
                let paired = record
                    .paired
                    .iter()
                    .filter_map(|p| account.machines.iter().position(|m| m == p))
                    .filter_map(|i| u16::try_from(i).ok())
                    .collect();
                Some(DeviceSnapshot {
                    key: *d,
                    owner: record.owner,
                    paired,
                })
            })
            .collect();
        AccountRecord {
            name: *name,
            machines,
            devices,
            revoked: account.revoked.clone(),
        }
    }

    /// Add an account from a compacted log, as the relay verified it when it wrote it. A record
    /// that names a key the registry already holds, or a machine index out of range, is refused
    /// whole. The caps are not applied: they bound what is added, and an operator lowering one
    /// must not lose the accounts already over it.
    pub(crate) fn restore(&mut self, record: &AccountRecord) -> Result<(), &'static str> {
        if self.accounts.contains_key(&record.name) {
            return Err("the account is in the registry already");
        }
        let keys = record.machines.len() + record.devices.len() + record.revoked.len();
        let mut seen = std::collections::HashSet::with_capacity(keys);
        let all = record
            .machines
            .iter()
            .map(|(m, _)| m)
            .chain(record.devices.iter().map(|d| &d.key))
            .chain(record.revoked.iter());
        for key in all {
            let known = self.machines.contains_key(key)
                || self.devices.contains_key(key)
                || self.revoked.contains_key(key);
            if known || !seen.insert(*key) {
                return Err("the account names a key twice or one the registry holds");
            }
        }
        if record.devices.is_empty() && record.machines.is_empty() {
            return Err("the account is empty");
        }
        let mut account = Account {
            devices: Vec::with_capacity(record.devices.len()),
            machines: Vec::with_capacity(record.machines.len()),
            revoked: record.revoked.clone(),
        };
        let mut devices = Vec::with_capacity(record.devices.len());
        let mut pairs = 0;
        for device in &record.devices {
            let mut paired = Vec::with_capacity(device.paired.len());
            for index in &device.paired {
                let (machine, _) = record
                    .machines
                    .get(usize::from(*index))
                    .ok_or("a device is paired with a machine the account does not hold")?;
                if !paired.contains(machine) {
                    paired.push(*machine);
                }
            }
            pairs += paired.len();
            devices.push((
                device.key,
                DeviceRecord {
                    account: record.name,
                    owner: device.owner,
                    paired,
                },
            ));
        }
        for (key, device) in devices {
            account.devices.push(key);
            self.devices.insert(key, device);
        }
        for (machine, hostname) in &record.machines {
            account.machines.push(*machine);
            self.machines.insert(
                *machine,
                MachineRecord {
                    account: record.name,
                    hostname: hostname.clone(),
                },
            );
        }
        for key in &record.revoked {
            self.revoked.insert(*key, record.name);
        }
        self.pairs += pairs;
        self.accounts.insert(record.name, account);
        Ok(())
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
        revoked_per_account: 4,
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
        revoked_per_account: 8,
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

    /// check + apply, as the relay does once signatures are verified (they are not checked
    /// here: the registry's rules are the subject).
    fn apply_with(
        registry: &mut Registry,
        caps: &Caps,
        entry: &RegistryEntry,
    ) -> Result<(), String> {
        registry.check(entry, caps, Rules::Live)?;
        registry.apply(entry);
        Ok(())
    }

    /// Fresh machine keys registered and revoked by one device: the revocations are charged to
    /// its account, which stops taking keys at its cap; the relay's count stays bounded.
    #[test]
    fn a_register_revoke_loop_fills_its_own_account_not_the_relay() {
        let caps = WIDE;
        let mut registry = Registry::default();
        let mut refused = 0;
        for machine in 100..130u8 {
            if apply_with(&mut registry, &caps, &register(1, machine)).is_err() {
                refused += 1;
                continue;
            }
            apply_with(&mut registry, &caps, &revoke(1, machine)).unwrap();
        }
        assert_eq!(refused, 30 - caps.revoked_per_account);
        assert_eq!(registry.keys(), 1 + caps.revoked_per_account);
        assert_eq!(
            registry.account(&fp(1)).map(|a| a.revoked.len()),
            Some(caps.revoked_per_account)
        );
        // Another person is not affected.
        apply_with(&mut registry, &caps, &register(2, 200)).unwrap();
        // The account revoked its founder: nothing is left in it, so its revocations go.
        apply_with(&mut registry, &caps, &revoke_device(1, 1)).unwrap();
        assert_eq!(registry.keys(), 2);
        assert!(!registry.is_revoked(&fp(100)));
    }

    /// Fresh keys each round: register, revoke the machine, revoke the device itself. Every
    /// round leaves nothing behind.
    #[test]
    fn a_fresh_key_loop_that_revokes_everything_leaves_nothing() {
        let caps = Caps { keys: 4, ..WIDE };
        let mut registry = Registry::default();
        for round in 0..20u8 {
            let (device, machine) = (100 + round, 150 + round);
            apply_with(&mut registry, &caps, &register(device, machine)).unwrap();
            apply_with(&mut registry, &caps, &revoke(device, machine)).unwrap();
            assert!(registry.is_revoked(&fp(machine)));
            apply_with(&mut registry, &caps, &revoke_device(device, device)).unwrap();
            assert_eq!(registry.keys(), 0, "round {round}");
        }
        assert_eq!(registry, Registry::default());
        apply_with(&mut registry, &caps, &register(1, 10)).unwrap();
    }

    /// Two keys, register and unpair over and over: the registry holds at most the two.
    #[test]
    fn a_register_unpair_loop_holds_two_keys() {
        let caps = Caps { keys: 4, ..WIDE };
        let mut registry = Registry::default();
        for _ in 0..20 {
            apply_with(&mut registry, &caps, &register(1, 10)).unwrap();
            assert_eq!(registry.keys(), 2);
            apply_with(&mut registry, &caps, &unpair(10)).unwrap();
            assert_eq!(registry.keys(), 1, "the device keeps its (empty) account");
        }
        apply_with(&mut registry, &caps, &register(2, 11)).unwrap();
    }

    #[test]
    fn a_snapshot_restores_the_same_registry() {
        let mut registry = world();
        accept(&mut registry, &revoke(FOUNDER, M2)).unwrap();
        accept(&mut registry, &register(OTHER, 12)).unwrap();
        accept(&mut registry, &unpair(12)).unwrap();
        accept(&mut registry, &register(PAIRED, 13)).unwrap();
        let mut restored = Registry::default();
        for record in registry.snapshot() {
            restored.restore(&record).unwrap();
        }
        assert_eq!(restored, registry);
        assert!(restored.is_revoked(&fp(REVOKED)));
        assert!(restored.is_revoked(&fp(M2)));
        // A record naming a key twice, or one already held, is refused whole.
        let record = registry.snapshot().remove(0);
        assert!(restored.restore(&record).is_err());
        let mut doubled = record.clone();
        doubled.name = fp(99);
        doubled.revoked.push(doubled.machines[0].0);
        assert!(Registry::default().restore(&doubled).is_err());
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
