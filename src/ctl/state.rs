//! The controller's own state in `$MUXAGENT_HOME/controller/`: its key (`controller.key`, 0600)
//! and the machines it paired with (`machines.json`).

use muxagent_proto::identity::{Fingerprint, PublicIdentity};
use serde::{Deserialize, Serialize};

use crate::home::{Home, HomeError};

/// The controller's key file.
pub const KEY_FILE: &str = "controller.key";
/// The machines file.
pub const MACHINES_FILE: &str = "machines.json";

/// A paired machine.
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
    /// The relay both meet on.
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

    /// Its keys, if the file is intact.
    pub fn identity(&self) -> Option<PublicIdentity> {
        Some(PublicIdentity {
            signing: Fingerprint::parse_hex(&self.signing).ok()?.0,
            noise: Fingerprint::parse_hex(&self.noise).ok()?.0,
        })
    }

    /// Short fingerprint.
    pub fn short(&self) -> String {
        self.identity()
            .map(|identity| identity.fingerprint().to_string())
            .unwrap_or_default()
    }
}

/// All paired machines.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machines {
    /// In pairing order.
    pub machines: Vec<Machine>,
}

impl Machines {
    /// Load (empty when there is no file).
    pub fn load(home: &Home) -> Result<Self, HomeError> {
        Ok(home.read_json(MACHINES_FILE)?.unwrap_or_default())
    }

    /// Save atomically.
    pub fn save(&self, home: &Home) -> Result<(), HomeError> {
        home.write_json(MACHINES_FILE, self)
    }

    /// Add or replace a machine (same key).
    pub fn add(&mut self, machine: Machine) {
        self.machines
            .retain(|known| known.signing != machine.signing);
        self.machines.push(machine);
    }

    /// Find a machine by hostname, or fingerprint (short or full, any prefix of 4+ hex digits).
    pub fn resolve(&self, name: &str) -> Result<&Machine, String> {
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
            (0, []) => Err(format!(
                "no paired machine is called `{name}`; `muxagent ctl machines` lists them"
            )),
            _ => Err(format!(
                "`{name}` names more than one machine; use more of its fingerprint"
            )),
        }
    }
}
