//! The device and machine protocol cores against each other, with the relay played by the test:
//! pairing from a ticket to the registry acknowledgement, then secure sessions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod samples;

use muxagent_proto::app::{Ack, DeviceMessage, Hello, ListSessions, MachineMessage, SessionList};
use muxagent_proto::device::{self, MachineLink, Received};
use muxagent_proto::frame::{Frame, PairSend, RegistryEntry};
use muxagent_proto::identity::Identity;
use muxagent_proto::limits::{MAX_CHANNELS_PER_DEVICE, RELAY_MAX_CONNECTIONS_PER_DEVICE};
use muxagent_proto::machine::{self, Incoming, Peers};
use muxagent_proto::peer::PeerError;
use muxagent_proto::ticket::{PairingSecret, Ticket};

/// A deterministic CSPRNG for tests (ChaCha20 keystream of a counter would do; splitmix is
/// enough here because only uniqueness matters, not secrecy).
struct TestRng(u64);

impl rand_core::TryRng for TestRng {
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
impl rand_core::TryCryptoRng for TestRng {}

const NOW: u64 = 1_800_000_000;

fn ticket(machine: &Identity) -> Ticket {
    Ticket {
        relay_url: "http://127.0.0.1:8080".try_into().expect("short"),
        pairing_id: samples::PAIRING,
        machine: machine.public().fingerprint(),
        machine_noise: machine.public().noise,
        secret: PairingSecret([0x42; 32]),
        hostname: samples::hostname("pi"),
        expires_at: NOW + 300,
    }
}

fn pair_payload(frame: Frame) -> Vec<u8> {
    match frame {
        Frame::PairSend(PairSend { payload, .. }) => payload,
        other => panic!("expected a PairSend, got {other:?}"),
    }
}

fn send_payload(frame: Frame) -> Vec<u8> {
    match frame {
        Frame::Send(send) => send.payload,
        other => panic!("expected a Send, got {other:?}"),
    }
}

#[test]
fn pairing_runs_from_ticket_to_registry_ack() {
    let mut rng = TestRng(1);
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let ticket = ticket(&machine);
    let device_fp = device.public().fingerprint();

    let (mut device_flow, init) =
        device::Pairing::start(&device, ticket.clone(), 7, &mut rng).expect("start");
    let mut machine_flow = machine::Pairing::new(
        &machine,
        ticket.pairing_id,
        PairingSecret(ticket.secret.0),
        samples::hostname("pi"),
    );

    let machine::PairingStep::Send(response) = machine_flow
        .on_pair_recv(&machine, device_fp, &pair_payload(init), &mut rng)
        .expect("respond")
    else {
        panic!("machine must answer the init");
    };
    let device::PairingStep::Send(confirm) = device_flow
        .on_pair_recv(&device, &pair_payload(response), NOW)
        .expect("finish")
    else {
        panic!("device must confirm");
    };
    let machine::PairingStep::Send(consent) = machine_flow
        .on_pair_recv(&machine, device_fp, &pair_payload(confirm), &mut rng)
        .expect("confirm")
    else {
        panic!("machine must send its consent");
    };
    let device::PairingStep::Send(Frame::Registry(registry)) = device_flow
        .on_pair_recv(&device, &pair_payload(consent), NOW)
        .expect("consent")
    else {
        panic!("device must register the machine");
    };
    assert_eq!(registry.request, 7);
    let entry = registry
        .entry
        .verify()
        .expect("the relay accepts the entry");
    assert!(matches!(
        entry,
        RegistryEntry::RegisterMachine { machine: m, pairing_id, .. }
            if m == machine.public() && pairing_id == ticket.pairing_id
    ));

    // An acknowledgement for another request changes nothing.
    assert_eq!(
        device_flow.on_registry_ack(8),
        Ok(device::PairingStep::Ignored)
    );
    let device::PairingStep::Paired(complete, paired) =
        device_flow.on_registry_ack(7).expect("ack")
    else {
        panic!("device must finish");
    };
    assert_eq!(paired.identity, machine.public());
    assert_eq!(paired.hostname.as_str(), "pi");
    assert_eq!(
        machine_flow.on_pair_recv(&machine, device_fp, &pair_payload(complete), &mut rng),
        Ok(machine::PairingStep::Paired(device.public()))
    );
}

#[test]
fn a_wrong_secret_fails_pairing_at_the_device() {
    let mut rng = TestRng(2);
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let ticket = ticket(&machine);
    let (mut device_flow, init) =
        device::Pairing::start(&device, ticket.clone(), 1, &mut rng).expect("start");
    let mut machine_flow = machine::Pairing::new(
        &machine,
        ticket.pairing_id,
        PairingSecret([0x43; 32]),
        samples::hostname("pi"),
    );
    let step = machine_flow.on_pair_recv(
        &machine,
        device.public().fingerprint(),
        &pair_payload(init),
        &mut rng,
    );
    // IKpsk2: the machine cannot tell a wrong PSK from msg 1; the device sees it in msg 2.
    let machine::PairingStep::Send(response) = step.expect("respond") else {
        panic!("machine answers");
    };
    assert!(matches!(
        device_flow.on_pair_recv(&device, &pair_payload(response), NOW),
        Err(PeerError::Pairing(_))
    ));
}

/// Device and machine with an open channel; returns both ends.
fn connect(rng: &mut TestRng) -> (Identity, MachineLink, Identity, Peers) {
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let mut link = MachineLink::new(machine.public());
    let mut peers = Peers::new();
    let init = send_payload(link.connect(&device, rng).expect("connect"));
    let paired = [device.public()];
    let Incoming::Reply(reply) = peers
        .receive(&machine, &paired, device.public().fingerprint(), &init, rng)
        .expect("respond")
    else {
        panic!("machine answers the handshake");
    };
    assert_eq!(link.receive(&send_payload(reply)), Ok(Received::Opened));
    assert!(link.is_open());
    (device, link, machine, peers)
}

#[test]
fn sessions_carry_messages_both_ways() {
    let mut rng = TestRng(3);
    let (device, mut link, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let paired = [device.public()];

    let hello = DeviceMessage::Hello(Hello { cursors: vec![] });
    let bytes = send_payload(link.send(&hello).expect("send"));
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &bytes, &mut rng),
        Ok(Incoming::Message(hello))
    );
    let list = MachineMessage::SessionList(SessionList {
        request: None,
        hostname: samples::hostname("pi"),
        sessions: vec![samples::session_info()],
    });
    let connection = peers.connection(&device_fp).expect("connected");
    let bytes = send_payload(peers.send(device_fp, connection, &list).expect("send"));
    assert_eq!(link.receive(&bytes), Ok(Received::Message(list)));
}

#[test]
fn an_unpaired_device_gets_no_channel() {
    let mut rng = TestRng(4);
    let stranger = samples::identity(9);
    let machine = samples::identity(2);
    let mut link = MachineLink::new(machine.public());
    let init = send_payload(link.connect(&stranger, &mut rng).expect("connect"));
    let mut peers = Peers::new();
    let paired = [samples::identity(1).public()];
    let result = peers.receive(
        &machine,
        &paired,
        stranger.public().fingerprint(),
        &init,
        &mut rng,
    );
    assert!(matches!(result, Err(PeerError::Session(_))), "{result:?}");
    assert_eq!(peers.connected().count(), 0);
}

#[test]
fn a_replayed_handshake_does_not_cut_the_working_channel() {
    let mut rng = TestRng(5);
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let device_fp = device.public().fingerprint();
    let paired = [device.public()];
    let mut link = MachineLink::new(machine.public());
    let mut peers = Peers::new();
    let init = send_payload(link.connect(&device, &mut rng).expect("connect"));
    let Incoming::Reply(reply) = peers
        .receive(&machine, &paired, device_fp, &init, &mut rng)
        .expect("respond")
    else {
        panic!("reply");
    };
    link.receive(&send_payload(reply)).expect("open");
    let first = send_payload(
        link.send(&ListSessions { request: 1 }.into())
            .expect("send"),
    );
    peers
        .receive(&machine, &paired, device_fp, &first, &mut rng)
        .expect("message");

    // The relay replays the old handshake twice: the machine answers, but the device's channel
    // keeps working.
    for _ in 0..2 {
        let replay = peers.receive(&machine, &paired, device_fp, &init, &mut rng);
        assert!(matches!(replay, Ok(Incoming::Reply(_))));
    }
    let second = send_payload(
        link.send(&ListSessions { request: 2 }.into())
            .expect("send"),
    );
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &second, &mut rng),
        Ok(Incoming::Message(ListSessions { request: 2 }.into()))
    );
    let ack = MachineMessage::Ack(Ack {
        request: 2,
        session: None,
    });
    let working = peers.connection(&device_fp).expect("connected");
    let bytes = send_payload(
        peers
            .send(device_fp, working, &ack)
            .expect("send on the working channel"),
    );
    assert_eq!(link.receive(&bytes), Ok(Received::Message(ack)));
}

#[test]
fn a_reconnect_replaces_the_channel_and_old_packets_are_stale() {
    let mut rng = TestRng(6);
    let (device, mut link, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let paired = [device.public()];
    let old = send_payload(
        link.send(&ListSessions { request: 1 }.into())
            .expect("send"),
    );

    let init = send_payload(link.connect(&device, &mut rng).expect("reconnect"));
    let Incoming::Reply(reply) = peers
        .receive(&machine, &paired, device_fp, &init, &mut rng)
        .expect("respond")
    else {
        panic!("reply");
    };
    link.receive(&send_payload(reply)).expect("open");
    let new = send_payload(
        link.send(&ListSessions { request: 2 }.into())
            .expect("send"),
    );
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &new, &mut rng),
        Ok(Incoming::Message(ListSessions { request: 2 }.into()))
    );
    // The relay says the old connection ended: a late packet of it finds no channel. (Until
    // then it is a message of the old connection, and what answers it goes there, stale to
    // the link, which moved on.)
    let old_connection = peers
        .connections(&device_fp)
        .find(|connection| Some(*connection) != peers.connection(&device_fp))
        .expect("the old channel");
    peers.close(&device_fp, &[old_connection]);
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &old, &mut rng),
        Ok(Incoming::Stale)
    );
}

#[test]
fn messages_for_an_old_connection_never_reach_the_new_one() {
    let mut rng = TestRng(8);
    let (device, mut link, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let paired = [device.public()];
    let hello = send_payload(link.send(&Hello { cursors: vec![] }.into()).expect("send"));
    peers
        .receive(&machine, &paired, device_fp, &hello, &mut rng)
        .expect("hello");
    let old = peers.connection(&device_fp).expect("connected");
    let event = MachineMessage::Ack(Ack {
        request: 1,
        session: None,
    });

    // The device reconnects. Until it speaks on the new connection, the old one stays the
    // device's: what was meant for it goes there (and is stale to the device).
    let init = send_payload(link.connect(&device, &mut rng).expect("reconnect"));
    let Incoming::Reply(reply) = peers
        .receive(&machine, &paired, device_fp, &init, &mut rng)
        .expect("respond")
    else {
        panic!("reply");
    };
    link.receive(&send_payload(reply)).expect("open");
    assert_eq!(peers.connection(&device_fp), Some(old));
    let early = send_payload(peers.send(device_fp, old, &event).expect("old channel"));
    assert_eq!(link.receive(&early), Ok(Received::Stale));

    // Once it speaks there, the new connection is the one answers go to. The machine cannot
    // tell a reconnect from a second tab, so the old channel stays until the relay says its
    // connection ended; what is sent on it never reaches the new connection.
    let list = send_payload(
        link.send(&ListSessions { request: 2 }.into())
            .expect("send"),
    );
    peers
        .receive(&machine, &paired, device_fp, &list, &mut rng)
        .expect("message");
    let new = peers.connection(&device_fp).expect("connected");
    assert_ne!(new, old);
    let late = send_payload(peers.send(device_fp, old, &event).expect("old channel"));
    assert_eq!(link.receive(&late), Ok(Received::Stale));
    peers.close(&device_fp, &[old]);
    assert_eq!(
        peers.send(device_fp, old, &event),
        Err(PeerError::NotConnected)
    );
    let bytes = send_payload(peers.send(device_fp, new, &event).expect("new channel"));
    assert_eq!(link.receive(&bytes), Ok(Received::Message(event)));
}

/// Open one more connection of `device` (another tab) and return its link.
fn open_another(
    device: &Identity,
    machine: &Identity,
    peers: &mut Peers,
    rng: &mut TestRng,
) -> MachineLink {
    let mut link = MachineLink::new(machine.public());
    let init = send_payload(link.connect(device, rng).expect("connect"));
    let paired = [device.public()];
    let Incoming::Reply(reply) = peers
        .receive(machine, &paired, device.public().fingerprint(), &init, rng)
        .expect("respond")
    else {
        panic!("machine answers the handshake");
    };
    assert_eq!(link.receive(&send_payload(reply)), Ok(Received::Opened));
    link
}

/// `link` says `message`; returns the connection the machine now answers on.
fn speak(
    link: &mut MachineLink,
    device: &Identity,
    machine: &Identity,
    peers: &mut Peers,
    message: DeviceMessage,
    rng: &mut TestRng,
) -> muxagent_proto::noise::ConnectionId {
    let device_fp = device.public().fingerprint();
    let bytes = send_payload(link.send(&message).expect("send"));
    assert_eq!(
        peers.receive(machine, &[device.public()], device_fp, &bytes, rng),
        Ok(Incoming::Message(message))
    );
    peers.connection(&device_fp).expect("connected")
}

#[test]
fn every_connection_of_a_device_keeps_its_own_channel() {
    let mut rng = TestRng(10);
    let (device, first, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let mut links = vec![first];
    for _ in 1..RELAY_MAX_CONNECTIONS_PER_DEVICE {
        links.push(open_another(&device, &machine, &mut peers, &mut rng));
    }
    // Each tab says hello; each answer goes to the tab that asked, and only there.
    let mut connections = Vec::new();
    for index in 0..links.len() {
        let request = index as u32;
        let connection = speak(
            &mut links[index],
            &device,
            &machine,
            &mut peers,
            ListSessions { request }.into(),
            &mut rng,
        );
        connections.push(connection);
        let answer = MachineMessage::Ack(Ack {
            request,
            session: None,
        });
        let bytes = send_payload(peers.send(device_fp, connection, &answer).expect("send"));
        // What the relay fans out to every tab: only the asker reads it.
        for (other, other_link) in links.iter_mut().enumerate() {
            let expected = if other == index {
                Received::Message(answer.clone())
            } else {
                Received::Stale
            };
            assert_eq!(other_link.receive(&bytes), Ok(expected), "tab {other}");
        }
    }
    // Every channel still works: a live event for each tab, in any order.
    for (index, connection) in connections.iter().enumerate().rev() {
        let event = MachineMessage::Ack(Ack {
            request: 100 + index as u32,
            session: None,
        });
        let bytes = send_payload(peers.send(device_fp, *connection, &event).expect("send"));
        assert_eq!(links[index].receive(&bytes), Ok(Received::Message(event)));
    }
    // A tab closes: its channel goes, the others stay.
    peers.close(&device_fp, &[connections[1]]);
    assert!(!peers.is_open(&device_fp, connections[1]));
    assert_eq!(peers.connections(&device_fp).count(), connections.len() - 1);
    // The device goes offline: everything goes.
    peers.forget(&device_fp);
    assert_eq!(peers.connected().count(), 0);
}

#[test]
fn channels_per_device_are_bounded_and_working_ones_go_last() {
    let mut rng = TestRng(11);
    let (device, mut first, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let working = speak(
        &mut first,
        &device,
        &machine,
        &mut peers,
        Hello { cursors: vec![] }.into(),
        &mut rng,
    );
    // Many handshakes that never carry a message (abandoned, or replayed by the relay with
    // fresh ids it cannot make): the count stays bounded and the working channel stays.
    for _ in 0..3 * MAX_CHANNELS_PER_DEVICE {
        open_another(&device, &machine, &mut peers, &mut rng);
        assert!(peers.connections(&device_fp).count() <= MAX_CHANNELS_PER_DEVICE);
        assert!(peers.is_open(&device_fp, working));
    }
    // Working channels past the cap: the one spoken on least recently goes first.
    let mut tabs = Vec::new();
    for request in 0..MAX_CHANNELS_PER_DEVICE as u32 {
        let mut link = open_another(&device, &machine, &mut peers, &mut rng);
        let connection = speak(
            &mut link,
            &device,
            &machine,
            &mut peers,
            ListSessions { request }.into(),
            &mut rng,
        );
        tabs.push((link, connection));
    }
    assert_eq!(
        peers.connections(&device_fp).count(),
        MAX_CHANNELS_PER_DEVICE
    );
    assert!(!peers.is_open(&device_fp, working));
    for (_, connection) in &tabs {
        assert!(peers.is_open(&device_fp, *connection));
    }
}

#[test]
fn a_ticket_for_another_machine_key_is_refused_at_once() {
    let mut rng = TestRng(7);
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let mut ticket = ticket(&machine);
    ticket.machine_noise = samples::identity(3).public().noise;
    let (mut device_flow, init) =
        device::Pairing::start(&device, ticket.clone(), 1, &mut rng).expect("start");
    let mut machine_flow = machine::Pairing::new(
        &machine,
        ticket.pairing_id,
        PairingSecret(ticket.secret.0),
        samples::hostname("pi"),
    );
    let machine::PairingStep::Send(refusal) = machine_flow
        .on_pair_recv(
            &machine,
            device.public().fingerprint(),
            &pair_payload(init),
            &mut rng,
        )
        .expect("the machine answers, with a refusal")
    else {
        panic!("machine answers");
    };
    assert_eq!(
        device_flow.on_pair_recv(&device, &pair_payload(refusal), NOW),
        Err(PeerError::Refused)
    );
}

/// Every way of spoiling `packet` that an injector without the keys has: flipped bits, a cut,
/// a replay of an earlier one, made-up bytes under the connection's id, and junk.
fn forgeries(packet: &[u8], earlier: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for position in [0, 1, 9, 16, 17, packet.len() - 1] {
        let mut flipped = packet.to_vec();
        flipped[position] ^= 0x20;
        out.push(flipped);
    }
    out.push(packet[..packet.len() - 1].to_vec());
    out.push(earlier.to_vec());
    let mut made_up = packet.to_vec();
    made_up[9..17].copy_from_slice(&7u64.to_be_bytes());
    made_up[17..].fill(0x5a);
    out.push(made_up);
    out.push(vec![6; 3]);
    out.push(Vec::new());
    out
}

#[test]
fn forged_packets_cut_no_channel_on_either_side() {
    let mut rng = TestRng(20);
    let (device, mut link, machine, mut peers) = connect(&mut rng);
    let device_fp = device.public().fingerprint();
    let paired = [device.public()];
    let list = |request| DeviceMessage::ListSessions(ListSessions { request });

    // Machine side: forgeries of the device's next message change nothing.
    let earlier = send_payload(link.send(&list(1)).expect("send"));
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &earlier, &mut rng),
        Ok(Incoming::Message(list(1)))
    );
    let next = send_payload(link.send(&list(2)).expect("send"));
    for forged in forgeries(&next, &earlier) {
        let result = peers.receive(&machine, &paired, device_fp, &forged, &mut rng);
        match result {
            Ok(Incoming::Stale) => {}
            Err(error) => assert!(!error.ends_channel(), "{error:?}"),
            other => panic!("a forgery was taken: {other:?}"),
        }
        assert_eq!(peers.connected().count(), 1);
    }
    assert_eq!(
        peers.receive(&machine, &paired, device_fp, &next, &mut rng),
        Ok(Incoming::Message(list(2)))
    );

    // Device side: forgeries of the machine's next message are dropped as stale, and counted.
    let answer = |request| {
        MachineMessage::Ack(Ack {
            request,
            session: None,
        })
    };
    let connection = peers.connection(&device_fp).expect("connected");
    let earlier = send_payload(peers.send(device_fp, connection, &answer(1)).expect("send"));
    assert_eq!(link.receive(&earlier), Ok(Received::Message(answer(1))));
    let next = send_payload(peers.send(device_fp, connection, &answer(2)).expect("send"));
    let forged = forgeries(&next, &earlier);
    for bytes in &forged {
        assert_eq!(link.receive(bytes), Ok(Received::Stale));
        assert!(link.is_open());
    }
    assert!(
        link.dropped() >= forged.len() as u64 - 2,
        "{}",
        link.dropped()
    );
    assert_eq!(link.receive(&next), Ok(Received::Message(answer(2))));
}

#[test]
fn a_forged_answer_does_not_end_the_devices_handshake() {
    let mut rng = TestRng(21);
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let mut link = MachineLink::new(machine.public());
    let init = send_payload(link.connect(&device, &mut rng).expect("connect"));
    let mut peers = Peers::new();
    let Incoming::Reply(reply) = peers
        .receive(
            &machine,
            &[device.public()],
            device.public().fingerprint(),
            &init,
            &mut rng,
        )
        .expect("respond")
    else {
        panic!("machine answers the handshake");
    };
    let reply = send_payload(reply);
    for position in [0, 9, 20, reply.len() - 1] {
        let mut forged = reply.clone();
        forged[position] ^= 1;
        assert_eq!(
            link.receive(&forged),
            Ok(Received::Stale),
            "byte {position}"
        );
    }
    assert_eq!(link.receive(&reply), Ok(Received::Opened));
    assert!(link.is_open());
}
