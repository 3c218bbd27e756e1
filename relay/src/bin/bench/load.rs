//! The load: connections that log in as the real protocol has them (devices and machines, each
//! pair registered through the pairing rendezvous and a signed registry entry), the echo a
//! machine answers with, and the closed- and open-loop drivers.
//!
//! Sources are spread over 127.0.0.0/8, a /24 per [`PER_PREFIX`] connections, so the relay's
//! per-prefix caps stay as shipped and still let the load in.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{
    Frame, Login, OpenPairing, PairSend, PairingId, RegistryEntry, Role, Send, SignedEntry,
};
use muxagent_proto::identity::{Fingerprint, Identity, SECRET_BYTES_LEN, SignDomain};
use smol::stream::StreamExt as _;
use smol::{Async, Timer};

use crate::stats::Latencies;
use crate::target::Kind;

pub type Ws = WebSocketStream<Async<TcpStream>>;

/// Payload of every echoed message, as in the routing figures the issue compares with.
pub const PAYLOAD_LEN: usize = 256;

/// Connections per source /24: under the relay's registry rate per prefix (60 a minute) and its
/// connection cap per prefix (64).
pub const PER_PREFIX: u32 = 40;

/// How long a closed loop waits for an answer before it counts what is in flight as lost and
/// sends a fresh window.
const STALL: Duration = Duration::from_millis(500);

/// How long, after the last send, answers may still come in.
const DRAIN: Duration = Duration::from_secs(2);

static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

/// A fresh source address: 127.a.b.1 with a /24 per [`PER_PREFIX`] connections.
pub fn source() -> Ipv4Addr {
    let [from] = sources();
    from
}

/// `N` fresh source addresses taken together, so that what one task does with them (a pairing's
/// three logins) stays in one /24 or two, however many tasks run at once.
fn sources<const N: usize>() -> [Ipv4Addr; N] {
    let first = NEXT_SOURCE.fetch_add(N as u64, Ordering::Relaxed);
    std::array::from_fn(|i| {
        let prefix = 1 + ((first + i as u64) / u64::from(PER_PREFIX)) as u32;
        Ipv4Addr::new(127, (prefix >> 8) as u8, prefix as u8, 1)
    })
}

/// A WebSocket connection to `addr` from a fresh loopback source.
pub async fn dial(addr: SocketAddr) -> Result<Ws, String> {
    dial_from(addr, source()).await
}

/// A WebSocket connection to `addr` from `from`.
async fn dial_from(addr: SocketAddr, from: Ipv4Addr) -> Result<Ws, String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddrV4::new(from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    // A loopback connect completes at once; the tool may block for it.
    socket
        .connect(&addr.into())
        .map_err(|e| format!("connect {addr} from {from}: {e}"))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let stream = Async::new(stream).map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/relay");
    let (ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("WebSocket to {addr}: {e}"))?;
    Ok(ws)
}

async fn send_frame(ws: &mut Ws, frame: Frame) -> Result<(), String> {
    ws.send(Message::binary(frame.encode()))
        .await
        .map_err(|e| e.to_string())
}

/// The next frame the relay sends, skipping pings and frames of kinds this build lacks.
async fn recv_frame(ws: &mut Ws) -> Result<Frame, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => match Frame::decode(&bytes) {
                Ok(Decoded::Known(frame)) => return Ok(frame),
                Ok(Decoded::Unknown { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the relay closed the connection".into()),
        }
    }
}

/// Wait for the frame `pick` accepts; an error frame fails.
async fn expect<T>(
    ws: &mut Ws,
    what: &str,
    pick: impl Fn(Frame) -> Option<T>,
) -> Result<T, String> {
    loop {
        match recv_frame(ws).await? {
            Frame::Error(error) => return Err(format!("{what}: {}", error.reason)),
            frame => {
                if let Some(value) = pick(frame) {
                    return Ok(value);
                }
            }
        }
    }
}

/// Log in to the relay at `addr` from `from`.
pub async fn login(
    addr: SocketAddr,
    from: Ipv4Addr,
    identity: &Identity,
    role: Role,
) -> Result<Ws, String> {
    let mut ws = dial_from(addr, from).await?;
    let hello = expect(&mut ws, "hello", |frame| match frame {
        Frame::ServerHello(hello) => Some(hello),
        _ => None,
    })
    .await?;
    let hostname = match role {
        Role::Device => None,
        Role::Machine | Role::PendingMachine => Some("bench".try_into().unwrap_or_default()),
    };
    let login = Login::sign(identity, &hello.challenge, role, hostname);
    send_frame(&mut ws, Frame::Login(login)).await?;
    expect(&mut ws, "login", |frame| match frame {
        Frame::LoginOk(_) => Some(()),
        _ => None,
    })
    .await?;
    Ok(ws)
}

fn new_identity() -> Result<Identity, String> {
    let mut secret = [0u8; SECRET_BYTES_LEN];
    getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
    Ok(Identity::from_secret_bytes(&secret))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a message goes: a key on the relay, an id on the forwarder.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Address {
    Key(Fingerprint),
    Id(u64),
}

/// A device and a machine that may talk.
pub struct Pair {
    pub device: Ws,
    pub machine: Ws,
    pub machine_address: Address,
    /// The machine's keys (on the relay).
    pub machine_key: Option<Identity>,
}

/// Pair a device with a machine the way a person does on the relay (rendezvous, signed entry
/// with the machine's consent), or just name both on the forwarder.
pub async fn pair(kind: Kind, addr: SocketAddr, number: u64) -> Result<Pair, String> {
    match kind {
        Kind::Forwarder => {
            let device_id = 2 * number + 1;
            let machine_id = 2 * number + 2;
            let mut device = dial(addr).await?;
            let mut machine = dial(addr).await?;
            for (ws, id) in [(&mut device, device_id), (&mut machine, machine_id)] {
                ws.send(Message::binary(id.to_le_bytes().to_vec()))
                    .await
                    .map_err(|e| e.to_string())?;
                // A message to itself comes back once the forwarder has taken the registration
                // (the same connection's messages are handled in order): the scenario must not
                // start before, or its first frames would go nowhere.
                ws.send(Message::binary(wrap(
                    Address::Id(id),
                    b"registered?".to_vec(),
                )))
                .await
                .map_err(|e| e.to_string())?;
                if next_binary(ws).await.is_none() {
                    return Err("the forwarder closed a connection being set up".into());
                }
            }
            Ok(Pair {
                device,
                machine,
                machine_address: Address::Id(machine_id),
                machine_key: None,
            })
        }
        Kind::Relay => {
            let device_key = new_identity()?;
            let machine_key = new_identity()?;
            let [device_from, pending_from, machine_from] = sources();
            let mut device = login(addr, device_from, &device_key, Role::Device).await?;
            let mut pending = login(addr, pending_from, &machine_key, Role::PendingMachine).await?;
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).map_err(|e| e.to_string())?;
            let pairing_id = PairingId(id);
            let open = OpenPairing {
                pairing_id,
                expires_at: unix_now() + 60,
            };
            send_frame(&mut pending, Frame::OpenPairing(open)).await?;
            expect(&mut pending, "opening a pairing", |frame| match frame {
                Frame::PairingOpened(_) => Some(()),
                _ => None,
            })
            .await?;
            // The rendezvous carries the Noise pairing handshake; its content is the two
            // ends' business, the relay only routes it.
            let hello = PairSend {
                pairing_id,
                payload: b"pairing hello".to_vec(),
            };
            send_frame(&mut device, Frame::PairSend(hello)).await?;
            expect(
                &mut pending,
                "the device's pairing message",
                |frame| match frame {
                    Frame::PairRecv(_) => Some(()),
                    _ => None,
                },
            )
            .await?;
            let consent_message =
                RegistryEntry::consent_message(&device_key.public().fingerprint(), &pairing_id);
            let entry = RegistryEntry::RegisterMachine {
                device: device_key.public(),
                machine: machine_key.public(),
                hostname: "bench".try_into().unwrap_or_default(),
                pairing_id,
                machine_consent: machine_key.sign(SignDomain::RegistryEntry, &consent_message),
                at: unix_now(),
            };
            let entry = SignedEntry::sign(&device_key, &entry).map_err(|e| e.to_string())?;
            let request = muxagent_proto::frame::Registry { request: 1, entry };
            send_frame(&mut device, Frame::Registry(request)).await?;
            expect(
                &mut device,
                "registering the machine",
                |frame| match frame {
                    Frame::RegistryAck(_) => Some(()),
                    _ => None,
                },
            )
            .await?;
            let _ = pending.close(None).await;
            let machine = login(addr, machine_from, &machine_key, Role::Machine).await?;
            Ok(Pair {
                device,
                machine,
                machine_address: Address::Key(machine_key.public().fingerprint()),
                machine_key: Some(machine_key),
            })
        }
    }
}

/// `payload` for `to`, as the target wants it.
fn wrap(to: Address, payload: Vec<u8>) -> Vec<u8> {
    match to {
        Address::Key(to) => Frame::Send(Send { to, payload }).encode(),
        Address::Id(id) => {
            let mut out = Vec::with_capacity(8 + payload.len());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&payload);
            out
        }
    }
}

/// Who sent a delivered message and its payload; `None` for anything else (presence …).
fn unwrap(kind: Kind, message: Vec<u8>) -> Option<(Address, Vec<u8>)> {
    match kind {
        Kind::Relay => match Frame::decode(&message) {
            Ok(Decoded::Known(Frame::Recv(recv))) => Some((Address::Key(recv.from), recv.payload)),
            _ => None,
        },
        Kind::Forwarder => {
            let from = u64::from_le_bytes(message.get(..8)?.try_into().ok()?);
            Some((Address::Id(from), message[8..].to_vec()))
        }
    }
}

async fn next_binary(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(bytes)) => return Some(bytes.to_vec()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A machine's side: send every payload back to whoever sent it, until the connection ends.
pub async fn echo(kind: Kind, mut machine: Ws) {
    while let Some(message) = next_binary(&mut machine).await {
        if let Some((from, payload)) = unwrap(kind, message)
            && machine
                .send(Message::binary(wrap(from, payload)))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// A payload stamped with the time it is (or was scheduled to be) sent, since `epoch`.
fn stamped(epoch: Instant, at: Instant) -> Vec<u8> {
    let mut payload = vec![0u8; PAYLOAD_LEN];
    let nanos = at.saturating_duration_since(epoch).as_nanos() as u64;
    payload[..8].copy_from_slice(&nanos.to_le_bytes());
    payload
}

fn stamp_of(epoch: Instant, payload: &[u8]) -> Option<Instant> {
    let nanos = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    Some(epoch + Duration::from_nanos(nanos))
}

/// What one pair's driver saw.
#[derive(Default)]
pub struct Outcome {
    pub sent: u64,
    pub received: u64,
    pub latencies: Latencies,
}

/// Closed loop: keep `window` messages in flight until `until`, then collect what is still out.
pub async fn closed_loop(
    kind: Kind,
    mut device: Ws,
    to: Address,
    window: usize,
    epoch: Instant,
    until: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut in_flight = 0u64;
    loop {
        let now = Instant::now();
        let sending = now < until;
        while sending && in_flight < window as u64 {
            let message = wrap(to, stamped(epoch, Instant::now()));
            if device.send(Message::binary(message)).await.is_err() {
                return outcome;
            }
            in_flight += 1;
            outcome.sent += 1;
        }
        if in_flight == 0 {
            return outcome;
        }
        let wait = if sending { STALL } else { DRAIN };
        let answer = smol::future::or(async { Some(next_binary(&mut device).await) }, async {
            Timer::after(wait).await;
            None
        })
        .await;
        match answer {
            Some(Some(message)) => {
                if let Some((_, payload)) = unwrap(kind, message)
                    && let Some(sent_at) = stamp_of(epoch, &payload)
                {
                    in_flight -= 1;
                    outcome.received += 1;
                    outcome.latencies.push(Instant::now() - sent_at);
                }
            }
            Some(None) => return outcome,
            // Nothing came back for a while: what is out is lost; start a fresh window.
            None if sending => in_flight = 0,
            None => return outcome,
        }
    }
}

/// Open loop: send at `rate` a second on a fixed schedule until `until` (late sends keep their
/// scheduled time, so a stall shows in the latencies instead of hiding: no coordinated
/// omission), and time each answer from its scheduled send.
pub async fn open_loop(
    kind: Kind,
    device: Ws,
    to: Address,
    rate: f64,
    epoch: Instant,
    until: Instant,
) -> Outcome {
    let (mut sink, mut stream) = device.split();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let sender = async move {
        let mut sent = 0u64;
        loop {
            let at = start + interval * sent as u32;
            if at >= until {
                return sent;
            }
            if at > Instant::now() {
                Timer::at(at).await;
            }
            if sink
                .send(Message::binary(wrap(to, stamped(epoch, at))))
                .await
                .is_err()
            {
                return sent;
            }
            sent += 1;
        }
    };
    let receiver = async move {
        let mut received = 0u64;
        let mut latencies = Latencies::default();
        let last = until + DRAIN;
        loop {
            let next = smol::future::or(async { stream.next().await }, async {
                Timer::at(last).await;
                None
            })
            .await;
            let Some(Ok(message)) = next else {
                return (received, latencies);
            };
            let Message::Binary(bytes) = message else {
                continue;
            };
            if let Some((_, payload)) = unwrap(kind, bytes.to_vec())
                && let Some(scheduled) = stamp_of(epoch, &payload)
            {
                received += 1;
                latencies.push(Instant::now() - scheduled);
            }
        }
    };
    let (sent, (received, latencies)) = smol::future::zip(sender, receiver).await;
    Outcome {
        sent,
        received,
        latencies,
    }
}

/// An idle connection that stays logged in and answers pings (reading is what answers them).
pub async fn idle(kind: Kind, addr: SocketAddr, number: u64) -> Result<Ws, String> {
    match kind {
        Kind::Relay => {
            // A registered machine, as on a real relay: paired, then its device leaves.
            let pair = pair(kind, addr, number).await?;
            let mut device = pair.device;
            let _ = device.close(None).await;
            Ok(pair.machine)
        }
        Kind::Forwarder => {
            let mut ws = dial(addr).await?;
            ws.send(Message::binary((u64::MAX - number).to_le_bytes().to_vec()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(ws)
        }
    }
}

/// Keep reading `ws` until it closes.
pub async fn keep_alive(mut ws: Ws) {
    while next_binary(&mut ws).await.is_some() {}
}
