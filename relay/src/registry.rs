//! The registry: accounts, their devices and machines, and revoked keys, folded from verified
//! [`RegistryEntry`]s. Pure state and rules; no IO (the log is [`crate::log`]), no pairing ids
//! (the router checks those before an entry is accepted, since they live only in memory).
//!
//! # Account model
//!
//! - An account is named by the fingerprint of the device that created it: the first device to
//!   register a machine. A device with no machines has no account (its account is "itself",
//!   empty), and can reach nobody.
//! - `RegisterMachine` (signed by the device, with the machine's consent signature) adds the
//!   machine to the device's account. If the machine is already in an account, the device
//!   *joins* that account instead: the machine's consent, given through a fresh pairing, is the
//!   proof that its owner let this device in. A device already in another account is refused.
//! - `RevokeMachine` (signed by a device of the machine's account) removes the machine and bars
//!   its key for good: it can neither log in nor pair again.
//! - `UnpairMachine` (signed by the machine) removes its own record; it may pair again later.
//! - A key is a device or a machine, never both.
//!
//! Every map is bounded: machines and devices per account, and keys in total.

use std::collections::{HashMap, HashSet};

use muxagent_proto::frame::{Hostname, RegistryEntry};
use muxagent_proto::identity::Fingerprint;

/// The bounds the fold enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub machines_per_account: usize,
    pub devices_per_account: usize,
    pub keys: usize,
}

/// A registered machine.
#[derive(Clone, Debug)]
pub(crate) struct MachineRecord {
    pub account: Fingerprint,
    pub hostname: Hostname,
}

#[derive(Default, Debug)]
pub(crate) struct Account {
    pub devices: Vec<Fingerprint>,
    pub machines: Vec<Fingerprint>,
}

/// Accounts, machines and revoked keys.
#[derive(Default, Debug)]
pub(crate) struct Registry {
    machines: HashMap<Fingerprint, MachineRecord>,
    /// Device → its account. Devices without an account are absent.
    devices: HashMap<Fingerprint, Fingerprint>,
    accounts: HashMap<Fingerprint, Account>,
    revoked: HashSet<Fingerprint>,
}

impl Registry {
    pub(crate) fn machine(&self, machine: &Fingerprint) -> Option<&MachineRecord> {
        self.machines.get(machine)
    }

    pub(crate) fn device_account(&self, device: &Fingerprint) -> Option<Fingerprint> {
        self.devices.get(device).copied()
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

    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (self.accounts.len(), self.machines.len(), self.revoked.len())
    }

    fn keys(&self) -> usize {
        self.machines.len() + self.devices.len() + self.revoked.len()
    }

    /// Whether `entry` may be applied now, by the registry's rules alone. The reason is for
    /// people.
    pub(crate) fn check(&self, entry: &RegistryEntry, caps: &Caps) -> Result<(), &'static str> {
        match entry {
            RegistryEntry::RegisterMachine {
                device, machine, ..
            } => {
                let device = device.fingerprint();
                let machine = machine.fingerprint();
                if device == machine {
                    return Err("a key cannot register itself");
                }
                if self.revoked.contains(&machine) {
                    return Err("this machine's key is revoked");
                }
                if self.revoked.contains(&device) || self.machines.contains_key(&device) {
                    return Err("this key is a machine, not a device");
                }
                if self.devices.contains_key(&machine) {
                    return Err("this machine's key is a device of an account");
                }
                let device_account = self.devices.get(&device).copied();
                match self.machines.get(&machine) {
                    Some(record) => {
                        if device_account.is_some_and(|account| account != record.account) {
                            return Err("this device belongs to another account");
                        }
                        if device_account.is_none() {
                            let members = self.accounts.get(&record.account);
                            if members.is_some_and(|a| a.devices.len() >= caps.devices_per_account)
                            {
                                return Err("the account has its maximum number of devices");
                            }
                            if self.keys() >= caps.keys {
                                return Err("the relay's registry is full");
                            }
                        }
                    }
                    None => {
                        let account = device_account.unwrap_or(device);
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
            RegistryEntry::RevokeMachine {
                device, machine, ..
            } => {
                let device = device.fingerprint();
                let Some(record) = self.machines.get(machine) else {
                    return Err("no such machine is registered");
                };
                if self.devices.get(&device) != Some(&record.account) {
                    return Err("the machine is not in this device's account");
                }
                Ok(())
            }
            RegistryEntry::UnpairMachine { machine, .. } => {
                if !self.machines.contains_key(&machine.fingerprint()) {
                    return Err("this machine is not registered");
                }
                Ok(())
            }
        }
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
                    None => self.devices.get(&device).copied().unwrap_or(device),
                };
                let members = self.accounts.entry(account).or_default();
                if !members.devices.contains(&device) {
                    members.devices.push(device);
                }
                if !members.machines.contains(&machine_fp) {
                    members.machines.push(machine_fp);
                }
                self.devices.insert(device, account);
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
        }
    }

    fn remove_machine(&mut self, machine: &Fingerprint) -> Option<Fingerprint> {
        let record = self.machines.remove(machine)?;
        if let Some(members) = self.accounts.get_mut(&record.account) {
            members.machines.retain(|m| m != machine);
        }
        Some(record.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muxagent_proto::Bytes64;
    use muxagent_proto::frame::PairingId;
    use muxagent_proto::identity::{Identity, PublicIdentity, Signature};

    const CAPS: Caps = Caps {
        machines_per_account: 2,
        devices_per_account: 2,
        keys: 100,
    };

    fn key(seed: u8) -> PublicIdentity {
        Identity::from_secret_bytes(&[seed; 64]).public()
    }

    fn register(device: u8, machine: u8) -> RegistryEntry {
        RegistryEntry::RegisterMachine {
            device: key(device),
            machine: key(machine),
            hostname: Hostname::try_from("box").unwrap_or_default(),
            pairing_id: PairingId([0; 16]),
            machine_consent: Signature(Bytes64([0; 64])),
            at: 0,
        }
    }

    fn revoke(device: u8, machine: u8) -> RegistryEntry {
        RegistryEntry::RevokeMachine {
            device: key(device),
            machine: key(machine).fingerprint(),
            at: 0,
        }
    }

    fn accept(registry: &mut Registry, entry: &RegistryEntry) -> Result<(), &'static str> {
        registry.check(entry, &CAPS)?;
        registry.apply(entry);
        Ok(())
    }

    #[test]
    fn first_device_names_the_account_and_others_join_through_a_machine() {
        let mut registry = Registry::default();
        accept(&mut registry, &register(1, 10)).unwrap();
        let account = key(1).fingerprint();
        assert_eq!(registry.device_account(&account), Some(account));
        accept(&mut registry, &register(2, 10)).unwrap();
        assert_eq!(
            registry.device_account(&key(2).fingerprint()),
            Some(account)
        );
        // Device 2 now registers a new machine into the shared account.
        accept(&mut registry, &register(2, 11)).unwrap();
        assert_eq!(
            registry.machine(&key(11).fingerprint()).map(|m| m.account),
            Some(account)
        );
        // Caps: a third machine is refused.
        assert!(accept(&mut registry, &register(1, 12)).is_err());
        // A device of another account cannot take a machine.
        accept(&mut registry, &register(3, 20)).unwrap();
        assert!(accept(&mut registry, &register(3, 10)).is_err());
        // Keys are a device or a machine.
        assert!(accept(&mut registry, &register(10, 30)).is_err());
        assert!(accept(&mut registry, &register(4, 1)).is_err());
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
        assert!(registry.is_revoked(&key(10).fingerprint()));
        assert!(registry.machine(&key(10).fingerprint()).is_none());
        assert!(accept(&mut registry, &register(1, 10)).is_err());
        assert!(accept(&mut registry, &revoke(1, 10)).is_err());
    }

    #[test]
    fn unpair_removes_the_record_only() {
        let mut registry = Registry::default();
        accept(&mut registry, &register(1, 10)).unwrap();
        let unpair = RegistryEntry::UnpairMachine {
            machine: key(10),
            at: 0,
        };
        accept(&mut registry, &unpair).unwrap();
        assert!(registry.machine(&key(10).fingerprint()).is_none());
        assert!(accept(&mut registry, &unpair).is_err());
        accept(&mut registry, &register(1, 10)).unwrap();
    }
}
