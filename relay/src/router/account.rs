//! What a device may see of its account ([`DevicesQuery`](muxagent_proto::frame::DevicesQuery)):
//! an owner sees every machine and device of it, any other device itself and the machines it
//! paired with — no more than it reaches.

use muxagent_proto::frame::{AccountDevice, AccountMachine, DeviceList, ErrorCode, Role};
use muxagent_proto::identity::Fingerprint;

use super::{Refused, Router, Session, State, presence_hostname, refused};
use crate::metrics::Refusal;

impl Router {
    /// The answer to a device's `DevicesQuery`.
    pub(crate) fn device_list(
        &self,
        session: &Session,
        request: u32,
    ) -> Result<DeviceList, Refused> {
        if session.role != Role::Device {
            return Err(refused(
                ErrorCode::NotAllowed,
                Refusal::NotAllowed,
                "only a device asks for its account's devices",
            ));
        }
        let state = self.lock();
        Ok(list(&state, &session.fingerprint, request))
    }
}

fn list(state: &State, asking: &Fingerprint, request: u32) -> DeviceList {
    let registry = &state.registry;
    let mut answer = DeviceList {
        request,
        machines: Vec::new(),
        devices: Vec::new(),
    };
    let Some(record) = registry.device(asking) else {
        return answer;
    };
    let shown: Vec<Fingerprint> = if record.owner {
        registry
            .account(&record.account)
            .map(|account| account.devices.clone())
            .unwrap_or_default()
    } else {
        vec![*asking]
    };
    let machines = registry.reachable(asking);
    answer.machines = machines
        .iter()
        .map(|machine| {
            let live = state
                .live
                .get(&(*machine, Role::Machine))
                .and_then(|key| key.conns.first());
            AccountMachine {
                machine: *machine,
                hostname: presence_hostname(state, machine, &live.and_then(|l| l.hostname.clone())),
                online: live.is_some(),
            }
        })
        .collect();
    answer.devices = shown
        .iter()
        .filter_map(|device| {
            let record = registry.device(device)?;
            let paired = record
                .paired
                .iter()
                .filter_map(|machine| machines.iter().position(|m| m == machine))
                .filter_map(|index| u16::try_from(index).ok())
                .collect();
            Some(AccountDevice {
                device: *device,
                owner: record.owner,
                online: state.live.contains_key(&(*device, Role::Device)),
                paired,
            })
        })
        .collect();
    answer
}
