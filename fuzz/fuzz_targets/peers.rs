//! The stateful responder: the machine's `Peers` and a device's `MachineLink` with a working
//! channel, while the input injects junk, bit-flipped and replayed packets on both sides and
//! reconnects. Nothing injected is ever taken as a message, and the channel always still
//! carries the next genuine message both ways (WireGuard's rule: nothing unauthenticated
//! changes a channel).
//!
//! Input: a sequence of operations, one byte each, some followed by data (see `Op`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::app::{Ack, DeviceMessage, Hello, ListSessions, MachineMessage};
use muxagent_proto::device::{MachineLink, Received};
use muxagent_proto::frame::Frame;
use muxagent_proto::identity::{Identity, PublicIdentity, SECRET_BYTES_LEN};
use muxagent_proto::machine::{Incoming, Peers};

/// A deterministic CSPRNG stand-in (splitmix64): only uniqueness matters here.
struct FuzzRng(u64);

impl rand_core::TryRng for FuzzRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for FuzzRng {}

fn payload(frame: Frame) -> Vec<u8> {
    match frame {
        Frame::Send(send) => send.payload,
        other => panic!("expected a Send, got {other:?}"),
    }
}

/// Reads the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// A length byte, then that many bytes (fewer at the end of the input).
    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte().unwrap_or(0));
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }
}

struct World {
    rng: FuzzRng,
    device: Identity,
    machine: Identity,
    paired: [PublicIdentity; 1],
    peers: Peers,
    link: MachineLink,
    /// Every genuine packet so far, either way, for replays.
    sent: Vec<Vec<u8>>,
    request: u32,
}

impl World {
    fn new() -> Self {
        let device = Identity::from_secret_bytes(&[1; SECRET_BYTES_LEN]);
        let machine = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]);
        let mut world = World {
            rng: FuzzRng(7),
            paired: [device.public()],
            link: MachineLink::new(machine.public()),
            peers: Peers::new(),
            device,
            machine,
            sent: Vec::new(),
            request: 0,
        };
        world.reconnect();
        world
    }

    /// The device feeds the machine `bytes`.
    fn to_machine(&mut self, bytes: &[u8]) -> Result<Incoming, muxagent_proto::peer::PeerError> {
        let from = self.device.public().fingerprint();
        self.peers
            .receive(&self.machine, &self.paired, from, bytes, &mut self.rng)
    }

    /// A fresh handshake, then the hello that proves it (as a real device does).
    fn reconnect(&mut self) {
        let init = payload(self.link.connect(&self.device, &mut self.rng).expect("connect"));
        self.sent.push(init.clone());
        let Ok(Incoming::Reply(reply)) = self.to_machine(&init) else {
            panic!("the machine answers a genuine handshake");
        };
        let reply = payload(reply);
        self.sent.push(reply.clone());
        assert_eq!(self.link.receive(&reply), Ok(Received::Opened));
        let hello = DeviceMessage::Hello(Hello { cursors: vec![] });
        self.device_says(hello);
    }

    fn next_device_packet(&mut self) -> (DeviceMessage, Vec<u8>) {
        self.request += 1;
        let message = DeviceMessage::ListSessions(ListSessions {
            request: self.request,
        });
        let bytes = payload(self.link.send(&message).expect("the link is open"));
        (message, bytes)
    }

    fn device_says(&mut self, message: DeviceMessage) {
        let bytes = payload(self.link.send(&message).expect("the link is open"));
        self.deliver_to_machine(message, bytes);
    }

    fn deliver_to_machine(&mut self, message: DeviceMessage, bytes: Vec<u8>) {
        self.sent.push(bytes.clone());
        assert_eq!(
            self.to_machine(&bytes),
            Ok(Incoming::Message(message)),
            "a genuine message must get through"
        );
    }

    fn next_machine_packet(&mut self) -> (MachineMessage, Vec<u8>) {
        self.request += 1;
        let message = MachineMessage::Ack(Ack {
            request: self.request,
            session: None,
        });
        let device = self.device.public().fingerprint();
        let connection = self.peers.connection(&device).expect("a channel");
        let bytes = payload(
            self.peers
                .send(device, connection, &message)
                .expect("the channel is open"),
        );
        (message, bytes)
    }

    fn deliver_to_device(&mut self, message: MachineMessage, bytes: Vec<u8>) {
        self.sent.push(bytes.clone());
        assert_eq!(
            self.link.receive(&bytes),
            Ok(Received::Message(message)),
            "a genuine message must get through"
        );
    }

    /// Injected into the machine: never a message.
    fn inject_to_machine(&mut self, bytes: &[u8]) {
        if let Ok(Incoming::Message(message)) = self.to_machine(bytes) {
            panic!("an injected packet was taken as {message:?}");
        }
    }

    /// Injected into the device: dropped, the link still open.
    fn inject_to_device(&mut self, bytes: &[u8]) {
        match self.link.receive(bytes) {
            Ok(Received::Stale) => {}
            other => panic!("an injected packet was taken: {other:?}"),
        }
        assert!(self.link.is_open());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut world = World::new();
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 64 {
            break;
        }
        match op % 9 {
            // Genuine traffic both ways.
            0 => {
                let (message, bytes) = world.next_device_packet();
                world.deliver_to_machine(message, bytes);
            }
            1 => {
                let (message, bytes) = world.next_machine_packet();
                world.deliver_to_device(message, bytes);
            }
            // Junk.
            2 => {
                let bytes = input.bytes();
                world.inject_to_machine(&bytes);
            }
            3 => {
                let bytes = input.bytes();
                world.inject_to_device(&bytes);
            }
            // The next genuine packet with a byte changed, then the packet itself.
            4 => {
                let (at, flip) = (input.byte().unwrap_or(0), input.byte().unwrap_or(1).max(1));
                let (message, bytes) = world.next_device_packet();
                let mut forged = bytes.clone();
                let at = usize::from(at) % forged.len();
                forged[at] ^= flip;
                world.inject_to_machine(&forged);
                world.deliver_to_machine(message, bytes);
            }
            5 => {
                let (at, flip) = (input.byte().unwrap_or(0), input.byte().unwrap_or(1).max(1));
                let (message, bytes) = world.next_machine_packet();
                let mut forged = bytes.clone();
                let at = usize::from(at) % forged.len();
                forged[at] ^= flip;
                // A changed connection id is another connection's packet; still dropped.
                world.inject_to_device(&forged);
                world.deliver_to_device(message, bytes);
            }
            // Replays of anything genuine so far, either way.
            6 => {
                if !world.sent.is_empty() {
                    let index = usize::from(input.byte().unwrap_or(0)) % world.sent.len();
                    let old = world.sent[index].clone();
                    world.inject_to_machine(&old);
                }
            }
            7 => {
                if !world.sent.is_empty() {
                    let index = usize::from(input.byte().unwrap_or(0)) % world.sent.len();
                    let old = world.sent[index].clone();
                    world.inject_to_device(&old);
                }
            }
            // A reconnect: a new handshake and channel.
            _ => world.reconnect(),
        }
    }
    // Whatever happened, the channel works both ways.
    let (message, bytes) = world.next_device_packet();
    world.deliver_to_machine(message, bytes);
    let (message, bytes) = world.next_machine_packet();
    world.deliver_to_device(message, bytes);
});
