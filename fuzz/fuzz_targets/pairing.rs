//! The pairing machines: the machine's `Pairing` and a device's `Pairing` run a genuine pairing
//! one step at a time while the input injects junk, bit-flipped and replayed packets into both
//! sides (from the pairing device, or from another key on the pairing id). Nothing injected
//! pairs anyone, and the genuine pairing always completes (WireGuard's rule: nothing
//! unauthenticated changes a handshake).
//!
//! Input: a sequence of operations, one byte each, some followed by data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::device::{self, PairedMachine};
use muxagent_proto::frame::{Frame, Hostname, PairingId};
use muxagent_proto::identity::{Fingerprint, Identity, SECRET_BYTES_LEN};
use muxagent_proto::machine;
use muxagent_proto::ticket::{PairingSecret, Ticket};

const NOW: u64 = 1_800_000_000;
const REQUEST: u32 = 1;

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

fn pair_payload(frame: Frame) -> Vec<u8> {
    match frame {
        Frame::PairSend(send) => send.payload,
        other => panic!("expected a PairSend, got {other:?}"),
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte().unwrap_or(0));
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }
}

/// Where the genuine pairing is: the packet in flight and who gets it.
enum Next {
    ToMachine(Vec<u8>),
    ToDevice(Vec<u8>),
    /// The device sent its signed entry; the relay's acknowledgement is due.
    Ack,
    Done,
}

struct World {
    rng: FuzzRng,
    device: Identity,
    stranger: Fingerprint,
    machine: Identity,
    on_machine: machine::Pairing,
    on_device: device::Pairing,
    next: Next,
    /// Every genuine packet delivered so far, for replays.
    sent: Vec<Vec<u8>>,
    machine_paired: bool,
    device_paired: Option<PairedMachine>,
}

impl World {
    fn new() -> Self {
        let mut rng = FuzzRng(11);
        let device = Identity::from_secret_bytes(&[1; SECRET_BYTES_LEN]);
        let machine = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]);
        let stranger = Identity::from_secret_bytes(&[3; SECRET_BYTES_LEN]);
        let hostname = Hostname::try_from("pi").expect("short");
        let pairing_id = PairingId([0x9a; 16]);
        let secret = [0x42; 32];
        let ticket = Ticket {
            relay_url: "http://127.0.0.1:8080".try_into().expect("short"),
            pairing_id,
            machine: machine.public().fingerprint(),
            machine_noise: machine.public().noise,
            secret: PairingSecret(secret),
            hostname: hostname.clone(),
            expires_at: NOW + 300,
        };
        let on_machine =
            machine::Pairing::new(&machine, pairing_id, PairingSecret(secret), hostname);
        let (on_device, init) =
            device::Pairing::start(&device, ticket, REQUEST, &mut rng).expect("start");
        let init = pair_payload(init);
        World {
            rng,
            stranger: stranger.public().fingerprint(),
            device,
            machine,
            on_machine,
            on_device,
            sent: Vec::new(),
            next: Next::ToMachine(init),
            machine_paired: false,
            device_paired: None,
        }
    }

    fn machine_takes(&mut self, from: Fingerprint, bytes: &[u8]) -> Option<machine::PairingStep> {
        self.on_machine
            .on_pair_recv(&self.machine, from, bytes, &mut self.rng)
            .ok()
    }

    /// One genuine step.
    fn advance(&mut self) {
        let device_fp = self.device.public().fingerprint();
        match std::mem::replace(&mut self.next, Next::Done) {
            Next::ToMachine(bytes) => {
                self.sent.push(bytes.clone());
                match self.machine_takes(device_fp, &bytes) {
                    Some(machine::PairingStep::Send(frame)) => {
                        self.next = Next::ToDevice(pair_payload(frame));
                    }
                    Some(machine::PairingStep::Paired(identity)) => {
                        assert_eq!(identity, self.device.public());
                        self.machine_paired = true;
                    }
                    other => panic!("the genuine pairing stalled on the machine: {other:?}"),
                }
            }
            Next::ToDevice(bytes) => {
                self.sent.push(bytes.clone());
                match self.on_device.on_pair_recv(&self.device, &bytes, NOW) {
                    Ok(device::PairingStep::Send(Frame::PairSend(send))) => {
                        self.next = Next::ToMachine(send.payload);
                    }
                    // The signed entry for the relay.
                    Ok(device::PairingStep::Send(Frame::Registry(_))) => self.next = Next::Ack,
                    other => panic!("the genuine pairing stalled on the device: {other:?}"),
                }
            }
            Next::Ack => match self.on_device.on_registry_ack(REQUEST) {
                Ok(device::PairingStep::Paired(frame, machine)) => {
                    assert_eq!(machine.identity, self.machine.public());
                    self.device_paired = Some(machine);
                    self.next = Next::ToMachine(pair_payload(frame));
                }
                other => panic!("the relay's acknowledgement did not pair: {other:?}"),
            },
            Next::Done => {}
        }
    }

    /// Injected into the machine: never a pairing.
    fn inject_to_machine(&mut self, from: Fingerprint, bytes: &[u8]) {
        if let Some(machine::PairingStep::Paired(identity)) = self.machine_takes(from, bytes) {
            panic!("an injected packet paired {identity:?}");
        }
    }

    /// Injected into the device: never a step forward.
    fn inject_to_device(&mut self, bytes: &[u8]) {
        match self.on_device.on_pair_recv(&self.device, bytes, NOW) {
            Ok(device::PairingStep::Ignored) | Err(_) => {}
            Ok(other) => panic!("an injected packet moved the device on: {other:?}"),
        }
    }

    /// The packet in flight with one byte changed, delivered where it goes.
    fn inject_changed(&mut self, at: u8, flip: u8) {
        let device_fp = self.device.public().fingerprint();
        let (to_machine, mut bytes) = match &self.next {
            Next::ToMachine(bytes) => (true, bytes.clone()),
            Next::ToDevice(bytes) => (false, bytes.clone()),
            Next::Ack | Next::Done => return,
        };
        if bytes.is_empty() {
            return;
        }
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= flip.max(1);
        if to_machine {
            self.inject_to_machine(device_fp, &bytes);
        } else {
            self.inject_to_device(&bytes);
        }
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
        match op % 7 {
            0 => world.advance(),
            1 => {
                let bytes = input.bytes();
                let from = world.device.public().fingerprint();
                world.inject_to_machine(from, &bytes);
            }
            2 => {
                let bytes = input.bytes();
                let from = world.stranger;
                world.inject_to_machine(from, &bytes);
            }
            3 => {
                let bytes = input.bytes();
                world.inject_to_device(&bytes);
            }
            4 => {
                let (at, flip) = (input.byte().unwrap_or(0), input.byte().unwrap_or(1));
                world.inject_changed(at, flip);
            }
            5 if !world.sent.is_empty() => {
                let index = usize::from(input.byte().unwrap_or(0)) % world.sent.len();
                let old = world.sent[index].clone();
                let from = world.device.public().fingerprint();
                world.inject_to_machine(from, &old);
            }
            6 if !world.sent.is_empty() => {
                let index = usize::from(input.byte().unwrap_or(0)) % world.sent.len();
                let old = world.sent[index].clone();
                world.inject_to_device(&old);
            }
            _ => {}
        }
    }
    // Whatever was injected, the genuine pairing completes on both sides.
    for _ in 0..8 {
        world.advance();
    }
    assert!(world.machine_paired, "the machine did not pair");
    assert!(world.device_paired.is_some(), "the device did not pair");
});
