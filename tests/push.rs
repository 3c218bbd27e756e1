//! Push notifications, the machine's side: a device's push keys are checked, kept across a
//! daemon restart and cleared; a test push is answered once handed to the relay. Relay,
//! daemon and controller are real processes on 127.0.0.1; the device speaks the protocol
//! directly with the paired controller's key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod support;

use muxagent_proto::app::{
    AppErrorCode, DeviceMessage, MachineMessage, PushKeys, PushKinds, SetForeground, SetPush,
    TestPush,
};
use muxagent_proto::device::{MachineLink, Received};
use muxagent_proto::frame::{Frame, Role};
use muxagent_proto::identity::{Identity, PublicIdentity};
use muxagent_relay_client::{Client, ClientConfig};
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

/// A browser's subscription key pair, and its public key as `PushSubscription.getKey` gives it.
fn subscription_keys() -> (p256::SecretKey, Vec<u8>) {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let secret = p256::SecretKey::generate_from_rng(&mut rng);
    let p256dh = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
    (secret, p256dh)
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

    let (_, p256dh) = subscription_keys();
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

/// One POST the mock push service took.
struct Posted {
    at: std::time::Instant,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Posted {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A push service on 127.0.0.1 that answers every POST `201 Created` and hands it over.
struct MockPush {
    addr: std::net::SocketAddr,
    posts: std::sync::mpsc::Receiver<Posted>,
}

impl MockPush {
    fn start() -> MockPush {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (sender, posts) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                if let Some(post) = read_post(&mut stream) {
                    use std::io::Write;
                    let _ = stream.write_all(
                        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    if sender.send(post).is_err() {
                        return;
                    }
                }
            }
        });
        MockPush { addr, posts }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn next(&self) -> Posted {
        self.posts
            .recv_timeout(DEADLINE)
            .expect("a POST at the push service")
    }
}

fn read_post(stream: &mut std::net::TcpStream) -> Option<Posted> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = request.parse(&data) {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                .collect();
            let path = request.path.unwrap_or_default().to_string();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())?;
            while data.len() < head + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                data.extend_from_slice(&chunk[..n]);
            }
            return Some(Posted {
                at: std::time::Instant::now(),
                path,
                headers,
                body: data[head..head + length].to_vec(),
            });
        }
    }
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The whole path: a device subscribes at the relay and gives the machine its keys; each
/// approval the agent asks for reaches the push service as ciphertext only the subscription's
/// private key opens, naming the machine, session, tool and the whole input; and a decision
/// signed from nothing but that notice (as the service worker does) is applied.
#[test]
fn an_approval_reaches_the_push_service_encrypted_and_is_decided_from_the_notice() {
    use muxagent_proto::app::{
        ApprovalKind, ApprovalRequest, Decide, Decision, EventKind, Hello, SessionId,
    };
    use muxagent_proto::frame::{PushState, PushSubscribe};
    use muxagent_proto::push::{Notice, NoticeKind};

    const ASKS: usize = 10;
    let temp = tempfile::tempdir().expect("tempdir");
    let push = MockPush::start();
    let relay = Relay::start_with_push(&temp.path().join("relay"), &[push.origin()]);
    let url = relay.url();
    let fake_state = temp.path().join("fake");
    std::fs::create_dir_all(&fake_state).expect("state");
    let env = vec![
        (
            "MUXAGENT_CLAUDE".to_string(),
            support::agents::fake_agent().display().to_string(),
        ),
        ("FAKE_AGENT_BENCH".to_string(), ASKS.to_string()),
        (
            "FAKE_AGENT_STATE".to_string(),
            fake_state.display().to_string(),
        ),
    ];
    let alpha = Daemon::start_with_env(&temp.path().join("alpha"), &url, env);
    let ctl = temp.path().join("ctl");
    pair(&ctl, &alpha);
    let machine = identity_of(&alpha.home.join("machine.key")).public();
    let device = identity_of(&ctl.join("controller/controller.key"));

    let (subscription, p256dh) = subscription_keys();
    let auth = [7u8; 16];
    let opener =
        web_push_native::p256::SecretKey::from_slice(&subscription.to_bytes()).expect("key");
    let open = |body: &[u8]| -> Notice {
        let auth = web_push_native::Auth::clone_from_slice(&auth);
        let plain = web_push_native::decrypt(body.to_vec(), &opener, &auth).expect("decrypts");
        serde_json::from_slice(&plain).expect("a notice")
    };

    let mut phone = smol::block_on(async {
        let mut phone = Device::open(&url, &device, machine).await;
        let endpoint = format!("{}/push/device-1", push.origin());
        let subscribe = PushSubscribe {
            request: 1,
            endpoint: Some(endpoint.clone()),
        };
        phone
            .client
            .send(&Frame::PushSubscribe(subscribe))
            .await
            .expect("send");
        loop {
            match phone.client.recv().await.expect("relay") {
                Frame::PushState(PushState {
                    request: 1,
                    endpoint: held,
                    vapid_public_key,
                }) => {
                    assert_eq!(held, Some(endpoint));
                    assert_eq!(vapid_public_key.len(), 65);
                    break;
                }
                Frame::Error(error) => panic!("subscribe refused: {}", error.reason),
                _ => {}
            }
        }
        let keys = PushKeys {
            p256dh: p256dh.clone(),
            auth,
            kinds: PushKinds::ALL,
        };
        assert_eq!(phone.ask(2, set_push(2, Some(keys))).await, Ok(()));
        // Live events from now on, to time each ask as the device sees it.
        phone
            .send(DeviceMessage::Hello(Hello { cursors: vec![] }))
            .await;
        phone
    });

    // A Claude session (the fake agent) that asks for approval ASKS times in a row.
    let cwd = temp.path().join("work");
    std::fs::create_dir_all(&cwd).expect("cwd");
    let started = ok(
        &ctl,
        &[
            "ctl",
            "start",
            "alpha",
            "--runtime",
            "claude",
            "--cwd",
            cwd.to_str().expect("utf8"),
            "--json",
            "--",
            "go",
        ],
    );
    let started: serde_json::Value = serde_json::from_str(&started).expect("json");
    let session_hex = started["session"].as_str().expect("session").to_string();
    let session = SessionId(unhex(&session_hex).try_into().expect("16 bytes"));

    let machine_hex = hex(&machine.fingerprint().0);
    let mut lags = Vec::new();
    let mut request = 10;
    for ask in 0..ASKS {
        // The ask as the device sees it, live.
        let seen = smol::block_on(async {
            loop {
                let Frame::Recv(recv) = phone.client.recv().await.expect("relay") else {
                    continue;
                };
                if let Ok(Received::Message(MachineMessage::Event(event))) =
                    phone.link.receive(&recv.payload)
                    && let EventKind::ApprovalRequested(_) = event.kind
                {
                    return std::time::Instant::now();
                }
            }
        });
        let post = push.next();
        lags.push(post.at.saturating_duration_since(seen));
        assert_eq!(post.path, "/push/device-1");
        assert!(
            post.header("authorization")
                .is_some_and(|v| v.starts_with("vapid t=")),
            "VAPID authorization"
        );
        assert_eq!(post.header("content-encoding"), Some("aes128gcm"));
        assert_eq!(post.header("urgency"), Some("high"));
        for secret in ["Bash", session_hex.as_str(), machine_hex.as_str()] {
            assert!(
                !post
                    .body
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{secret} is readable in what the relay forwarded"
            );
        }
        let notice = open(&post.body);
        assert_eq!(notice.kind, NoticeKind::Approval);
        assert_eq!(notice.machine, machine_hex);
        assert_eq!(notice.session.as_deref(), Some(session_hex.as_str()));
        let approval = notice.approval.expect("the whole request fits");
        assert_eq!(approval.tool, "Bash");
        assert!(
            approval.input.contains(&format!("true {ask}")),
            "{}",
            approval.input
        );

        // Allow from the notice alone, as the service worker does.
        let shown = ApprovalRequest {
            approval: approval.id,
            kind: ApprovalKind::Tool,
            agent_request: approval.agent_request.clone(),
            tool: approval.tool.clone(),
            input: approval.input.clone(),
            request_hash: unhex(&approval.hash).try_into().expect("32 bytes"),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let decision = muxagent_client::decide::sign(
            &device,
            session,
            &shown,
            &approval.input,
            Decision::AllowOnce,
            now,
        )
        .expect("the notice's input hashes to the request");
        request += 1;
        let decide = DeviceMessage::Decide(Decide { request, decision });
        assert_eq!(smol::block_on(phone.ask(request, decide)), Ok(()));
    }
    // The agent read every answer.
    wait_for("the agent's timings", || {
        fake_state.join("bench.json").exists()
    });

    lags.sort();
    let micros: Vec<u128> = lags.iter().map(|lag| lag.as_micros()).collect();
    println!(
        "approval seen by the device → POST at the push service over {ASKS}: p50 {:?}, max {:?} \
         (µs: {micros:?})",
        percentile(&lags, 0.5),
        percentile(&lags, 1.0)
    );
}
