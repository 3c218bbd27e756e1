//! The devices of this device's account, as the relay shows them
//! ([`DeviceList`](muxagent_proto::frame::DeviceList), asked with
//! [`DevicesQuery`](muxagent_proto::frame::DevicesQuery)), finding one by the fingerprint prefix
//! a person typed, and the signed entries that manage them: revoking a device (an owner, or the
//! device itself) and making it an owner (an owner). `ctl devices`, `ctl revoke-device` and
//! `ctl grant-owner` use this, and so does the [controller](crate::controller) for the web
//! app's Settings → Devices.
//!
//! An owner is shown every device and machine of its account; any other device is shown itself
//! and the machines it paired with.

use std::fmt;

use muxagent_proto::frame::{
    DeviceList, DevicesQuery, EntryError, Frame, Registry, RegistryEntry, SignedEntry,
};
use muxagent_proto::identity::{Fingerprint, Identity};

use crate::book::Book;

/// Hex digits a prefix needs at least: fewer name too many keys to be a deliberate choice.
pub const MIN_PREFIX_DIGITS: usize = 4;

/// A machine as a device row names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineName {
    /// The machine.
    pub machine: Fingerprint,
    /// Its hostname.
    pub hostname: String,
    /// Connected now.
    pub online: bool,
}

/// One device of the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// The device.
    pub device: Fingerprint,
    /// This device itself.
    pub you: bool,
    /// An owner: it reaches every machine of the account and manages its devices.
    pub owner: bool,
    /// Connected to the relay now.
    pub online: bool,
    /// The machines it paired with, in the account's order.
    pub paired: Vec<MachineName>,
}

/// The relay's answer as rows, this device (`you`) marked. A machine of `book` is named as it
/// paired with this device, not as the relay says (the relay's word is not checked).
pub fn rows(list: &DeviceList, you: &Fingerprint, book: &Book) -> Vec<DeviceRow> {
    list.devices
        .iter()
        .map(|device| DeviceRow {
            device: device.device,
            you: device.device == *you,
            owner: device.owner,
            online: device.online,
            paired: device
                .paired
                .iter()
                .filter_map(|index| list.machines.get(usize::from(*index)))
                .map(|machine| MachineName {
                    machine: machine.machine,
                    hostname: book.get(&machine.machine).map_or_else(
                        || machine.hostname.to_string(),
                        |known| known.hostname.clone(),
                    ),
                    online: machine.online,
                })
                .collect(),
        })
        .collect()
}

/// Whether this device is an owner of its account, by the relay's answer.
pub fn is_owner(rows: &[DeviceRow]) -> bool {
    rows.iter().any(|row| row.you && row.owner)
}

/// Why a prefix does not pick one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Not hex, or too short to be a deliberate choice.
    NotAPrefix(String),
    /// No device shown has a fingerprint starting so.
    Unknown(String),
    /// Several do.
    Ambiguous(String, Vec<Fingerprint>),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotAPrefix(prefix) => write!(
                f,
                "`{prefix}` is not a fingerprint prefix: give at least {MIN_PREFIX_DIGITS} of its hex digits"
            ),
            ResolveError::Unknown(prefix) => write!(
                f,
                "no device of your account has a fingerprint starting `{prefix}`; `muxagent ctl devices` lists them"
            ),
            ResolveError::Ambiguous(prefix, matches) => {
                let names: Vec<String> = matches.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "`{prefix}` names {} devices ({}); give more of its fingerprint",
                    matches.len(),
                    names.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// The one row whose fingerprint starts with `prefix` (hex digits; dashes ignored, as in the
/// short form `1a2b-3c4d-…`).
pub fn resolve<'a>(rows: &'a [DeviceRow], prefix: &str) -> Result<&'a DeviceRow, ResolveError> {
    let digits: String = prefix
        .chars()
        .filter(|c| *c != '-' && *c != '…')
        .collect::<String>()
        .to_ascii_lowercase();
    if digits.len() < MIN_PREFIX_DIGITS || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ResolveError::NotAPrefix(prefix.into()));
    }
    let matches: Vec<&DeviceRow> = rows
        .iter()
        .filter(|row| row.device.to_hex().starts_with(&digits))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ResolveError::Unknown(prefix.into())),
        many => Err(ResolveError::Ambiguous(
            prefix.into(),
            many.iter().map(|row| row.device).collect(),
        )),
    }
}

/// The frame that asks the relay for the account's devices.
pub fn query(request: u32) -> Frame {
    DevicesQuery { request }.into()
}

/// A registry request, signed by `identity`, that revokes `device` (`identity` must be an
/// owner of its account, or the device itself).
pub fn revoke(
    identity: &Identity,
    device: Fingerprint,
    request: u32,
    now: u64,
) -> Result<Frame, EntryError> {
    let entry = RegistryEntry::RevokeDevice {
        author: identity.public(),
        device,
        at: now,
    };
    signed(identity, &entry, request)
}

/// A registry request, signed by `identity` (an owner), that makes `device` an owner.
pub fn grant_owner(
    identity: &Identity,
    device: Fingerprint,
    request: u32,
    now: u64,
) -> Result<Frame, EntryError> {
    let entry = RegistryEntry::GrantOwner {
        owner: identity.public(),
        device,
        at: now,
    };
    signed(identity, &entry, request)
}

fn signed(identity: &Identity, entry: &RegistryEntry, request: u32) -> Result<Frame, EntryError> {
    Ok(Registry {
        request,
        entry: SignedEntry::sign(identity, entry)?,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use muxagent_proto::frame::{AccountDevice, AccountMachine, Hostname};

    fn list() -> DeviceList {
        let machine = |n: u8, host: &str| AccountMachine {
            machine: Fingerprint([n; 32]),
            hostname: Hostname::try_from(host).unwrap_or_default(),
            online: n == 10,
        };
        let device = |bytes: [u8; 32], owner, paired: Vec<u16>| AccountDevice {
            device: Fingerprint(bytes),
            owner,
            online: false,
            paired,
        };
        let mut twin = [0xab; 32];
        twin[2] = 0x01;
        DeviceList {
            request: 1,
            machines: vec![machine(10, "alpha"), machine(11, "beta")],
            devices: vec![
                device([0x12; 32], true, vec![0, 1]),
                device([0xab; 32], false, vec![1]),
                device(twin, false, vec![]),
            ],
        }
    }

    #[test]
    fn rows_name_the_paired_machines_and_mark_this_device() {
        let rows = rows(&list(), &Fingerprint([0x12; 32]), &Book::default());
        assert!(rows[0].you && rows[0].owner && is_owner(&rows));
        let hosts: Vec<&str> = rows[0].paired.iter().map(|m| m.hostname.as_str()).collect();
        assert_eq!(hosts, ["alpha", "beta"]);
        assert_eq!(rows[1].paired[0].hostname, "beta");
        assert!(!is_owner(&rows[1..]));
        // A machine this device paired with keeps the name it gave in the pairing.
        let mut book = Book::default();
        let key = muxagent_proto::identity::Identity::from_secret_bytes(&[3; 64]).public();
        book.add(crate::book::Machine::new(
            &key,
            "alpha-paired",
            "https://r",
            1,
        ))
        .unwrap();
        let mut renamed = list();
        renamed.machines[0].machine = key.fingerprint();
        let named = super::rows(&renamed, &Fingerprint([0x12; 32]), &book);
        assert_eq!(named[0].paired[0].hostname, "alpha-paired");
        assert_eq!(named[0].paired[1].hostname, "beta");
    }

    #[test]
    fn a_prefix_picks_one_device_or_says_why_not() {
        let rows = rows(&list(), &Fingerprint([0x12; 32]), &Book::default());
        assert_eq!(
            resolve(&rows, "1212").map(|row| row.device),
            Ok(Fingerprint([0x12; 32]))
        );
        // The short form, as `ctl devices` prints it.
        assert_eq!(
            resolve(&rows, "abab-abab").map(|row| row.device),
            Ok(Fingerprint([0xab; 32]))
        );
        assert!(matches!(
            resolve(&rows, "abab"),
            Err(ResolveError::Ambiguous(_, ref matches)) if matches.len() == 2
        ));
        assert!(matches!(
            resolve(&rows, "ffff"),
            Err(ResolveError::Unknown(_))
        ));
        assert!(matches!(
            resolve(&rows, "12"),
            Err(ResolveError::NotAPrefix(_))
        ));
        assert!(matches!(
            resolve(&rows, "alpha"),
            Err(ResolveError::NotAPrefix(_))
        ));
    }

    #[test]
    fn entries_are_signed_by_their_author() {
        let identity = Identity::from_secret_bytes(&[3; 64]);
        for frame in [
            revoke(&identity, Fingerprint([0xab; 32]), 7, 1).expect("signs"),
            grant_owner(&identity, Fingerprint([0xab; 32]), 8, 1).expect("signs"),
        ] {
            let Frame::Registry(registry) = frame else {
                panic!("a registry request");
            };
            let entry = registry.entry.verify().expect("verifies");
            assert_eq!(entry.author(), &identity.public());
        }
    }
}
