//! The machines this device paired with: each one's keys (the root of trust from its pairing
//! ticket), its hostname at pairing, the relay both meet on and when it was paired; and
//! [`Book::resolve`], which finds one by the name a person typed. `ctl` keeps the book in
//! `machines.json`, the web app in IndexedDB; the data and the rules are here.

use std::fmt;

use muxagent_proto::identity::{Fingerprint, PublicIdentity};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_MACHINES;

/// A paired machine. Keys are hex so the stored form is readable (`machines.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Its hostname at pairing.
    pub hostname: String,
    /// Full fingerprint, hex.
    pub fingerprint: String,
    /// Ed25519 key, hex.
    pub signing: String,
    /// X25519 key, hex.
    pub noise: String,
    /// The relay both meet on (its base URL, as the ticket gave it).
    pub relay: String,
    /// Unix seconds.
    pub paired_at: u64,
}

impl Machine {
    /// Record a machine.
    pub fn new(identity: &PublicIdentity, hostname: &str, relay: &str, paired_at: u64) -> Self {
        Self {
            hostname: hostname.into(),
            fingerprint: identity.fingerprint().to_hex(),
            signing: Fingerprint(identity.signing).to_hex(),
            noise: Fingerprint(identity.noise).to_hex(),
            relay: relay.into(),
            paired_at,
        }
    }

    /// Its keys, if the record is intact (the fingerprint must match them too).
    pub fn identity(&self) -> Option<PublicIdentity> {
        let identity = PublicIdentity {
            signing: Fingerprint::parse_hex(&self.signing).ok()?.0,
            noise: Fingerprint::parse_hex(&self.noise).ok()?.0,
        };
        (identity.fingerprint().to_hex() == self.fingerprint).then_some(identity)
    }

    /// Short fingerprint (`1a2b-3c4d-…`), empty for a damaged record.
    pub fn short(&self) -> String {
        self.identity()
            .map(|identity| identity.fingerprint().to_string())
            .unwrap_or_default()
    }
}

/// Why a name does not pick one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No machine has that hostname or fingerprint prefix.
    Unknown(String),
    /// Several do.
    Ambiguous(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Unknown(name) => write!(
                f,
                "no paired machine is called `{name}`; `muxagent ctl machines` lists them"
            ),
            ResolveError::Ambiguous(name) => write!(
                f,
                "`{name}` names more than one machine; use more of its fingerprint"
            ),
        }
    }
}

impl std::error::Error for ResolveError {}

/// The book is full ([`MAX_MACHINES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookFull;

impl fmt::Display for BookFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this device is paired with {MAX_MACHINES} machines, the most an account holds; revoke one first"
        )
    }
}

impl std::error::Error for BookFull {}

/// All paired machines, in pairing order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// In pairing order.
    pub machines: Vec<Machine>,
}

impl Book {
    /// Add a machine, or replace the record with the same key (pairing again).
    pub fn add(&mut self, machine: Machine) -> Result<(), BookFull> {
        let known = self.machines.iter().any(|m| m.signing == machine.signing);
        if !known && self.machines.len() >= MAX_MACHINES {
            return Err(BookFull);
        }
        self.machines.retain(|m| m.signing != machine.signing);
        self.machines.push(machine);
        Ok(())
    }

    /// Forget the machine with `fingerprint`; whether it was there.
    pub fn remove(&mut self, fingerprint: &Fingerprint) -> bool {
        let hex = fingerprint.to_hex();
        let before = self.machines.len();
        self.machines.retain(|m| m.fingerprint != hex);
        self.machines.len() != before
    }

    /// The machine with exactly this fingerprint.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&Machine> {
        let hex = fingerprint.to_hex();
        self.machines.iter().find(|m| m.fingerprint == hex)
    }

    /// Find a machine by hostname (any case), or fingerprint (short or full, any prefix of 4+
    /// hex digits, dashes ignored). A hostname that names one machine wins.
    pub fn resolve(&self, name: &str) -> Result<&Machine, ResolveError> {
        let by_host: Vec<&Machine> = self
            .machines
            .iter()
            .filter(|m| m.hostname.eq_ignore_ascii_case(name))
            .collect();
        if let [machine] = by_host.as_slice() {
            return Ok(machine);
        }
        let digits: String = name
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let by_print: Vec<&Machine> =
            if digits.len() >= 4 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
                self.machines
                    .iter()
                    .filter(|m| m.fingerprint.starts_with(&digits))
                    .collect()
            } else {
                Vec::new()
            };
        match (by_host.len(), by_print.as_slice()) {
            (0, [machine]) => Ok(machine),
            (0, []) => Err(ResolveError::Unknown(name.into())),
            _ => Err(ResolveError::Ambiguous(name.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};

    use super::*;

    fn machine(seed: u8, hostname: &str) -> Machine {
        let identity = Identity::from_secret_bytes(&[seed; SECRET_BYTES_LEN]).public();
        Machine::new(&identity, hostname, "https://relay.example", 1_700_000_000)
    }

    #[test]
    fn resolves_by_hostname_or_fingerprint_prefix() {
        let mut book = Book::default();
        let alpha = machine(1, "alpha");
        let beta = machine(2, "beta");
        book.add(alpha.clone()).unwrap();
        book.add(beta.clone()).unwrap();
        assert_eq!(book.resolve("ALPHA"), Ok(&alpha));
        assert_eq!(book.resolve(&beta.fingerprint[..6]), Ok(&beta));
        assert_eq!(book.resolve(&beta.short()), Ok(&beta));
        assert_eq!(book.resolve(&beta.fingerprint.to_uppercase()), Ok(&beta));
        assert_eq!(
            book.resolve("gamma"),
            Err(ResolveError::Unknown("gamma".into()))
        );
        // Three digits are too few to mean a fingerprint.
        assert!(book.resolve(&beta.fingerprint[..3]).is_err());
        book.add(machine(3, "alpha")).unwrap();
        assert_eq!(
            book.resolve("alpha"),
            Err(ResolveError::Ambiguous("alpha".into()))
        );
        assert_eq!(
            book.resolve("alpha").unwrap_err().to_string(),
            "`alpha` names more than one machine; use more of its fingerprint"
        );
    }

    #[test]
    fn pairing_again_replaces_and_remove_forgets() {
        let mut book = Book::default();
        book.add(machine(1, "old")).unwrap();
        book.add(machine(1, "new")).unwrap();
        assert_eq!(book.machines.len(), 1);
        assert_eq!(book.machines[0].hostname, "new");
        let identity = book.machines[0].identity().unwrap();
        assert!(book.get(&identity.fingerprint()).is_some());
        assert!(book.remove(&identity.fingerprint()));
        assert!(!book.remove(&identity.fingerprint()));
        assert!(book.machines.is_empty());
    }

    #[test]
    fn a_damaged_record_has_no_identity() {
        let mut record = machine(1, "a");
        record.noise = machine(2, "b").noise;
        assert_eq!(record.identity(), None, "keys must match the fingerprint");
        record.signing = "zz".into();
        assert_eq!(record.identity(), None);
        assert_eq!(record.short(), "");
    }

    #[test]
    fn the_book_is_capped() {
        let mut book = Book::default();
        // Key derivation is slow in debug builds: make one record and vary its key.
        let template = machine(1, "m");
        for index in 0..MAX_MACHINES {
            let mut record = template.clone();
            record.signing = format!("{index:064x}");
            book.add(record).unwrap();
        }
        assert_eq!(book.add(machine(9, "one too many")), Err(BookFull));
        // Pairing a known machine again still works when full.
        let mut again = template;
        again.signing = format!("{:064x}", 0);
        assert_eq!(book.add(again), Ok(()));
    }

    #[test]
    fn the_stored_form_is_stable() {
        let book = Book {
            machines: vec![machine(1, "pi")],
        };
        let json = serde_json::to_value(&book).unwrap();
        let mut keys: Vec<&String> = json["machines"][0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "fingerprint",
                "hostname",
                "noise",
                "paired_at",
                "relay",
                "signing"
            ]
        );
        assert_eq!(serde_json::from_value::<Book>(json).unwrap(), book);
    }
}
