//! End-to-end tests of pairing, sessions and the channel, with a seeded rng.

use alloc::vec;
use alloc::vec::Vec;
use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

use super::packet::{self, Body, ConnectionId, Kind, Packet, PacketError, Sealed};
use super::pairing::{DevicePairing, MachinePairing, PairingError};
use super::session::{self, Initiator, SessionError};
use super::{Channel, ChannelError};
use crate::frame::PairingId;
use crate::identity::{Identity, PublicIdentity, SECRET_BYTES_LEN};
use crate::limits::{AEAD_TAG_LEN, MAX_APP_MESSAGE_LEN, MAX_PACKET_LEN};
use crate::ticket::{PairingSecret, Ticket};

/// A deterministic rng for tests (SplitMix64). Not for production use.
pub(crate) struct TestRng(u64);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.try_next_u64().map(|value| (value >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}

fn identity(rng: &mut TestRng) -> Identity {
    Identity::generate(rng)
}

/// An identity with `signing`'s Ed25519 key and `noise`'s X25519 key.
fn mix(signing: &Identity, noise: &Identity) -> Identity {
    let mut bytes = [0u8; SECRET_BYTES_LEN];
    bytes[..32].copy_from_slice(&signing.to_secret_bytes()[..32]);
    bytes[32..].copy_from_slice(&noise.to_secret_bytes()[32..]);
    Identity::from_secret_bytes(&bytes)
}

fn ticket(machine: &PublicIdentity, secret: [u8; 32]) -> Ticket {
    Ticket {
        relay_url: "https://relay.example".try_into().expect("url"),
        pairing_id: PairingId([5; 16]),
        machine: machine.fingerprint(),
        machine_noise: machine.noise,
        secret: PairingSecret(secret),
        hostname: "box".try_into().expect("hostname"),
        expires_at: 1_000,
    }
}

/// Pair `device` with `machine`; returns (device's channel, machine's channel).
fn pair(device: &Identity, machine: &Identity, rng: &mut TestRng) -> (Channel, Channel) {
    let secret = [9u8; 32];
    let mut machine_side = MachinePairing::new(machine, PairingSecret(secret));
    let (mut device_side, init) =
        DevicePairing::start(device, &ticket(&machine.public(), secret), rng).expect("start");
    let response = machine_side.respond(&init, rng).expect("respond");
    let (device_channel, confirm) = device_side.finish(&response).expect("finish");
    let machine_channel = machine_side.confirm(&confirm).expect("confirm");
    (device_channel, machine_channel)
}

/// Run a KK handshake; returns (device's channel, machine's channel).
fn connect(device: &Identity, machine: &Identity, rng: &mut TestRng) -> (Channel, Channel) {
    let (mut initiator, init) = Initiator::start(device, &machine.public(), rng).expect("start");
    let (machine_channel, response) =
        session::respond(machine, &[device.public()], &init, rng).expect("respond");
    let device_channel = initiator.finish(&response).expect("finish");
    (device_channel, machine_channel)
}

fn exchange(from: &mut Channel, to: &mut Channel, message: &[u8]) {
    let packet = from.encrypt(message).expect("encrypt");
    assert_eq!(to.decrypt(&packet).expect("decrypt"), message);
}

// ---- Pairing ----

#[test]
fn pairing_succeeds_and_each_side_learns_the_others_identity() {
    let rng = &mut TestRng::new(1);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = pair(&device, &machine, rng);
    assert_eq!(*on_device.peer(), machine.public());
    assert_eq!(*on_machine.peer(), device.public());
    assert_eq!(on_device.handshake_hash(), on_machine.handshake_hash());
    assert_eq!(on_device.connection_id(), on_machine.connection_id());
    // The confirmation was message 0 device → machine; the channel goes on from there.
    exchange(&mut on_device, &mut on_machine, b"register me");
    exchange(&mut on_machine, &mut on_device, b"consent");
}

#[test]
fn pairing_with_the_wrong_secret_fails_on_the_device() {
    let rng = &mut TestRng::new(2);
    let (device, machine) = (identity(rng), identity(rng));
    let mut machine_side = MachinePairing::new(&machine, PairingSecret([1; 32]));
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), [2; 32]), rng).expect("start");
    // IKpsk2: the machine cannot tell yet (the PSK enters in message 2) …
    let response = machine_side.respond(&init, rng).expect("respond");
    // … the device can.
    assert_eq!(
        device_side.finish(&response).err(),
        Some(PairingError::ResponseRejected)
    );
    // An answer that does not authenticate changes nothing: the attempt still waits.
    assert_eq!(
        device_side.finish(&response).err(),
        Some(PairingError::ResponseRejected)
    );
    assert!(!machine_side.is_used());
}

#[test]
fn forged_pairing_packets_end_neither_side() {
    let rng = &mut TestRng::new(8);
    let (device, machine) = (identity(rng), identity(rng));
    let secret = [1u8; 32];
    let mut machine_side = MachinePairing::new(&machine, PairingSecret(secret));
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), secret), rng).expect("start");
    let response = machine_side.respond(&init, rng).expect("respond");
    let connection = device_side.connection_id();

    // Forged answers under the attempt's connection id: flipped bits, or made up.
    for position in [9, 40, response.len() - 1] {
        let mut forged = response.clone();
        forged[position] ^= 0x40;
        assert_eq!(
            device_side.finish(&forged).err(),
            Some(PairingError::ResponseRejected),
            "byte {position}"
        );
    }
    let made_up = Packet {
        connection,
        body: Body::PairingResponse(&[7; 160]),
    }
    .encode()
    .expect("encode");
    assert_eq!(
        device_side.finish(&made_up).err(),
        Some(PairingError::ResponseRejected)
    );
    // The real answer still completes the attempt.
    let (mut on_device, confirm) = device_side.finish(&response).expect("finish");
    // A replayed request would make the machine answer with new keys, stranding the device: it
    // is ignored.
    assert_eq!(
        machine_side.respond(&init, rng).err(),
        Some(PairingError::Replayed)
    );

    // Forged confirmations under the pending request's id.
    for counter in [0, 1, u64::MAX] {
        let forged = Packet {
            connection,
            body: Body::PairingConfirm(Sealed {
                counter,
                message: &[0u8; 112],
            }),
        }
        .encode()
        .expect("encode");
        assert_eq!(
            machine_side.confirm(&forged).err(),
            Some(PairingError::ConfirmRejected)
        );
    }
    let mut damaged = confirm.clone();
    damaged[30] ^= 1;
    assert_eq!(
        machine_side.confirm(&damaged).err(),
        Some(PairingError::ConfirmRejected)
    );
    // The real confirmation still pairs, and the channel works.
    let mut on_machine = machine_side.confirm(&confirm).expect("confirm");
    assert_eq!(*on_machine.peer(), device.public());
    exchange(&mut on_device, &mut on_machine, b"register me");
    exchange(&mut on_machine, &mut on_device, b"consent");
}

#[test]
fn a_confirmation_without_the_secret_is_rejected_and_the_ticket_stays_usable() {
    let rng = &mut TestRng::new(3);
    let (device, machine, intruder) = (identity(rng), identity(rng), identity(rng));
    let mut machine_side = MachinePairing::new(&machine, PairingSecret([1; 32]));
    // The intruder knows the machine's public key but not the secret.
    let (_, init) =
        DevicePairing::start(&intruder, &ticket(&machine.public(), [3; 32]), rng).expect("start");
    let response = machine_side.respond(&init, rng).expect("respond");
    let connection = packet::decode(&response).expect("decode").connection;
    // Without message 2's keys it can only forge a confirmation.
    let forged = Packet {
        connection,
        body: Body::PairingConfirm(Sealed {
            counter: 0,
            message: &[0u8; 112],
        }),
    }
    .encode()
    .expect("encode");
    assert_eq!(
        machine_side.confirm(&forged).err(),
        Some(PairingError::ConfirmRejected)
    );
    // Forged, it changes nothing: the intruder's request stays pending until a newer one.
    assert_eq!(
        machine_side.confirm(&forged).err(),
        Some(PairingError::ConfirmRejected)
    );

    // The real device still pairs with the same ticket.
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), [1; 32]), rng).expect("start");
    let response = machine_side.respond(&init, rng).expect("respond");
    let (_, confirm) = device_side.finish(&response).expect("finish");
    let channel = machine_side.confirm(&confirm).expect("confirm");
    assert_eq!(*channel.peer(), device.public());
    // One time only.
    assert!(machine_side.is_used());
    assert_eq!(
        machine_side.respond(&init, rng).err(),
        Some(PairingError::AlreadyUsed)
    );
    assert_eq!(
        machine_side.confirm(&confirm).err(),
        Some(PairingError::AlreadyUsed)
    );
}

#[test]
fn pairing_with_the_wrong_machine_noise_key_fails() {
    let rng = &mut TestRng::new(4);
    let (device, machine, other) = (identity(rng), identity(rng), identity(rng));
    let mut machine_side = MachinePairing::new(&machine, PairingSecret([1; 32]));
    // A ticket naming the right fingerprint but another Noise key.
    let mut bad = ticket(&machine.public(), [1; 32]);
    bad.machine_noise = other.public().noise;
    let (_, init) = DevicePairing::start(&device, &bad, rng).expect("start");
    assert_eq!(
        machine_side.respond(&init, rng).err(),
        Some(PairingError::RequestRejected)
    );

    // And a machine that does hold that other Noise key still fails the fingerprint.
    let impostor = mix(&machine, &other);
    let mut impostor_side = MachinePairing::new(&impostor, PairingSecret([1; 32]));
    let (mut device_side, init) = DevicePairing::start(&device, &bad, rng).expect("start");
    let response = impostor_side.respond(&init, rng).expect("respond");
    assert!(matches!(
        device_side.finish(&response),
        Err(PairingError::FingerprintMismatch { .. })
    ));
}

#[test]
fn a_machine_whose_signing_key_does_not_match_the_fingerprint_fails() {
    let rng = &mut TestRng::new(5);
    let (device, machine, thief) = (identity(rng), identity(rng), identity(rng));
    // Holds the machine's Noise key (and the secret) but its own signing key.
    let impostor = mix(&thief, &machine);
    let mut impostor_side = MachinePairing::new(&impostor, PairingSecret([1; 32]));
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), [1; 32]), rng).expect("start");
    let response = impostor_side.respond(&init, rng).expect("respond");
    let expected = machine.public().fingerprint();
    let found = impostor.public().fingerprint();
    assert_eq!(
        device_side.finish(&response).err(),
        Some(PairingError::FingerprintMismatch { expected, found })
    );
}

#[test]
fn a_proof_that_does_not_verify_fails_on_either_side() {
    let rng = &mut TestRng::new(6);
    let (device, machine) = (identity(rng), identity(rng));
    let secret = [1u8; 32];

    let mut machine_side = MachinePairing::new(&machine, PairingSecret(secret));
    machine_side.corrupt_proof = true;
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), secret), rng).expect("start");
    let response = machine_side.respond(&init, rng).expect("respond");
    assert_eq!(
        device_side.finish(&response).err(),
        Some(PairingError::BadProof)
    );

    let mut machine_side = MachinePairing::new(&machine, PairingSecret(secret));
    let (mut device_side, init) =
        DevicePairing::start(&device, &ticket(&machine.public(), secret), rng).expect("start");
    device_side.corrupt_proof = true;
    let response = machine_side.respond(&init, rng).expect("respond");
    let (_, confirm) = device_side.finish(&response).expect("finish");
    assert_eq!(
        machine_side.confirm(&confirm).err(),
        Some(PairingError::BadProof)
    );
    assert!(!machine_side.is_used());
}

#[test]
fn pairing_ignores_packets_of_other_attempts_and_kinds() {
    let rng = &mut TestRng::new(7);
    let (device, machine) = (identity(rng), identity(rng));
    let secret = [1u8; 32];
    let mut machine_side = MachinePairing::new(&machine, PairingSecret(secret));
    let (mut first, first_init) =
        DevicePairing::start(&device, &ticket(&machine.public(), secret), rng).expect("start");
    let first_response = machine_side.respond(&first_init, rng).expect("respond");
    // The device retried; the late answer to the first attempt is ignored by the second.
    let (mut second, second_init) =
        DevicePairing::start(&device, &ticket(&machine.public(), secret), rng).expect("start");
    assert!(matches!(
        second.finish(&first_response),
        Err(PairingError::Stale { .. })
    ));
    assert_eq!(
        second.finish(&[9, 9]).err(),
        Some(PairingError::Packet(PacketError::UnknownKind(9)))
    );
    let second_response = machine_side.respond(&second_init, rng).expect("respond");
    assert_eq!(
        machine_side.respond(&second_response, rng).err(),
        Some(PairingError::UnexpectedKind(Kind::PairingResponse))
    );
    let (_, confirm) = second
        .finish(&second_response)
        .expect("second attempt still works");
    // The first attempt's confirmation would be stale for the machine now.
    let (_, first_confirm) = first
        .finish(&first_response)
        .expect("first finishes on its own");
    assert!(matches!(
        machine_side.confirm(&first_confirm),
        Err(PairingError::Stale { .. })
    ));
    assert!(machine_side.confirm(&confirm).is_ok());
}

// ---- Sessions ----

#[test]
fn a_session_connects_paired_keys() {
    let rng = &mut TestRng::new(10);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    assert_eq!(*on_device.peer(), machine.public());
    assert_eq!(*on_machine.peer(), device.public());
    assert_eq!(on_device.handshake_hash(), on_machine.handshake_hash());
    exchange(&mut on_device, &mut on_machine, b"hello");
    exchange(&mut on_machine, &mut on_device, b"welcome");
}

#[test]
fn the_responder_finds_the_device_among_its_paired_devices() {
    let rng = &mut TestRng::new(11);
    let machine = identity(rng);
    let devices: Vec<Identity> = (0..4).map(|_| identity(rng)).collect();
    let paired: Vec<PublicIdentity> = devices.iter().map(Identity::public).collect();
    let (mut initiator, init) =
        Initiator::start(&devices[2], &machine.public(), rng).expect("start");
    let (on_machine, response) = session::respond(&machine, &paired, &init, rng).expect("respond");
    assert_eq!(*on_machine.peer(), devices[2].public());
    initiator.finish(&response).expect("finish");
}

#[test]
fn an_unpaired_initiator_is_rejected() {
    let rng = &mut TestRng::new(12);
    let (device, machine, stranger) = (identity(rng), identity(rng), identity(rng));
    let (_, init) = Initiator::start(&stranger, &machine.public(), rng).expect("start");
    assert_eq!(
        session::respond(&machine, &[device.public()], &init, rng).err(),
        Some(SessionError::UnknownDevice)
    );
    assert_eq!(
        session::respond(&machine, &[], &init, rng).err(),
        Some(SessionError::UnknownDevice)
    );
    // A request meant for another machine is not accepted either.
    let other_machine = identity(rng);
    let (_, init) = Initiator::start(&device, &other_machine.public(), rng).expect("start");
    assert_eq!(
        session::respond(&machine, &[device.public()], &init, rng).err(),
        Some(SessionError::UnknownDevice)
    );
}

#[test]
fn an_impostor_machine_is_rejected_by_the_device() {
    let rng = &mut TestRng::new(13);
    let (device, machine, impostor) = (identity(rng), identity(rng), identity(rng));
    let (mut initiator, init) = Initiator::start(&device, &machine.public(), rng).expect("start");
    // The impostor cannot read the request, so the best it can do is answer a request made to it.
    let (_, other_init) = Initiator::start(&device, &impostor.public(), rng).expect("start");
    let (_, answer) =
        session::respond(&impostor, &[device.public()], &other_init, rng).expect("respond");
    // Relabel its answer with our connection id.
    let decoded = packet::decode(&answer).expect("decode");
    let relabeled = Packet {
        connection: initiator.connection_id(),
        body: decoded.body,
    }
    .encode()
    .expect("enc");
    assert_eq!(
        initiator.finish(&relabeled).err(),
        Some(SessionError::ResponseRejected)
    );
    // It changes nothing: the attempt still waits, and the real answer opens the channel.
    let mut damaged = relabeled.clone();
    damaged[20] ^= 1;
    assert_eq!(
        initiator.finish(&damaged).err(),
        Some(SessionError::ResponseRejected)
    );
    let (mut on_machine, response) =
        session::respond(&machine, &[device.public()], &init, rng).expect("respond");
    let mut on_device = initiator.finish(&response).expect("the real answer");
    exchange(&mut on_device, &mut on_machine, b"hello");
    assert_eq!(initiator.finish(&response).err(), Some(SessionError::Ended));
}

#[test]
fn a_session_ignores_stale_and_foreign_packets() {
    let rng = &mut TestRng::new(14);
    let (device, machine) = (identity(rng), identity(rng));
    let (_, old_init) = Initiator::start(&device, &machine.public(), rng).expect("start");
    let (_, old_response) =
        session::respond(&machine, &[device.public()], &old_init, rng).expect("respond");
    let (mut initiator, init) = Initiator::start(&device, &machine.public(), rng).expect("start");
    assert!(matches!(
        initiator.finish(&old_response),
        Err(SessionError::Stale { .. })
    ));
    assert_eq!(
        initiator.finish(&init).err(),
        Some(SessionError::UnexpectedKind(Kind::SessionInit))
    );
    assert!(matches!(
        initiator.finish(&[]),
        Err(SessionError::Packet(PacketError::Empty))
    ));
    assert_eq!(
        session::respond(&machine, &[device.public()], &old_response, rng).err(),
        Some(SessionError::UnexpectedKind(Kind::SessionResponse))
    );
    let (_, response) =
        session::respond(&machine, &[device.public()], &init, rng).expect("respond");
    initiator.finish(&response).expect("still works");
}

// ---- Channel ----

#[test]
fn both_directions_many_messages() {
    let rng = &mut TestRng::new(20);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    for round in 0..500u32 {
        let message = round.to_be_bytes().repeat(round as usize % 40);
        exchange(&mut on_device, &mut on_machine, &message);
        if round % 3 == 0 {
            exchange(&mut on_machine, &mut on_device, &message);
        }
    }
}

#[test]
fn max_size_messages_pass_and_larger_ones_are_refused() {
    let rng = &mut TestRng::new(21);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let biggest = vec![0x5a; MAX_APP_MESSAGE_LEN];
    let packet = on_device.encrypt(&biggest).expect("max size");
    assert_eq!(packet.len(), MAX_PACKET_LEN);
    assert_eq!(on_machine.decrypt(&packet).expect("decrypt"), biggest);
    let too_big = vec![0; MAX_APP_MESSAGE_LEN + 1];
    assert_eq!(
        on_device.encrypt(&too_big),
        Err(ChannelError::TooLarge {
            len: MAX_APP_MESSAGE_LEN + 1,
            max: MAX_APP_MESSAGE_LEN
        })
    );
    assert!(
        !on_device.is_poisoned(),
        "refusing to send is not a channel fault"
    );
    exchange(&mut on_device, &mut on_machine, b"");
    exchange(&mut on_machine, &mut on_device, &biggest);
}

fn assert_poisoned(channel: &mut Channel, cause: ChannelError, next: &[u8]) {
    assert!(cause.poisons());
    assert!(channel.is_poisoned());
    assert_eq!(channel.failure(), Some(cause));
    assert_eq!(channel.decrypt(next), Err(ChannelError::Poisoned));
    assert_eq!(channel.encrypt(b"x"), Err(ChannelError::Poisoned));
}

/// `refused` was dropped and changed nothing: `channel` is not poisoned and takes the next
/// message from `peer` as if `refused` had never come.
fn assert_dropped(peer: &mut Channel, channel: &mut Channel, refused: ChannelError) {
    assert!(!refused.poisons(), "{refused:?}");
    assert!(!channel.is_poisoned(), "{refused:?} poisoned the channel");
    assert_eq!(channel.failure(), None);
    exchange(peer, channel, b"still fine");
    exchange(channel, peer, b"both ways");
}

#[test]
fn a_replayed_message_is_dropped_and_the_channel_goes_on() {
    let rng = &mut TestRng::new(22);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let first = on_device.encrypt(b"one").expect("encrypt");
    on_machine.decrypt(&first).expect("decrypt");
    let error = ChannelError::Replay {
        expected: 1,
        received: 0,
    };
    assert_eq!(on_machine.decrypt(&first), Err(error));
    assert_dropped(&mut on_device, &mut on_machine, error);
}

#[test]
fn an_authentic_message_after_a_hole_poisons() {
    let rng = &mut TestRng::new(23);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let first = on_device.encrypt(b"one").expect("encrypt");
    let second = on_device.encrypt(b"two").expect("encrypt");
    let error = ChannelError::Gap {
        expected: 0,
        received: 1,
    };
    assert_eq!(on_machine.decrypt(&second), Err(error));
    assert_poisoned(&mut on_machine, error, &first);
}

#[test]
fn a_truncated_message_is_dropped_and_the_channel_goes_on() {
    let rng = &mut TestRng::new(24);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let packet = on_device
        .encrypt(b"a message that gets cut")
        .expect("encrypt");
    let error = ChannelError::Tampered { counter: 0 };
    assert_eq!(on_machine.decrypt(&packet[..packet.len() - 1]), Err(error));
    assert_eq!(
        on_machine.decrypt(&packet).expect("the whole one"),
        b"a message that gets cut"
    );
    assert_dropped(&mut on_device, &mut on_machine, error);

    // Cut below the tag: not even a packet.
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let packet = on_device.encrypt(b"abc").expect("encrypt");
    let error = ChannelError::Packet(PacketError::TooShort {
        kind: Kind::Transport,
        len: 20,
        min: 33,
    });
    assert_eq!(on_machine.decrypt(&packet[..20]), Err(error));
    assert_eq!(on_machine.decrypt(&packet).expect("the whole one"), b"abc");
    assert_dropped(&mut on_device, &mut on_machine, error);
}

#[test]
fn a_tampered_message_is_dropped_and_the_channel_goes_on() {
    let rng = &mut TestRng::new(25);
    let (device, machine) = (identity(rng), identity(rng));
    for position in [17, 20, 40] {
        let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
        let packet = on_device
            .encrypt(b"approve: rm -rf build")
            .expect("encrypt");
        let mut tampered = packet.clone();
        tampered[position] ^= 0x80;
        let error = ChannelError::Tampered { counter: 0 };
        assert_eq!(on_machine.decrypt(&tampered), Err(error));
        assert_eq!(
            on_machine.decrypt(&packet).expect("the real one"),
            b"approve: rm -rf build"
        );
        assert_dropped(&mut on_device, &mut on_machine, error);
    }
    // A changed counter names another nonce, so the packet does not authenticate either.
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    let packet = on_device.encrypt(b"one").expect("encrypt");
    let mut tampered = packet.clone();
    tampered[16] ^= 1;
    let error = ChannelError::Tampered { counter: 1 };
    assert_eq!(on_machine.decrypt(&tampered), Err(error));
    assert_eq!(on_machine.decrypt(&packet).expect("the real one"), b"one");
    assert_dropped(&mut on_device, &mut on_machine, error);
}

#[test]
fn forged_packets_at_any_counter_change_nothing() {
    let rng = &mut TestRng::new(29);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    exchange(&mut on_device, &mut on_machine, b"zero");
    exchange(&mut on_device, &mut on_machine, b"one");
    for counter in [0, 1, 2, 3, 1 << 40, u64::MAX - 1, u64::MAX] {
        for len in [AEAD_TAG_LEN, 100] {
            let message = vec![0xa5; len];
            let forged = Packet {
                connection: on_machine.connection_id(),
                body: Body::Transport(Sealed {
                    counter,
                    message: &message,
                }),
            }
            .encode()
            .expect("encode");
            let error = on_machine.decrypt(&forged).expect_err("forged");
            assert!(!error.poisons(), "counter {counter}: {error:?}");
            assert!(!on_machine.is_poisoned());
        }
    }
    assert_dropped(
        &mut on_device,
        &mut on_machine,
        ChannelError::Tampered { counter: 2 },
    );
}

#[test]
fn stale_and_foreign_packets_are_dropped_without_poisoning() {
    let rng = &mut TestRng::new(26);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut old_device, _old_machine) = connect(&device, &machine, rng);
    let late = old_device
        .encrypt(b"sent just before the reconnect")
        .expect("encrypt");
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    assert_eq!(
        on_machine.decrypt(&late),
        Err(ChannelError::Stale {
            expected: on_machine.connection_id(),
            received: old_device.connection_id(),
        })
    );
    let misrouted = Packet {
        connection: on_machine.connection_id(),
        body: Body::SessionInit(&[0; 48]),
    }
    .encode()
    .expect("encode");
    assert_eq!(
        on_machine.decrypt(&misrouted),
        Err(ChannelError::UnexpectedKind(Kind::SessionInit))
    );
    assert!(!on_machine.is_poisoned());
    exchange(&mut on_device, &mut on_machine, b"still fine");
}

#[test]
fn two_connections_never_share_keys() {
    let rng = &mut TestRng::new(27);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut first_device, _) = connect(&device, &machine, rng);
    let (mut second_device, mut second_machine) = connect(&device, &machine, rng);
    assert_ne!(
        first_device.handshake_hash(),
        second_device.handshake_hash()
    );
    assert_ne!(first_device.connection_id(), second_device.connection_id());
    let one = first_device.encrypt(b"same plaintext").expect("encrypt");
    let two = second_device.encrypt(b"same plaintext").expect("encrypt");
    // Same counter (0), same plaintext, different keys.
    assert_ne!(one[17..], two[17..]);
    // Connection 1's ciphertext, relabeled as connection 2's, does not decrypt there.
    let decoded = packet::decode(&one).expect("decode");
    let relabeled = Packet {
        connection: second_machine.connection_id(),
        body: decoded.body,
    }
    .encode()
    .expect("encode");
    assert_eq!(
        second_machine.decrypt(&relabeled),
        Err(ChannelError::Tampered { counter: 0 })
    );

    // Pairing twice gives different keys too.
    let (a, _) = pair(&device, &machine, rng);
    let (b, _) = pair(&device, &machine, rng);
    assert_ne!(a.handshake_hash(), b.handshake_hash());
}

#[test]
fn counter_exhaustion_is_an_error() {
    let rng = &mut TestRng::new(28);
    let (device, machine) = (identity(rng), identity(rng));
    let (mut on_device, mut on_machine) = connect(&device, &machine, rng);
    on_device.set_counters(u64::MAX - 1, 0);
    on_machine.set_counters(0, u64::MAX - 1);
    exchange(&mut on_device, &mut on_machine, b"the last one");
    assert_eq!(on_device.encrypt(b"one more"), Err(ChannelError::Exhausted));
    assert_poisoned(&mut on_device, ChannelError::Exhausted, &[]);
    // A forged packet with the reserved counter is refused by the receiver too (and dropped:
    // the sender never uses it, so it cannot be authentic).
    let forged = Packet {
        connection: on_machine.connection_id(),
        body: Body::Transport(Sealed {
            counter: u64::MAX,
            message: &[0; 16],
        }),
    }
    .encode()
    .expect("encode");
    assert_eq!(
        on_machine.decrypt(&forged),
        Err(ChannelError::Tampered { counter: u64::MAX })
    );
    assert!(!on_machine.is_poisoned());
}

#[test]
fn errors_read_well() {
    let stale = ChannelError::Stale {
        expected: ConnectionId([1; 8]),
        received: ConnectionId([2; 8]),
    };
    assert!(!stale.poisons());
    assert!(alloc::format!("{stale}").contains("0202020202020202"));
    assert!(alloc::format!("{}", ChannelError::Poisoned).contains("re-establish the channel"));
    assert!(alloc::format!("{}", PairingError::AlreadyUsed).contains("already used"));
    assert!(alloc::format!("{}", SessionError::UnknownDevice).contains("not from a paired device"));
}
