//! What a machine keeps between runs (`machine.json`): its relay, its paired devices and their
//! push keys. Keys are hex so the file can be read by people.

use muxagent_proto::app::{PushKeys, PushKinds};
use muxagent_proto::identity::{Fingerprint, Identity, PublicIdentity};
use muxagent_proto::limits::{PUSH_AUTH_LEN, PUSH_VAPID_KEY_LEN};
use serde::{Deserialize, Serialize};

use super::notify::Subscriber;

use crate::home::{Home, HomeError};
use crate::render::hex;

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
    /// The device's Web Push subscription keys and what it wants to hear of; none: no pushes.
    /// Forgotten with the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSettings>,
}

/// A device's push keys as kept ([`PushKeys`] in hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSettings {
    /// The subscription's `p256dh` key (an uncompressed P-256 point), hex.
    pub p256dh: String,
    /// The subscription's `auth` secret, hex.
    pub auth: String,
    /// [`PushKinds`] bits.
    pub kinds: u8,
}

impl PushSettings {
    /// Keep `keys`.
    pub fn new(keys: &PushKeys) -> Self {
        PushSettings {
            p256dh: hex(&keys.p256dh),
            auth: hex(&keys.auth),
            kinds: keys.kinds.0,
        }
    }

    /// The keys, if the hex is intact.
    pub fn keys(&self) -> Option<PushKeys> {
        let p256dh = unhex(&self.p256dh).filter(|key| key.len() == PUSH_VAPID_KEY_LEN)?;
        let auth: [u8; PUSH_AUTH_LEN] = unhex(&self.auth)?.try_into().ok()?;
        Some(PushKeys {
            p256dh,
            auth,
            kinds: PushKinds(self.kinds),
        })
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

impl PairedDevice {
    /// Record `identity`.
    pub fn new(identity: &PublicIdentity, paired_at: u64) -> Self {
        Self {
            fingerprint: identity.fingerprint().to_string(),
            signing: Fingerprint(identity.signing).to_hex(),
            noise: Fingerprint(identity.noise).to_hex(),
            paired_at,
            push: None,
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

    /// The record of paired device `device`.
    pub fn device_mut(&mut self, device: &Fingerprint) -> Option<&mut PairedDevice> {
        self.devices
            .iter_mut()
            .find(|record| record.identity().map(|i| i.fingerprint()) == Some(*device))
    }

    /// The push keys of `device`, if it is paired and gave some.
    pub fn push_keys(&self, device: &Fingerprint) -> Option<PushKeys> {
        self.devices
            .iter()
            .filter(|record| record.push.is_some())
            .find(|record| record.identity().map(|i| i.fingerprint()) == Some(*device))
            .and_then(|record| record.push.as_ref()?.keys())
    }

    /// The devices that gave push keys, and what each wants to hear of.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        self.devices
            .iter()
            .filter_map(|record| {
                let keys = record.push.as_ref()?.keys()?;
                Some(Subscriber {
                    device: record.identity()?.fingerprint(),
                    kinds: keys.kinds,
                })
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::Home;

    fn keys(kinds: u8) -> PushKeys {
        let mut p256dh = vec![4u8; PUSH_VAPID_KEY_LEN];
        p256dh[1] = 0xab;
        PushKeys {
            p256dh,
            auth: [7; PUSH_AUTH_LEN],
            kinds: PushKinds(kinds),
        }
    }

    #[test]
    fn push_keys_survive_a_restart_and_go_with_their_device() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path().to_path_buf()).expect("home");
        let mut rng = crate::os::rng();
        let phone = Identity::generate(&mut rng).public();
        let laptop = Identity::generate(&mut rng).public();
        let mut state = MachineState::default();
        state.add_device(&phone, 1);
        state.add_device(&laptop, 2);
        let record = state.device_mut(&phone.fingerprint()).expect("paired");
        record.push = Some(PushSettings::new(&keys(PushKinds::APPROVALS)));
        state.save(&home).expect("save");

        // The next daemon reads the same keys.
        let mut state = MachineState::load(&home).expect("load");
        assert_eq!(
            state.push_keys(&phone.fingerprint()),
            Some(keys(PushKinds::APPROVALS))
        );
        assert_eq!(state.push_keys(&laptop.fingerprint()), None);
        assert_eq!(
            state.subscribers(),
            vec![Subscriber {
                device: phone.fingerprint(),
                kinds: PushKinds(PushKinds::APPROVALS),
            }]
        );

        // Pairing the phone again starts it without keys; so does a reset.
        state.add_device(&phone, 3);
        assert_eq!(state.push_keys(&phone.fingerprint()), None);
        state.device_mut(&phone.fingerprint()).expect("paired").push =
            Some(PushSettings::new(&keys(PushKinds::ENDED)));
        reset(&home, &mut state).expect("reset");
        assert!(
            MachineState::load(&home)
                .expect("load")
                .subscribers()
                .is_empty()
        );

        // A damaged file entry is no subscriber.
        let mut damaged = PushSettings::new(&keys(1));
        damaged.auth.pop();
        assert_eq!(damaged.keys(), None);
    }
}
