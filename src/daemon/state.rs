//! What a machine keeps between runs (`machine.json`): its relay and its paired devices. Keys
//! are hex so the file can be read by people.

use muxagent_proto::identity::{Fingerprint, Identity, PublicIdentity};
use serde::{Deserialize, Serialize};

use crate::home::{Home, HomeError};

/// The file name in `$MUXAGENT_HOME`.
pub const STATE_FILE: &str = "machine.json";
/// The machine's secret keys in `$MUXAGENT_HOME` (mode 0600).
pub const KEY_FILE: &str = "machine.key";

/// A device allowed to drive this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedDevice {
    /// Short fingerprint, for people reading the file.
    pub fingerprint: String,
    /// Ed25519 public key, hex.
    pub signing: String,
    /// X25519 public key, hex.
    pub noise: String,
    /// Unix seconds.
    pub paired_at: u64,
}

impl PairedDevice {
    /// Record `identity`.
    pub fn new(identity: &PublicIdentity, paired_at: u64) -> Self {
        Self {
            fingerprint: identity.fingerprint().to_string(),
            signing: Fingerprint(identity.signing).to_hex(),
            noise: Fingerprint(identity.noise).to_hex(),
            paired_at,
        }
    }

    /// The keys, if the hex is intact.
    pub fn identity(&self) -> Option<PublicIdentity> {
        let signing = Fingerprint::parse_hex(&self.signing).ok()?.0;
        let noise = Fingerprint::parse_hex(&self.noise).ok()?.0;
        Some(PublicIdentity { signing, noise })
    }
}

/// The machine's persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MachineState {
    /// The relay's base URL.
    pub relay: Option<String>,
    /// Devices that paired with this machine.
    #[serde(default)]
    pub devices: Vec<PairedDevice>,
    /// Approval policy: deny an approval nobody decided within this many minutes (none: wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deny_after_minutes: Option<u32>,
}

impl MachineState {
    /// Load from `home` (empty if there is no file yet).
    pub fn load(home: &Home) -> Result<Self, HomeError> {
        Ok(home.read_json(STATE_FILE)?.unwrap_or_default())
    }

    /// Save to `home` atomically.
    pub fn save(&self, home: &Home) -> Result<(), HomeError> {
        home.write_json(STATE_FILE, self)
    }

    /// The paired devices' keys (entries with damaged hex are skipped).
    pub fn device_identities(&self) -> Vec<PublicIdentity> {
        self.devices
            .iter()
            .filter_map(PairedDevice::identity)
            .collect()
    }

    /// Whether `device` is paired with this machine.
    pub fn is_paired(&self, device: &Fingerprint) -> bool {
        self.device_identities()
            .iter()
            .any(|identity| identity.fingerprint() == *device)
    }

    /// Forget `device` (every record of its key).
    pub fn forget_device(&mut self, device: &Fingerprint) {
        self.devices.retain(|record| {
            record
                .identity()
                .is_none_or(|identity| identity.fingerprint() != *device)
        });
    }

    /// Add a device (replacing an older record of the same key).
    pub fn add_device(&mut self, identity: &PublicIdentity, now: u64) {
        let record = PairedDevice::new(identity, now);
        self.devices
            .retain(|device| device.signing != record.signing);
        self.devices.push(record);
    }
}

/// A local reset: new keys replace the old ones in [`KEY_FILE`] and `state` forgets every
/// paired device (the relay is not asked: it may refuse this machine). The relay URL and the
/// approval policy stay. Returns the new keys.
pub fn reset(home: &Home, state: &mut MachineState) -> Result<Identity, HomeError> {
    let identity = Identity::generate(&mut crate::os::rng());
    crate::home::write_atomic(&home.path(KEY_FILE), &identity.to_secret_bytes()[..], 0o600)?;
    state.devices.clear();
    state.save(home)?;
    Ok(identity)
}
