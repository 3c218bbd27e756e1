//! Web Push on the device's side: what this device keeps of its subscription (the browser's
//! endpoint and keys, and per machine which kinds to be notified of), how it is stored, and
//! how the view shows it. The browser's part (asking permission, `pushManager.subscribe`) is
//! the UI's (`web/src/push.ts`); the relay gets only the endpoint, each machine the keys
//! (`SetPush`, sent by the controller after every `Hello`).

use muxagent_client::controller::ClientError;
use muxagent_proto::app::{PushKeys, PushKinds};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::PUSH_AUTH_LEN;
use serde::{Deserialize, Serialize};

/// The format of the stored settings.
const SETTINGS_VERSION: u8 = 1;

/// The browser's push subscription, as handed to the relay (endpoint) and the machines (keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The push service URL.
    pub endpoint: String,
    /// The subscription's P-256 key, uncompressed.
    pub p256dh: Vec<u8>,
    /// The subscription's auth secret.
    pub auth: [u8; PUSH_AUTH_LEN],
}

/// What this device keeps about notifications (IndexedDB `meta/push`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Notifications are on: the relay holds this endpoint.
    pub subscription: Option<Subscription>,
    /// Kinds ([`PushKinds`] bits) per machine; a machine not listed gets all of them. A plain
    /// list: a device has a handful of machines.
    pub kinds: Vec<(Fingerprint, u8)>,
    /// Why the relay does not hold the subscription any more, when it refused it again (not
    /// stored).
    #[serde(skip)]
    pub problem: Option<String>,
}

impl Settings {
    /// The kinds `machine` notifies of.
    pub fn kinds(&self, machine: &Fingerprint) -> u8 {
        self.kinds
            .iter()
            .find(|(m, _)| m == machine)
            .map_or(PushKinds::ALL.0, |(_, kinds)| *kinds)
    }

    /// Set the kinds `machine` notifies of.
    pub fn set_kinds(&mut self, machine: &Fingerprint, kinds: u8) {
        let kinds = kinds & PushKinds::ALL.0;
        match self.kinds.iter_mut().find(|(m, _)| m == machine) {
            Some(slot) => slot.1 = kinds,
            None => self.kinds.push((*machine, kinds)),
        }
    }

    /// Forget a machine's kinds (it was unpaired).
    pub fn forget(&mut self, machine: &Fingerprint) {
        self.kinds.retain(|(m, _)| m != machine);
    }

    /// What `machine` should hold: the keys with its kinds, or nothing (notifications off, or
    /// every kind off for it).
    pub fn keys_for(&self, machine: &Fingerprint) -> Option<PushKeys> {
        let subscription = self.subscription.as_ref()?;
        let kinds = self.kinds(machine);
        (kinds != 0).then(|| PushKeys {
            p256dh: subscription.p256dh.clone(),
            auth: subscription.auth,
            kinds: PushKinds(kinds),
        })
    }

    /// The stored bytes: a version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![SETTINGS_VERSION]).unwrap_or_default()
    }

    /// Back from the stored bytes; `None` for another version or damage (then notifications
    /// show as off, and turning them on again repairs it).
    pub fn decode(bytes: &[u8]) -> Option<Settings> {
        let (version, body) = bytes.split_first()?;
        if *version != SETTINGS_VERSION {
            return None;
        }
        postcard::from_bytes(body).ok()
    }
}

/// Where a machine is with this device's push keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Sent; no answer yet.
    Sending,
    /// The machine acknowledged the keys (or their removal).
    Confirmed,
    /// Offline or lost: it hears them after its next `Hello`.
    Waiting,
    /// The machine refused, with its reason.
    Refused(String),
}

impl Status {
    /// What a machine's answer to `SetPush` means.
    pub fn of(result: &Result<(), ClientError>) -> Status {
        match result {
            Ok(()) => Status::Confirmed,
            Err(
                ClientError::Offline { .. }
                | ClientError::Lost { .. }
                | ClientError::NotConnected
                | ClientError::Timeout { .. },
            ) => Status::Waiting,
            Err(error) => Status::Refused(error.to_string()),
        }
    }
}

/// `PushMachineView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineView {
    /// 64 hex digits.
    pub machine: String,
    /// Notify of approvals.
    pub approvals: bool,
    /// Notify of sessions that finished or failed.
    pub ended: bool,
    /// Notify of plans.
    pub plans: bool,
    /// `off`, `sending`, `on`, `waiting`, `refused`.
    pub state: &'static str,
    /// Why it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `PushView` in the contract.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct View {
    /// Notifications are on (the relay holds this device's endpoint).
    pub enabled: bool,
    /// Per paired machine.
    pub machines: Vec<MachineView>,
    /// The relay no longer holds the subscription, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The view of `settings` for `machines`, with what each machine said (`status`).
pub fn view<'a>(
    settings: &Settings,
    machines: impl Iterator<Item = &'a Fingerprint>,
    status: &[(Fingerprint, Status)],
) -> View {
    let enabled = settings.subscription.is_some();
    let machines = machines
        .map(|machine| {
            let kinds = PushKinds(settings.kinds(machine));
            let known = status.iter().find(|(m, _)| m == machine).map(|(_, s)| s);
            let wanted = settings.keys_for(machine).is_some();
            let (state, detail) = match known {
                _ if !wanted => ("off", None),
                Some(Status::Sending) => ("sending", None),
                Some(Status::Confirmed) => ("on", None),
                Some(Status::Refused(why)) => ("refused", Some(why.clone())),
                Some(Status::Waiting) | None => ("waiting", None),
            };
            MachineView {
                machine: machine.to_hex(),
                approvals: kinds.has(PushKinds::APPROVALS),
                ended: kinds.has(PushKinds::ENDED),
                plans: kinds.has(PushKinds::PLANS),
                state,
                detail,
            }
        })
        .collect();
    View {
        enabled,
        machines,
        problem: settings.problem.clone(),
    }
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::AppErrorCode;
    use serde_json::json;

    use super::*;

    fn subscription() -> Subscription {
        Subscription {
            endpoint: "https://push.example/x".into(),
            p256dh: vec![4; 65],
            auth: [7; 16],
        }
    }

    #[test]
    fn keys_follow_the_subscription_and_each_machines_kinds() {
        let alpha = Fingerprint([1; 32]);
        let beta = Fingerprint([2; 32]);
        let mut settings = Settings::default();
        assert_eq!(settings.keys_for(&alpha), None, "off: nothing to hold");
        settings.subscription = Some(subscription());
        assert_eq!(
            settings.keys_for(&alpha).map(|keys| keys.kinds),
            Some(PushKinds::ALL)
        );
        settings.set_kinds(&alpha, PushKinds::APPROVALS | 0x80);
        settings.set_kinds(&beta, 0);
        assert_eq!(
            settings.keys_for(&alpha),
            Some(PushKeys {
                p256dh: vec![4; 65],
                auth: [7; 16],
                kinds: PushKinds(PushKinds::APPROVALS),
            })
        );
        assert_eq!(settings.keys_for(&beta), None, "every kind off");
        let back = Settings::decode(&settings.encode()).unwrap();
        assert_eq!(back, settings);
        let mut other = settings.encode();
        other[0] = 9;
        assert_eq!(Settings::decode(&other), None);
        assert_eq!(Settings::decode(&[]), None);
        settings.forget(&alpha);
        assert_eq!(settings.kinds(&alpha), PushKinds::ALL.0);
    }

    #[test]
    fn the_view_says_what_each_machine_answered() {
        let alpha = Fingerprint([1; 32]);
        let beta = Fingerprint([2; 32]);
        let gamma = Fingerprint([3; 32]);
        let mut settings = Settings {
            subscription: Some(subscription()),
            ..Settings::default()
        };
        settings.set_kinds(&gamma, PushKinds::PLANS);
        let refused = ClientError::Refused {
            hostname: "beta".into(),
            code: AppErrorCode::InvalidState,
            message: "no push here".into(),
        };
        let status = [
            (alpha, Status::of(&Ok(()))),
            (beta, Status::of(&Err(refused))),
        ];
        let view = view(&settings, [alpha, beta, gamma].iter(), &status);
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({ "enabled": true, "machines": [
                { "machine": "01".repeat(32), "approvals": true, "ended": true, "plans": true, "state": "on" },
                { "machine": "02".repeat(32), "approvals": true, "ended": true, "plans": true,
                  "state": "refused", "detail": "beta: no push here" },
                { "machine": "03".repeat(32), "approvals": false, "ended": false, "plans": true, "state": "waiting" },
            ]})
        );
        assert_eq!(
            Status::of(&Err(ClientError::Offline {
                hostname: "a".into()
            })),
            Status::Waiting
        );
        settings.subscription = None;
        let off = super::view(&settings, [alpha].iter(), &status);
        assert!(!off.enabled);
        assert_eq!(off.machines[0].state, "off");
    }
}
