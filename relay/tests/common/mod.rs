//! Helpers for the relay's integration tests: a relay on 127.0.0.1 port 0 with a temporary
//! data folder, identities, logged-in clients, the pairing flow, `/metrics`, and a bound on
//! every await so a bug fails fast instead of hanging.
#![allow(dead_code)]

pub mod process;
pub mod raw;

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use muxagent_proto::frame::{
    ErrorCode, Frame, Hostname, OpenPairing, PairSend, PairingId, Registry, RegistryEntry, Role,
    SignedEntry,
};
use muxagent_proto::identity::{Identity, SignDomain};
use muxagent_relay::{Relay, RelayConfig, RelayError};
use muxagent_relay_client::{Client, ClientConfig, ClientError};
use smol::Timer;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};

/// Every single wait in a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// `fut`, or panic naming `what` after [`STEP`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let bounded = async { Some(fut.await) }.or(async {
        Timer::after(STEP).await;
        None
    });
    match bounded.await {
        Some(value) => value,
        None => panic!("timed out: {what}"),
    }
}

/// `fut`'s result, or `None` if it takes longer than `limit` (for "nothing arrives" checks).
pub async fn quiet_for<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(limit).await;
            None
        })
        .await
}

pub fn identity() -> Identity {
    let mut secret = [0u8; 64];
    getrandom::fill(&mut secret).expect("randomness");
    Identity::from_secret_bytes(&secret)
}

pub fn hostname(name: &str) -> Hostname {
    Hostname::try_from(name).expect("short hostname")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A relay running in the background of the test.
pub struct TestRelay {
    pub addr: SocketAddr,
    /// The `/metrics` listener's address, when the config gave it one.
    pub metrics_addr: Option<SocketAddr>,
    pub url: String,
    pub dir: PathBuf,
    stop: smol::channel::Sender<()>,
    task: Option<smol::Task<Result<(), RelayError>>>,
    _temp: Option<tempfile::TempDir>,
}

/// A configuration for tests: loopback, a fresh folder, generous per-prefix cap, short timeouts.
pub fn config(dir: &std::path::Path) -> RelayConfig {
    let mut config = RelayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir);
    config.limits.max_connections_per_prefix = 10_000;
    config.limits.shutdown_grace = Duration::from_millis(500);
    // The tests read the counters on the relay's own port.
    config.metrics = muxagent_relay::MetricsAccess::Public;
    config
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        let temp = tempfile::tempdir().expect("temp dir");
        let config = config(temp.path());
        let mut relay = Self::start_with(config).await;
        relay._temp = Some(temp);
        relay
    }

    pub async fn start_with(config: RelayConfig) -> TestRelay {
        let dir = config.data_dir.clone();
        let tls = config.tls.is_some();
        let relay = within("binding the relay", Relay::bind(config))
            .await
            .expect("relay binds");
        let addr = relay.local_addr();
        let metrics_addr = relay.metrics_addr();
        let url = if tls {
            format!("wss://localhost:{}", addr.port())
        } else {
            format!("ws://{addr}")
        };
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let task = smol::spawn(relay.run(async move {
            let _ = stopped.recv().await;
        }));
        TestRelay {
            addr,
            metrics_addr,
            url,
            dir,
            stop,
            task: Some(task),
            _temp: None,
        }
    }

    /// A relay running as another process at `url` (`ws://ip:port`): clients and HTTP only.
    pub fn external(url: &str) -> TestRelay {
        let addr = url
            .trim_start_matches("ws://")
            .parse()
            .expect("ws://ip:port");
        let (stop, _) = smol::channel::bounded::<()>(1);
        TestRelay {
            addr,
            metrics_addr: None,
            url: url.to_string(),
            dir: PathBuf::new(),
            stop,
            task: None,
            _temp: None,
        }
    }

    /// Shut down gracefully and wait for `run` to return.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        let _ = self.stop.send(()).await;
        if let Some(task) = self.task {
            within("relay shutdown", task)
                .await
                .expect("relay ran cleanly");
        }
        self._temp
    }

    pub async fn connect(&self, id: &Identity, role: Role, host: Option<&str>) -> Client {
        self.try_connect(id, role, host)
            .await
            .expect("login succeeds")
    }

    pub async fn try_connect(
        &self,
        id: &Identity,
        role: Role,
        host: Option<&str>,
    ) -> Result<Client, ClientError> {
        let config = ClientConfig {
            connect_timeout: STEP,
            ..ClientConfig::default()
        };
        within(
            "connecting",
            Client::connect(&self.url, id, role, host.map(hostname), &config),
        )
        .await
    }

    pub async fn device(&self, id: &Identity) -> Client {
        self.connect(id, Role::Device, None).await
    }

    pub async fn machine(&self, id: &Identity, host: &str) -> Client {
        self.connect(id, Role::Machine, Some(host)).await
    }

    /// GET `path`; returns the status line and the body.
    pub async fn get(&self, path: &str) -> (String, String) {
        within("an HTTP request", http_get(self.addr, path)).await
    }

    /// The value of one metric line (`name{label="value"}` exactly as rendered), 0 if absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let (_, body) = self.get("/metrics").await;
        metric_value(&body, series)
    }

    /// Wait until `series` reaches at least `value` (polling `/metrics`).
    pub async fn wait_metric(&self, series: &str, value: u64) {
        within(&format!("{series} to reach {value}"), async {
            loop {
                if self.metric(series).await >= value {
                    return;
                }
                Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

pub fn metric_value(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = smol::Async::<TcpStream>::connect(addr)
        .await
        .expect("tcp connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// Receive frames until one matches `pick` (others, e.g. presence, are skipped).
pub async fn recv_until<T>(
    client: &mut Client,
    what: &str,
    mut pick: impl FnMut(&Frame) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let frame = client
                .recv()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(value) = pick(&frame) {
                return value;
            }
        }
    })
    .await
}

/// Receive until an `Error` frame arrives; returns its code.
pub async fn expect_error(client: &mut Client, what: &str) -> ErrorCode {
    recv_until(client, what, |frame| match frame {
        Frame::Error(error) => Some(error.code),
        _ => None,
    })
    .await
}

/// Read until the relay closes the connection (frames before that are returned).
pub async fn until_closed(client: &mut Client, what: &str) -> Vec<Frame> {
    within(what, async {
        let mut frames = Vec::new();
        loop {
            match client.recv().await {
                Ok(frame) => frames.push(frame),
                Err(_) => return frames,
            }
        }
    })
    .await
}

pub fn send(to: &Identity, payload: &[u8]) -> Frame {
    Frame::Send(muxagent_proto::frame::Send {
        to: to.public().fingerprint(),
        payload: payload.to_vec(),
    })
}

/// Wait for a `Recv` and return (from, payload).
pub async fn expect_recv(
    client: &mut Client,
    what: &str,
) -> (muxagent_proto::identity::Fingerprint, Vec<u8>) {
    recv_until(client, what, |frame| match frame {
        Frame::Recv(recv) => Some((recv.from, recv.payload.clone())),
        Frame::Error(error) => panic!("{what}: got error {error:?}"),
        _ => None,
    })
    .await
}

pub fn new_pairing_id() -> PairingId {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("randomness");
    PairingId(id)
}

/// The machine's consent to join `device`'s account through `pairing_id`.
pub fn consent(
    machine: &Identity,
    device: &Identity,
    pairing_id: &PairingId,
) -> muxagent_proto::identity::Signature {
    let message = RegistryEntry::consent_message(&device.public().fingerprint(), pairing_id);
    machine.sign(SignDomain::RegistryEntry, &message)
}

pub fn register_entry(device: &Identity, machine: &Identity, pairing_id: PairingId) -> SignedEntry {
    let entry = RegistryEntry::RegisterMachine {
        device: device.public(),
        machine: machine.public(),
        hostname: hostname("box"),
        pairing_id,
        machine_consent: consent(machine, device, &pairing_id),
        at: unix_now(),
    };
    SignedEntry::sign(device, &entry).expect("device signs")
}

pub fn revoke_entry(device: &Identity, machine: &Identity) -> SignedEntry {
    let entry = RegistryEntry::RevokeMachine {
        device: device.public(),
        machine: machine.public().fingerprint(),
        at: unix_now(),
    };
    SignedEntry::sign(device, &entry).expect("device signs")
}

pub fn grant_entry(owner: &Identity, device: &Identity) -> SignedEntry {
    let entry = RegistryEntry::GrantOwner {
        owner: owner.public(),
        device: device.public().fingerprint(),
        at: unix_now(),
    };
    SignedEntry::sign(owner, &entry).expect("owner signs")
}

pub fn revoke_device_entry(author: &Identity, device: &Identity) -> SignedEntry {
    let entry = RegistryEntry::RevokeDevice {
        author: author.public(),
        device: device.public().fingerprint(),
        at: unix_now(),
    };
    SignedEntry::sign(author, &entry).expect("author signs")
}

/// Ask for the account's devices and wait for the answer (or the error's code).
pub async fn devices_query(
    client: &mut Client,
    request: u32,
) -> Result<muxagent_proto::frame::DeviceList, ErrorCode> {
    client
        .send(&Frame::DevicesQuery(muxagent_proto::frame::DevicesQuery {
            request,
        }))
        .await
        .expect("send the query");
    recv_until(client, "the device list", |frame| match frame {
        Frame::DeviceList(list) if list.request == request => Some(Ok(list.clone())),
        Frame::Error(error) => Some(Err(error.code)),
        _ => None,
    })
    .await
}

/// Send a registry request and wait for its ack (`Ok`) or error (`Err(code)`).
pub async fn registry(
    client: &mut Client,
    request: u32,
    entry: SignedEntry,
) -> Result<(), ErrorCode> {
    client
        .send(&Frame::Registry(Registry { request, entry }))
        .await
        .expect("send registry request");
    recv_until(client, "the registry answer", |frame| match frame {
        Frame::RegistryAck(ack) if ack.request == request => Some(Ok(())),
        Frame::Error(error) if error.request == Some(request) => Some(Err(error.code)),
        _ => None,
    })
    .await
}

/// A pending machine with an open pairing id that `device` has claimed (one message each
/// way through the rendezvous). Returns the pending connection and the id.
pub async fn rendezvous(
    relay: &TestRelay,
    device: &mut Client,
    machine: &Identity,
) -> (Client, PairingId) {
    let mut pending = relay
        .connect(machine, Role::PendingMachine, Some("box"))
        .await;
    let pairing_id = new_pairing_id();
    pending
        .send(&Frame::OpenPairing(OpenPairing {
            pairing_id,
            expires_at: unix_now() + 60,
        }))
        .await
        .expect("open pairing");
    recv_until(&mut pending, "PairingOpened", |frame| match frame {
        Frame::PairingOpened(opened) => Some(opened.pairing_id),
        Frame::Error(error) => panic!("open pairing refused: {error:?}"),
        _ => None,
    })
    .await;
    device
        .send(&Frame::PairSend(PairSend {
            pairing_id,
            payload: b"noise hello".to_vec(),
        }))
        .await
        .expect("device pair send");
    recv_until(
        &mut pending,
        "PairRecv at the machine",
        |frame| match frame {
            Frame::PairRecv(recv) => Some(recv.payload.clone()),
            Frame::Error(error) => panic!("pairing: {error:?}"),
            _ => None,
        },
    )
    .await;
    pending
        .send(&Frame::PairSend(PairSend {
            pairing_id,
            payload: b"noise answer".to_vec(),
        }))
        .await
        .expect("machine pair send");
    recv_until(device, "PairRecv at the device", |frame| match frame {
        Frame::PairRecv(recv) => Some(recv.payload.clone()),
        Frame::Error(error) => panic!("pairing: {error:?}"),
        _ => None,
    })
    .await;
    (pending, pairing_id)
}

/// The whole pairing flow: rendezvous, then the device registers the machine.
pub async fn pair(
    relay: &TestRelay,
    device_id: &Identity,
    device: &mut Client,
    machine: &Identity,
) {
    let (pending, pairing_id) = rendezvous(relay, device, machine).await;
    registry(device, 1, register_entry(device_id, machine, pairing_id))
        .await
        .expect("registration accepted");
    pending.close().await;
}

pub fn deadline_in(limit: Duration) -> Instant {
    Instant::now() + limit
}
