//! Settings → Devices: the account's devices as the relay shows them to this device
//! ([`DeviceList`], made rows by [`muxagent_client::devices::rows`]), shaped as the contract's
//! `AccountDeviceView`. An owner is shown every device; another device itself (and the machines
//! it paired with).

use muxagent_client::book::Book;
use muxagent_client::devices::{self, DeviceRow};
use muxagent_proto::frame::DeviceList;
use muxagent_proto::identity::Fingerprint;
use serde::Serialize;

/// A machine a device paired with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairedMachineView {
    /// 64 hex digits.
    pub fingerprint: String,
    /// As the machine announced it (untrusted text).
    pub hostname: String,
    /// Connected to the relay now.
    pub online: bool,
}

/// `AccountDeviceView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountDeviceView {
    /// 64 hex digits.
    pub fingerprint: String,
    /// The short form people compare.
    pub short: String,
    /// This device.
    pub you: bool,
    /// It reaches every machine of the account and manages its devices.
    pub owner: bool,
    /// Connected to the relay now.
    pub online: bool,
    /// The machines it paired with.
    pub paired: Vec<PairedMachineView>,
}

impl From<&DeviceRow> for AccountDeviceView {
    fn from(row: &DeviceRow) -> Self {
        Self {
            fingerprint: row.device.to_hex(),
            short: row.device.to_string(),
            you: row.you,
            owner: row.owner,
            online: row.online,
            paired: row
                .paired
                .iter()
                .map(|machine| PairedMachineView {
                    fingerprint: machine.machine.to_hex(),
                    hostname: machine.hostname.clone(),
                    online: machine.online,
                })
                .collect(),
        }
    }
}

/// The relay's answer as the UI gets it, `you` marked: this device first, then the others in
/// the account's order.
pub fn rows(list: &DeviceList, you: &Fingerprint, book: &Book) -> Vec<AccountDeviceView> {
    let mut rows: Vec<AccountDeviceView> = devices::rows(list, you, book)
        .iter()
        .map(AccountDeviceView::from)
        .collect();
    rows.sort_by_key(|row| !row.you);
    rows
}

#[cfg(test)]
mod tests {
    use muxagent_proto::frame::{AccountDevice, AccountMachine, Hostname};
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_put_this_device_first_and_name_its_machines() {
        let list = DeviceList {
            request: 1,
            machines: vec![AccountMachine {
                machine: Fingerprint([0x0a; 32]),
                hostname: Hostname::try_from("alpha").unwrap(),
                online: true,
            }],
            devices: vec![
                AccountDevice {
                    device: Fingerprint([0x11; 32]),
                    owner: true,
                    online: false,
                    paired: vec![0],
                },
                AccountDevice {
                    device: Fingerprint([0x22; 32]),
                    owner: false,
                    online: true,
                    paired: vec![0, 7],
                },
            ],
        };
        let shown = rows(&list, &Fingerprint([0x22; 32]), &Book::default());
        assert_eq!(
            serde_json::to_value(&shown).unwrap(),
            json!([
                {
                    "fingerprint": "22".repeat(32),
                    "short": "2222-2222-2222-2222",
                    "you": true,
                    "owner": false,
                    "online": true,
                    // An index the list does not hold names nothing.
                    "paired": [{ "fingerprint": "0a".repeat(32), "hostname": "alpha", "online": true }],
                },
                {
                    "fingerprint": "11".repeat(32),
                    "short": "1111-1111-1111-1111",
                    "you": false,
                    "owner": true,
                    "online": false,
                    "paired": [{ "fingerprint": "0a".repeat(32), "hostname": "alpha", "online": true }],
                },
            ])
        );
    }
}
