//! Push notifications, the machine's side: a device's push keys are checked, kept across a
//! daemon restart and cleared; a test push is answered once handed to the relay. Relay,
//! daemon and controller are real processes on 127.0.0.1; the device speaks the protocol
//! directly with the paired controller's key.

mod support;

use muxagent_proto::app::{
    AppErrorCode, DeviceMessage, MachineMessage, PushKeys, PushKinds, SetForeground, SetPush,
    TestPush,
};
use muxagent_proto::device::{MachineLink, Received};
use muxagent_proto::frame::{Frame, Role};
use muxagent_proto::identity::{Identity, PublicIdentity};
use muxagent_relay::client::{Client, ClientConfig};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use support::*;

#[test]
fn relay_process() {
    // Runs only when this binary is re-executed as a relay (see support::Relay).
    maybe_run_relay();
}

fn identity_of(path: &std::path::Path) -> Identity {
    let secret = std::fs::read(path).expect("key file");
    Identity::from_secret_bytes(&secret[..].try_into().expect("64 bytes"))
}

/// A device's channel to one machine, for requests and their answers.
struct Device {
    client: Client,
    link: MachineLink,
}

impl Device {
    async fn open(url: &str, identity: &Identity, machine: PublicIdentity) -> Device {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let mut client =
            Client::connect(url, identity, Role::Device, None, &ClientConfig::default())
                .await
                .expect("log in");
        let mut link = MachineLink::new(machine);
        let hello = link.connect(identity, &mut rng).expect("connect");
        client.send(&hello).await.expect("send");
        loop {
            if let Frame::Recv(recv) = client.recv().await.expect("relay")
                && let Ok(Received::Opened) = link.receive(&recv.payload)
            {
                return Device { client, link };
            }
        }
    }

    async fn send(&mut self, message: DeviceMessage) {
        let frame = self.link.send(&message).expect("seal");
        self.client.send(&frame).await.expect("send");
    }

    /// Send `message` and return the machine's answer to `request`: `Ok` for an ack, the
    /// error's code and message otherwise.
    async fn ask(
        &mut self,
        request: u32,
        message: DeviceMessage,
    ) -> Result<(), (AppErrorCode, String)> {
        self.send(message).await;
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no answer to {request}"
            );
            let Frame::Recv(recv) = self.client.recv().await.expect("relay") else {
                continue;
            };
            match self.link.receive(&recv.payload) {
                Ok(Received::Message(MachineMessage::Ack(ack))) if ack.request == request => {
                    return Ok(());
                }
                Ok(Received::Message(MachineMessage::Error(error)))
                    if error.request == Some(request) =>
                {
                    return Err((error.code, error.message));
                }
                _ => {}
            }
        }
    }
}

fn set_push(request: u32, push: Option<PushKeys>) -> DeviceMessage {
    DeviceMessage::SetPush(SetPush { request, push })
}

fn test_push(request: u32) -> DeviceMessage {
    DeviceMessage::TestPush(TestPush { request })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The push settings of the one paired device in the machine's saved state.
fn saved_push(home: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(home.join("machine.json")).expect("machine.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("json");
    state["devices"][0]["push"].clone()
}

#[test]
fn push_keys_are_checked_kept_across_a_restart_and_cleared() {
    let temp = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(&temp.path().join("relay"));
    let url = relay.url();
    let mut alpha = Daemon::start(&temp.path().join("alpha"), &url);
    let ctl = temp.path().join("ctl");
    pair(&ctl, &alpha);
    let machine = identity_of(&alpha.home.join("machine.key")).public();
    let device = identity_of(&ctl.join("controller/controller.key"));

    // The browser's subscription keys, as `PushSubscription.getKey` gives them.
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let subscription = p256::SecretKey::generate_from_rng(&mut rng);
    let p256dh = subscription
        .public_key()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    let keys = PushKeys {
        p256dh: p256dh.clone(),
        auth: [5; 16],
        kinds: PushKinds::ALL,
    };

    smol::block_on(async {
        let mut phone = Device::open(&url, &device, machine).await;
        assert_eq!(
            phone.ask(1, test_push(1)).await.map_err(|(code, _)| code),
            Err(AppErrorCode::InvalidState),
            "no keys yet"
        );
        let mut off_curve = keys.clone();
        off_curve.p256dh[64] ^= 1;
        let refused = phone.ask(2, set_push(2, Some(off_curve))).await;
        let (code, message) = refused.expect_err("not a point on the curve");
        assert_eq!(code, AppErrorCode::BadRequest);
        assert!(message.contains("P-256"), "{message}");

        assert_eq!(phone.ask(3, set_push(3, Some(keys.clone()))).await, Ok(()));
        assert_eq!(phone.ask(4, test_push(4)).await, Ok(()));
        // A test push goes even while the app is on screen.
        phone
            .send(DeviceMessage::SetForeground(SetForeground {
                visible: true,
            }))
            .await;
        assert_eq!(phone.ask(5, test_push(5)).await, Ok(()));
    });
    let saved = saved_push(&alpha.home);
    assert_eq!(saved["p256dh"], hex(&p256dh));
    assert_eq!(saved["auth"], hex(&[5; 16]));
    assert_eq!(saved["kinds"], u64::from(PushKinds::ALL.0));

    // A new daemon has the same keys.
    alpha.kill();
    alpha.restart();
    smol::block_on(async {
        let mut phone = Device::open(&url, &device, machine).await;
        assert_eq!(phone.ask(6, test_push(6)).await, Ok(()));
        assert_eq!(phone.ask(7, set_push(7, None)).await, Ok(()));
        assert_eq!(
            phone.ask(8, test_push(8)).await.map_err(|(code, _)| code),
            Err(AppErrorCode::InvalidState),
            "keys cleared"
        );
    });
    assert_eq!(saved_push(&alpha.home), serde_json::Value::Null);
}
