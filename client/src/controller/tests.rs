//! The controller against a relay and machines played by the test: the machines are the real
//! machine-side protocol core ([`muxagent_proto::machine`]), the relay is a few lines here.
//! Everything runs in memory on a fake clock.

use muxagent_proto::app::{
    AppError, AppErrorCode, EventKind, ListRuntimes, ReplayComplete, ReplayMore, SendPrompt,
    SessionStatus, Usage,
};
use muxagent_proto::frame::{
    Hostname, LoginOk, PairRecv, PairingId, Presence, Recv, RegistryAck, Restarting, ServerHello,
};
use muxagent_proto::identity::SECRET_BYTES_LEN;
use muxagent_proto::limits::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};
use muxagent_proto::machine::{self, Incoming, Peers};
use muxagent_proto::ticket::PairingSecret;

use super::*;
use crate::limits::CACHED_EVENTS_PER_SESSION;

const RELAY: &str = "https://relay.example";
const START: u64 = 1_800_000_000_000;

/// A deterministic generator: only uniqueness matters in these tests, not secrecy.
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

fn identity(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; SECRET_BYTES_LEN])
}

fn hostname(name: &str) -> Hostname {
    Hostname::try_from(name).unwrap()
}

/// A machine as the test plays it: its key and its channels to devices.
struct FakeMachine {
    identity: Identity,
    name: &'static str,
    peers: Peers,
}

impl FakeMachine {
    fn fingerprint(&self) -> Fingerprint {
        self.identity.public().fingerprint()
    }
}

struct Harness {
    device: Controller,
    device_public: PublicIdentity,
    machines: Vec<FakeMachine>,
    rng: TestRng,
    now: u64,
    /// Notes seen, in order.
    notes: Vec<Note>,
    /// Frames the device sent that the harness did not route (to the relay itself).
    to_relay: Vec<Frame>,
    /// Messages each machine received, in order.
    inbox: Vec<(Fingerprint, DeviceMessage)>,
    /// What followed the hello of the last [`Harness::open`].
    after_hello: Vec<(Fingerprint, DeviceMessage)>,
    connects: usize,
    closes: usize,
}

impl Harness {
    /// A device (seed 1) paired with machines of the given names (seeds 2, 3, …).
    fn new(names: &[&'static str], resync_events: Option<u64>) -> Self {
        let device = identity(1);
        let device_public = device.public();
        let machines: Vec<FakeMachine> = names
            .iter()
            .enumerate()
            .map(|(index, name)| FakeMachine {
                identity: identity(index as u8 + 2),
                name,
                peers: Peers::new(),
            })
            .collect();
        let mut book = Book::default();
        for machine in &machines {
            let record = book::Machine::new(&machine.identity.public(), machine.name, RELAY, 1);
            book.add(record).unwrap();
        }
        let config = Config {
            relay: RELAY.into(),
            resync_events,
        };
        Harness {
            device: Controller::new(device, &book, config),
            device_public,
            machines,
            rng: TestRng(7),
            now: START,
            notes: Vec::new(),
            to_relay: Vec::new(),
            inbox: Vec::new(),
            after_hello: Vec::new(),
            connects: 0,
            closes: 0,
        }
    }

    fn machine(&self, index: usize) -> Fingerprint {
        self.machines[index].fingerprint()
    }

    /// Route everything the device wants done: handshakes and messages to the machines
    /// (handshake answers come straight back), the rest to `to_relay`.
    fn pump(&mut self) {
        while let Some(output) = self.device.poll_output() {
            match output {
                Output::Connect => self.connects += 1,
                Output::Close => self.closes += 1,
                Output::Note(note) => self.notes.push(note),
                Output::Send(bytes) => {
                    let Ok(Decoded::Known(frame)) = Frame::decode(&bytes) else {
                        panic!("the device sent an undecodable frame");
                    };
                    match frame {
                        Frame::Send(send) => self.route_to_machine(send.to, &send.payload),
                        other => self.to_relay.push(other),
                    }
                }
            }
        }
    }

    fn route_to_machine(&mut self, to: Fingerprint, payload: &[u8]) {
        let device = self.device_public;
        let Some(machine) = self.machines.iter_mut().find(|m| m.fingerprint() == to) else {
            panic!("sent to a machine the test does not know");
        };
        let from = machine.fingerprint();
        match machine.peers.receive(
            &machine.identity,
            [&device],
            device.fingerprint(),
            payload,
            &mut self.rng,
        ) {
            Ok(Incoming::Reply(Frame::Send(reply))) => {
                let frame = Frame::Recv(Recv {
                    from,
                    payload: reply.payload,
                });
                self.deliver(frame);
            }
            Ok(Incoming::Message(message)) => self.inbox.push((from, message)),
            other => panic!("the machine could not take the device's packet: {other:?}"),
        }
    }

    /// Give the device a frame from the relay, then route what it does.
    fn deliver(&mut self, frame: Frame) {
        self.device
            .received(self.now, &frame.encode(), &mut self.rng);
        self.pump();
    }

    /// A message from machine `index` over its channel.
    fn machine_says(&mut self, index: usize, message: MachineMessage) {
        let device = self.device_public.fingerprint();
        let machine = &mut self.machines[index];
        let from = machine.fingerprint();
        let connection = machine.peers.connection(&device).expect("a channel");
        let Frame::Send(send) = machine.peers.send(device, connection, &message).unwrap() else {
            panic!("machines send Send frames");
        };
        self.deliver(Frame::Recv(Recv {
            from,
            payload: send.payload,
        }));
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.device.tick(self.now, &mut self.rng);
        self.pump();
    }

    fn login(&mut self) {
        self.device.tick(self.now, &mut self.rng);
        self.pump();
        assert!(self.connects > 0, "the device asks to connect");
        self.device.opened(self.now);
        let challenge = [0x5a; 32];
        self.deliver(Frame::ServerHello(ServerHello {
            min_protocol: 1,
            max_protocol: 1,
            challenge,
        }));
        let Some(Frame::Login(login)) = self.to_relay.pop() else {
            panic!("the device logs in after the hello");
        };
        assert_eq!(login.role, Role::Device);
        assert_eq!(login.identity, self.device_public);
        assert_eq!(login.verify(&challenge), Ok(()));
        self.deliver(Frame::LoginOk(LoginOk {
            protocol: 1,
            account: None,
        }));
        assert_eq!(self.connection(), Some(Connection::Online));
    }

    fn presence(&mut self, index: usize, online: bool) {
        let machine = self.machine(index);
        let name = self.machines[index].name;
        self.deliver(Frame::Presence(Presence {
            machine,
            hostname: hostname(name),
            online,
        }));
    }

    /// Log in, bring machine `index` online, and answer the session list with `sessions`:
    /// returns the cursors of the device's hello.
    fn open(&mut self, index: usize, sessions: Vec<SessionInfo>) -> Vec<Cursor> {
        self.presence(index, true);
        let machine = self.machine(index);
        assert_eq!(self.device.channel(&machine), Channel::Syncing);
        let Some((_, DeviceMessage::ListSessions(list))) = self.inbox.pop() else {
            panic!("the device asks for the session list first");
        };
        let name = self.machines[index].name;
        self.machine_says(
            index,
            MachineMessage::SessionList(SessionList {
                request: Some(list.request),
                hostname: hostname(name),
                sessions,
            }),
        );
        // The hello, then what follows every first hello (foreground, push keys).
        let at = self
            .inbox
            .iter()
            .rposition(|(from, message)| {
                *from == machine && matches!(message, DeviceMessage::Hello(_))
            })
            .expect("the device says hello after the list");
        let mut after = self.inbox.split_off(at);
        let Some((_, DeviceMessage::Hello(hello))) = (!after.is_empty()).then(|| after.remove(0))
        else {
            unreachable!()
        };
        self.after_hello = after;
        hello.cursors
    }

    fn connection(&self) -> Option<Connection> {
        self.notes.iter().rev().find_map(|note| match note {
            Note::Connection(connection) => Some(connection.clone()),
            _ => None,
        })
    }

    fn answers(&mut self) -> Vec<(u32, Result<Answer, ClientError>)> {
        let mut answers = Vec::new();
        self.notes.retain(|note| match note {
            Note::Answer { request, result } => {
                answers.push((*request, result.clone()));
                false
            }
            _ => true,
        });
        answers
    }

    fn events(&mut self) -> Vec<(u64, bool)> {
        let mut events = Vec::new();
        self.notes.retain(|note| match note {
            Note::Event { event, older, .. } => {
                events.push((event.seq, *older));
                false
            }
            _ => true,
        });
        events
    }

    fn send_request(&mut self, index: usize) -> u32 {
        let machine = self.machine(index);
        let request = self
            .device
            .request(self.now, &machine, |request| {
                SendPrompt {
                    request,
                    session: SESSION,
                    text: "hi".into(),
                }
                .into()
            })
            .unwrap();
        self.pump();
        request
    }
}

const SESSION: SessionId = SessionId([0x5e; 16]);

fn info(id: SessionId, last_seq: u64) -> SessionInfo {
    SessionInfo {
        id,
        runtime: "claude".try_into().unwrap(),
        cwd: "/w".into(),
        title: "t".into(),
        status: SessionStatus::Running,
        created_at: 1,
        updated_at: 2,
        usage: Usage::default(),
        pending_approvals: 0,
        last_seq,
    }
}

fn event(session: SessionId, seq: u64) -> MachineMessage {
    MachineMessage::Event(Event {
        session,
        seq,
        at: seq,
        kind: EventKind::Text {
            text: format!("event {seq}"),
        },
    })
}

fn cursor(session: SessionId, last_seq: u64) -> Cursor {
    Cursor { session, last_seq }
}

// ---- relay login and reconnecting ----

#[test]
fn logs_in_with_the_signed_challenge() {
    let mut h = Harness::new(&["alpha"], None);
    assert_eq!(h.device.poll_timeout(), Some(0), "connects at once");
    h.login();
    assert!(h.device.is_online());
    assert_eq!(h.closes, 0);
    assert_eq!(h.device.poll_timeout(), None, "nothing waits on time");
}

#[test]
fn a_relay_that_does_not_answer_is_retried_with_growing_jittered_delays() {
    let mut h = Harness::new(&[], None);
    h.device.tick(h.now, &mut h.rng);
    h.pump();
    assert_eq!(h.connection(), Some(Connection::Connecting));
    let mut delays = Vec::new();
    for attempt in 1..=8u32 {
        // The transport never opens: the connect deadline fails the attempt.
        let deadline = h.device.poll_timeout().unwrap();
        assert_eq!(deadline, h.now + CONNECT_TIMEOUT_MS);
        h.advance(CONNECT_TIMEOUT_MS);
        assert_eq!(h.closes as u32, attempt, "the failed transport is closed");
        let retry = h.device.poll_timeout().unwrap();
        let delay = retry - h.now;
        let base = (RECONNECT_MIN_MS << (attempt - 1)).min(RECONNECT_MAX_MS);
        assert!(
            delay >= base / 2 && delay <= (base * 3 / 2).min(RECONNECT_MAX_MS),
            "attempt {attempt}: {delay} ms"
        );
        match h.connection() {
            Some(Connection::Reconnecting { retry_at, detail }) => {
                assert!(attempt < OFFLINE_AFTER_FAILURES);
                assert_eq!(retry_at, Some(retry));
                assert_eq!(detail, "the relay does not answer");
            }
            Some(Connection::Offline { retry_at, .. }) => {
                assert!(attempt >= OFFLINE_AFTER_FAILURES);
                assert_eq!(retry_at, Some(retry), "offline still retries");
            }
            other => panic!("{other:?}"),
        }
        delays.push(delay);
        h.advance(delay);
        assert_eq!(h.connects as u32, attempt + 1, "tries again when due");
    }
    assert!(delays[7] > delays[0] * 4, "{delays:?}");
    // A successful login resets the count.
    h.device.opened(h.now);
    h.deliver(Frame::ServerHello(ServerHello {
        min_protocol: 1,
        max_protocol: 1,
        challenge: [0; 32],
    }));
    h.deliver(Frame::LoginOk(LoginOk {
        protocol: 1,
        account: None,
    }));
    assert_eq!(h.connection(), Some(Connection::Online));
    h.device.closed(h.now, &mut h.rng);
    h.pump();
    let delay = h.device.poll_timeout().unwrap() - h.now;
    assert!(delay <= RECONNECT_MIN_MS * 3 / 2, "{delay}");
    assert!(matches!(
        h.connection(),
        Some(Connection::Reconnecting { detail, .. }) if detail == "the connection to the relay was lost"
    ));
}

#[test]
fn a_refused_login_or_an_unknown_protocol_fails_the_attempt() {
    let mut h = Harness::new(&[], None);
    h.device.tick(h.now, &mut h.rng);
    h.pump();
    h.deliver(Frame::ServerHello(ServerHello {
        min_protocol: 7,
        max_protocol: 9,
        challenge: [0; 32],
    }));
    assert_eq!(h.closes, 1);
    assert!(matches!(
        h.connection(),
        Some(Connection::Offline { retry_at: None, detail }) if detail.contains("protocol 7–9")
    ));
    assert_eq!(
        h.device.poll_timeout(),
        None,
        "no point retrying: wait for wake"
    );
    h.device.wake(h.now);
    h.pump();
    assert_eq!(h.connects, 2);
    h.deliver(Frame::ServerHello(ServerHello {
        min_protocol: 1,
        max_protocol: 1,
        challenge: [0; 32],
    }));
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::LoginFailed,
        request: None,
        reason: "bad signature".try_into().unwrap(),
    }));
    assert_eq!(h.closes, 2);
    assert!(matches!(
        h.connection(),
        Some(Connection::Reconnecting { detail, .. }) if detail == "the relay refused the login: bad signature"
    ));
    // Garbage from the relay fails the attempt too.
    h.advance(RECONNECT_MAX_MS);
    // A known kind (the hello) whose body does not decode.
    h.device.received(h.now, &[1, 0xff, 0xff, 0xff], &mut h.rng);
    h.pump();
    assert_eq!(h.closes, 3);
}

#[test]
fn the_relays_restart_hint_sets_the_next_attempt() {
    let mut h = Harness::new(&[], None);
    h.login();
    h.deliver(Frame::Restarting(Restarting {
        reconnect_in_ms: 2_000,
        try_for_ms: 60_000,
    }));
    h.device.closed(h.now, &mut h.rng);
    h.pump();
    let delay = h.device.poll_timeout().unwrap() - h.now;
    assert!((2_000..=3_000).contains(&delay), "{delay}");
}

#[test]
fn another_window_taking_the_connection_is_not_fought() {
    let mut h = Harness::new(&[], None);
    h.login();
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::Displaced,
        request: None,
        reason: "newer login".try_into().unwrap(),
    }));
    assert_eq!(h.closes, 1);
    assert!(matches!(
        h.connection(),
        Some(Connection::Offline { retry_at: None, .. })
    ));
    h.advance(10 * RECONNECT_MAX_MS);
    assert_eq!(h.connects, 1, "only wake reconnects");
    h.device.wake(h.now);
    h.pump();
    assert_eq!(h.connects, 2);
}

// ---- machines: presence, handshake, resync ----

#[test]
fn presence_opens_a_channel_that_resyncs_page_by_page_and_goes_live() {
    let mut h = Harness::new(&["alpha", "beta"], None);
    h.login();
    let alpha = h.machine(0);
    let beta = h.machine(1);
    let other = SessionId([2; 16]);
    let newer = SessionId([3; 16]);
    h.device.hold(&alpha, SESSION, 1, 10, true);
    let cursors = h.open(0, vec![info(SESSION, 40), info(other, 5), info(newer, 3)]);
    assert_eq!(
        cursors,
        [cursor(SESSION, 10), cursor(other, 0), cursor(newer, 0)],
        "held sessions from where the device is, unknown ones from their start"
    );
    assert_eq!(h.device.channel(&beta), Channel::Closed, "beta is offline");
    for seq in 11..=26 {
        h.machine_says(0, event(SESSION, seq));
    }
    h.machine_says(
        0,
        MachineMessage::ReplayMore(ReplayMore {
            cursors: vec![cursor(SESSION, 26), cursor(other, 0), cursor(newer, 0)],
        }),
    );
    let Some((_, DeviceMessage::Hello(hello))) = h.inbox.pop() else {
        panic!("the device asks for the next page");
    };
    assert_eq!(
        hello.cursors,
        [cursor(SESSION, 26), cursor(other, 0), cursor(newer, 0)]
    );
    assert_eq!(h.device.channel(&alpha), Channel::Syncing);
    h.machine_says(
        0,
        MachineMessage::ReplayComplete(ReplayComplete {
            request: None,
            cursors: vec![cursor(SESSION, 40)],
        }),
    );
    assert_eq!(h.device.channel(&alpha), Channel::Live);
    let events = h.events();
    assert_eq!(
        events,
        (11..=26).map(|seq| (seq, false)).collect::<Vec<_>>()
    );
    assert!(h.notes.contains(&Note::Channel {
        machine: alpha,
        channel: Channel::Live
    }));
}

#[test]
fn a_replay_never_yields_an_event_twice() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![info(SESSION, 0)]);
    for seq in [1, 2, 3, 2, 1, 3, 4] {
        h.machine_says(0, event(SESSION, seq));
    }
    assert_eq!(h.events(), [(1, false), (2, false), (3, false), (4, false)]);
    // The relay drops; on the next connection the machine replays from an older cursor.
    h.device.closed(h.now, &mut h.rng);
    h.pump();
    assert_eq!(h.device.channel(&h.machine(0)), Channel::Closed);
    h.advance(RECONNECT_MAX_MS);
    h.machines[0].peers.clear();
    h.device.opened(h.now);
    h.deliver(Frame::ServerHello(ServerHello {
        min_protocol: 1,
        max_protocol: 1,
        challenge: [1; 32],
    }));
    h.deliver(Frame::LoginOk(LoginOk {
        protocol: 1,
        account: None,
    }));
    let cursors = h.open(0, vec![info(SESSION, 6)]);
    assert_eq!(
        cursors,
        [cursor(SESSION, 4)],
        "the hello names what it holds"
    );
    for seq in 1..=6 {
        h.machine_says(0, event(SESSION, seq));
    }
    assert_eq!(h.events(), [(5, false), (6, false)]);
}

#[test]
fn a_device_far_behind_resyncs_only_the_newest_events() {
    let window = CACHED_EVENTS_PER_SESSION;
    let mut h = Harness::new(&["alpha"], Some(window));
    h.login();
    let alpha = h.machine(0);
    let fresh = SessionId([9; 16]);
    let short = SessionId([8; 16]);
    h.device.hold(&alpha, SESSION, 1, 100, true);
    let cursors = h.open(
        0,
        vec![
            info(SESSION, 100 + window + 1),
            info(fresh, 5 * window),
            info(short, 10),
        ],
    );
    assert_eq!(
        cursors,
        [
            cursor(SESSION, 101),
            cursor(fresh, 4 * window),
            cursor(short, 0)
        ]
    );
    let resets: Vec<&Note> = h
        .notes
        .iter()
        .filter(|note| matches!(note, Note::Reset { .. }))
        .collect();
    assert_eq!(
        resets,
        [&Note::Reset {
            machine: alpha,
            session: SESSION
        }],
        "only a session the device held events of is reset"
    );
}

#[test]
fn a_machine_going_offline_closes_its_channel_and_fails_its_requests() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![]);
    let request = h.send_request(0);
    h.presence(0, false);
    assert_eq!(h.device.channel(&h.machine(0)), Channel::Closed);
    assert_eq!(
        h.answers(),
        [(
            request,
            Err(ClientError::Offline {
                hostname: "alpha".into()
            })
        )]
    );
    let machine = h.machine(0);
    let refused = h
        .device
        .request(h.now, &machine, |request| ListRuntimes { request }.into());
    assert_eq!(
        refused,
        Err(ClientError::Offline {
            hostname: "alpha".into()
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "alpha is offline (its daemon is not connected to the relay)"
    );
    // Back online: a fresh handshake.
    h.presence(0, true);
    assert_eq!(h.device.channel(&machine), Channel::Syncing);
}

#[test]
fn a_forged_packet_is_dropped_but_a_lost_one_breaks_the_channel_until_a_new_handshake() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![info(SESSION, 0)]);
    let machine = h.machine(0);
    let device = h.device_public.fingerprint();
    let seal = |h: &mut Harness, seq| {
        let peers = &mut h.machines[0].peers;
        let connection = peers.connection(&device).unwrap();
        let Ok(Frame::Send(send)) = peers.send(device, connection, &event(SESSION, seq)) else {
            panic!("encrypts");
        };
        send.payload
    };
    // A copy of the next packet, altered on the way: whoever can inject frames must not be
    // able to close the channel with one, so it is dropped and the real one still opens.
    let genuine = seal(&mut h, 1);
    let mut forged = genuine.clone();
    if let Some(last) = forged.last_mut() {
        *last ^= 1;
    }
    h.deliver(Frame::Recv(Recv {
        from: machine,
        payload: forged,
    }));
    let open = h.device.channel(&machine);
    assert!(matches!(open, Channel::Syncing | Channel::Live), "{open:?}");
    h.deliver(Frame::Recv(Recv {
        from: machine,
        payload: genuine,
    }));
    assert_eq!(h.events(), [(1, false)]);
    assert_eq!(h.device.channel(&machine), open);
    // A packet the machine sent that never arrived: the stream has a hole, so the channel is
    // closed and handshaken again after a backoff.
    let _lost = seal(&mut h, 2);
    let after = seal(&mut h, 3);
    h.deliver(Frame::Recv(Recv {
        from: machine,
        payload: after,
    }));
    assert_eq!(h.events(), []);
    assert_eq!(h.device.channel(&machine), Channel::Closed);
    let retry = h.device.poll_timeout().unwrap();
    assert!(retry > h.now && retry <= h.now + RECONNECT_MIN_MS * 3 / 2);
    h.machines[0].peers.clear();
    h.advance(retry - h.now);
    assert_eq!(h.device.channel(&machine), Channel::Syncing);
}

#[test]
fn a_handshake_the_machine_never_answers_times_out_and_is_retried() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let machine = h.machine(0);
    // The relay reports the machine online but the test drops the handshake on the floor.
    h.device.received(
        h.now,
        &Frame::Presence(Presence {
            machine,
            hostname: hostname("alpha"),
            online: true,
        })
        .encode(),
        &mut h.rng,
    );
    while h.device.poll_output().is_some() {}
    assert_eq!(h.device.channel(&machine), Channel::Handshaking);
    assert_eq!(h.device.poll_timeout(), Some(h.now + HANDSHAKE_TIMEOUT_MS));
    h.now += HANDSHAKE_TIMEOUT_MS;
    h.device.tick(h.now, &mut h.rng);
    while h.device.poll_output().is_some() {}
    assert_eq!(h.device.channel(&machine), Channel::Closed);
    let retry = h.device.poll_timeout().unwrap();
    h.advance(retry - h.now);
    assert_eq!(h.device.channel(&machine), Channel::Syncing);
}

// ---- requests ----

#[test]
fn requests_are_numbered_answered_by_their_machine_and_timed_out() {
    let mut h = Harness::new(&["alpha", "beta"], None);
    h.login();
    h.open(0, vec![]);
    h.open(1, vec![]);
    let first = h.send_request(0);
    let second = h.send_request(0);
    assert_ne!(first, second);
    let Some((to, DeviceMessage::SendPrompt(prompt))) = h.inbox.pop() else {
        panic!("the request reaches the machine");
    };
    assert_eq!((to, prompt.request), (h.machine(0), second));
    // beta cannot answer alpha's request.
    h.machine_says(
        1,
        MachineMessage::Ack(Ack {
            request: first,
            session: None,
        }),
    );
    assert_eq!(h.answers(), []);
    h.machine_says(
        0,
        MachineMessage::Error(AppError {
            request: Some(first),
            code: AppErrorCode::UnknownSession,
            message: "no session 5e5e5e5e".into(),
        }),
    );
    let answers = h.answers();
    assert_eq!(
        answers,
        [(
            first,
            Err(ClientError::Refused {
                hostname: "alpha".into(),
                code: AppErrorCode::UnknownSession,
                message: "no session 5e5e5e5e".into()
            })
        )]
    );
    assert_eq!(
        answers[0].1.clone().unwrap_err().to_string(),
        "alpha: no session 5e5e5e5e"
    );
    // A second answer to the same request is ignored.
    h.machine_says(
        0,
        MachineMessage::Ack(Ack {
            request: first,
            session: None,
        }),
    );
    assert_eq!(h.answers(), []);
    h.advance(REQUEST_TIMEOUT_MS);
    assert_eq!(
        h.answers(),
        [(
            second,
            Err(ClientError::Timeout {
                hostname: "alpha".into()
            })
        )]
    );
    let third = h.send_request(1);
    h.machine_says(
        1,
        MachineMessage::Ack(Ack {
            request: third,
            session: Some(SESSION),
        }),
    );
    assert_eq!(
        h.answers(),
        [(
            third,
            Ok(Answer::Ack(Ack {
                request: third,
                session: Some(SESSION)
            }))
        )]
    );
}

#[test]
fn a_request_asked_during_the_handshake_waits_for_the_channel() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let machine = h.machine(0);
    h.device.received(
        h.now,
        &Frame::Presence(Presence {
            machine,
            hostname: hostname("alpha"),
            online: true,
        })
        .encode(),
        &mut h.rng,
    );
    // Hold the handshake init back while the request is asked.
    let mut held = Vec::new();
    while let Some(output) = h.device.poll_output() {
        held.push(output);
    }
    let request = h
        .device
        .request(h.now, &machine, |request| ListRuntimes { request }.into())
        .unwrap();
    for output in held {
        if let Output::Send(bytes) = output
            && let Ok(Decoded::Known(Frame::Send(send))) = Frame::decode(&bytes)
        {
            h.route_to_machine(send.to, &send.payload);
        }
    }
    h.pump();
    let asked: Vec<&DeviceMessage> = h.inbox.iter().map(|(_, message)| message).collect();
    assert!(matches!(asked[0], DeviceMessage::ListSessions(_)));
    assert!(matches!(asked[1], DeviceMessage::ListRuntimes(r) if r.request == request));
}

#[test]
fn requests_need_a_login_and_a_paired_machine() {
    let mut h = Harness::new(&["alpha"], None);
    let alpha = h.machine(0);
    let build = |request| ListRuntimes { request }.into();
    assert_eq!(
        h.device.request(h.now, &alpha, build),
        Err(ClientError::NotConnected)
    );
    h.login();
    assert_eq!(
        h.device.request(h.now, &Fingerprint([0; 32]), build),
        Err(ClientError::UnknownMachine)
    );
}

#[test]
fn a_flood_of_requests_is_capped() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let machine = h.machine(0);
    h.device.received(
        h.now,
        &Frame::Presence(Presence {
            machine,
            hostname: hostname("alpha"),
            online: true,
        })
        .encode(),
        &mut h.rng,
    );
    while h.device.poll_output().is_some() {}
    // While handshaking, requests queue up to their cap.
    let build = |request| ListRuntimes { request }.into();
    for _ in 0..MAX_QUEUED_REQUESTS {
        h.device.request(h.now, &machine, build).unwrap();
    }
    assert_eq!(
        h.device.request(h.now, &machine, build),
        Err(ClientError::Busy)
    );
    // Open, requests in flight are capped in total.
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![]);
    let mut accepted = 0;
    while h.device.request(h.now, &machine, build).is_ok() {
        accepted += 1;
        assert!(accepted <= MAX_PENDING_REQUESTS);
    }
    assert_eq!(accepted, MAX_PENDING_REQUESTS);
}

#[test]
fn a_flood_of_sessions_from_a_machine_is_capped() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let machine = h.machine(0);
    let session = |index: u32| {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&index.to_be_bytes());
        SessionId(id)
    };
    // Fill the table through the cache (cheap), then let the machine name more sessions.
    for index in 0..MAX_SESSIONS_PER_MACHINE as u32 {
        h.device.hold(&machine, session(index), 1, 1, true);
    }
    let over = MAX_SESSIONS_PER_MACHINE as u32 + 10;
    h.device.hold(&machine, session(over), 1, 1, true);
    let listed: Vec<SessionInfo> = (over..over + 5).map(|i| info(session(i), 3)).collect();
    let cursors = h.open(0, listed);
    assert!(cursors.is_empty(), "no room to track more: {cursors:?}");
    for index in over..over + 5 {
        h.machine_says(0, event(session(index), 1));
    }
    h.machine_says(0, event(session(0), 2));
    assert_eq!(
        h.events(),
        [(2, false)],
        "only tracked sessions' events come through"
    );
    assert_eq!(
        h.device.peers[&machine].tracks.len(),
        MAX_SESSIONS_PER_MACHINE
    );
    // The next page's hello stays within what one hello may carry.
    let page: Vec<Cursor> = (0..MAX_CURSORS as u32 + 300)
        .map(|i| cursor(session(i), 1))
        .collect();
    h.machine_says(0, MachineMessage::ReplayMore(ReplayMore { cursors: page }));
    let Some((_, DeviceMessage::Hello(hello))) = h.inbox.pop() else {
        panic!("hello");
    };
    assert_eq!(hello.cursors.len(), MAX_CURSORS);
}

// ---- older events ----

#[test]
fn load_older_fetches_below_what_is_held_then_goes_back_to_live() {
    let mut h = Harness::new(&["alpha"], Some(CACHED_EVENTS_PER_SESSION));
    h.login();
    let alpha = h.machine(0);
    h.device.hold(&alpha, SESSION, 500, 600, false);
    h.open(0, vec![info(SESSION, 600)]);
    h.machine_says(
        0,
        MachineMessage::ReplayComplete(ReplayComplete {
            request: None,
            cursors: vec![cursor(SESSION, 600)],
        }),
    );
    let request = h
        .device
        .load_older(h.now, &alpha, SESSION)
        .unwrap()
        .unwrap();
    h.pump();
    assert_eq!(
        h.device.load_older(h.now, &alpha, SESSION),
        Ok(Some(request)),
        "one fetch at a time per session"
    );
    let Some((_, DeviceMessage::Replay(replay))) = h.inbox.pop() else {
        panic!("the device asks for a replay");
    };
    assert_eq!(replay.after_seq, 500 - OLDER_EVENTS_PER_LOAD - 1);
    // The machine pages: 16 events, then more.
    let after = replay.after_seq;
    for seq in after + 1..=after + 16 {
        h.machine_says(0, event(SESSION, seq));
    }
    // A live event arrives meanwhile.
    h.machine_says(0, event(SESSION, 601));
    h.machine_says(
        0,
        MachineMessage::ReplayMore(ReplayMore {
            cursors: vec![cursor(SESSION, after + 16)],
        }),
    );
    let Some((_, DeviceMessage::Hello(hello))) = h.inbox.pop() else {
        panic!("hello");
    };
    assert_eq!(hello.cursors, [cursor(SESSION, after + 16)], "go on paging");
    for seq in after + 17..=505 {
        h.machine_says(0, event(SESSION, seq));
    }
    h.machine_says(
        0,
        MachineMessage::ReplayMore(ReplayMore {
            cursors: vec![cursor(SESSION, 505)],
        }),
    );
    let Some((_, DeviceMessage::Hello(hello))) = h.inbox.pop() else {
        panic!("hello");
    };
    assert_eq!(
        hello.cursors,
        [cursor(SESSION, 601)],
        "back to the newest held"
    );
    let events = h.events();
    let older: Vec<u64> = events.iter().filter(|e| e.1).map(|e| e.0).collect();
    assert_eq!(older, (after + 1..500).collect::<Vec<_>>());
    assert_eq!(
        events.iter().filter(|e| !e.1).collect::<Vec<_>>(),
        [&(601, false)]
    );
    assert_eq!(h.answers(), [(request, Ok(Answer::Older { found: true }))]);
    // The next loads start below the new oldest, down to the log's start.
    for (after, until) in [(99, 300), (0, 100)] {
        let next = h
            .device
            .load_older(h.now, &alpha, SESSION)
            .unwrap()
            .unwrap();
        h.pump();
        let Some((_, DeviceMessage::Replay(replay))) = h.inbox.pop() else {
            panic!("replay");
        };
        assert_eq!(replay.after_seq, after);
        for seq in after + 1..until {
            h.machine_says(0, event(SESSION, seq));
        }
        h.machine_says(
            0,
            MachineMessage::ReplayComplete(ReplayComplete {
                request: None,
                cursors: vec![cursor(SESSION, 601)],
            }),
        );
        assert_eq!(h.answers(), [(next, Ok(Answer::Older { found: true }))]);
        assert_eq!(h.events().len() as u64, until - after - 1);
    }
    assert_eq!(h.device.load_older(h.now, &alpha, SESSION), Ok(None));
}

#[test]
fn a_page_end_sent_before_the_machine_read_the_fetch_does_not_end_it() {
    let mut h = Harness::new(&["alpha"], Some(CACHED_EVENTS_PER_SESSION));
    h.login();
    let alpha = h.machine(0);
    h.device.hold(&alpha, SESSION, 500, 600, false);
    h.open(0, vec![info(SESSION, 600)]);
    let request = h
        .device
        .load_older(h.now, &alpha, SESSION)
        .unwrap()
        .unwrap();
    h.pump();
    let Some((_, DeviceMessage::Replay(replay))) = h.inbox.pop() else {
        panic!("the device asks for a replay");
    };
    let after = replay.after_seq;
    // The catch-up after the reload ends, in flight before the machine read the `Replay`.
    h.machine_says(
        0,
        MachineMessage::ReplayComplete(ReplayComplete {
            request: None,
            cursors: vec![cursor(SESSION, 600)],
        }),
    );
    assert_eq!(h.answers(), [], "the fetch goes on");
    h.machine_says(
        0,
        MachineMessage::ReplayMore(ReplayMore {
            cursors: vec![cursor(SESSION, 600)],
        }),
    );
    let Some((_, DeviceMessage::Hello(hello))) = h.inbox.pop() else {
        panic!("hello");
    };
    assert_eq!(
        hello.cursors,
        [cursor(SESSION, after)],
        "asks again from the fetch's start"
    );
    assert_eq!(h.answers(), []);
    // Now the machine replays from the fetch's start, past what the device holds.
    for seq in after + 1..=600 {
        h.machine_says(0, event(SESSION, seq));
    }
    h.machine_says(
        0,
        MachineMessage::ReplayComplete(ReplayComplete {
            request: None,
            cursors: vec![cursor(SESSION, 600)],
        }),
    );
    assert_eq!(h.answers(), [(request, Ok(Answer::Older { found: true }))]);
    let older: Vec<u64> = h.events().iter().filter(|e| e.1).map(|e| e.0).collect();
    assert_eq!(older, (after + 1..500).collect::<Vec<_>>());
    // And the next fetch starts below them.
    h.device
        .load_older(h.now, &alpha, SESSION)
        .unwrap()
        .unwrap();
    h.pump();
    let Some((_, DeviceMessage::Replay(replay))) = h.inbox.pop() else {
        panic!("replay");
    };
    assert_eq!(
        replay.after_seq,
        (after + 1).saturating_sub(OLDER_EVENTS_PER_LOAD + 1)
    );
}

#[test]
fn load_older_with_nothing_older_or_a_machine_that_forgot() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let alpha = h.machine(0);
    h.device.hold(&alpha, SESSION, 1, 5, false);
    let other = SessionId([4; 16]);
    h.device.hold(&alpha, other, 300, 400, false);
    h.open(0, vec![info(SESSION, 5), info(other, 400)]);
    assert_eq!(
        h.device.load_older(h.now, &alpha, SESSION),
        Ok(None),
        "seq 1 is held"
    );
    assert_eq!(
        h.device.load_older(h.now, &alpha, SessionId([7; 16])),
        Ok(None)
    );
    // The machine's retention dropped everything below 300: the fetch finds nothing.
    let request = h.device.load_older(h.now, &alpha, other).unwrap().unwrap();
    h.pump();
    h.machine_says(0, event(other, 300));
    h.machine_says(
        0,
        MachineMessage::ReplayComplete(ReplayComplete {
            request: None,
            cursors: vec![cursor(other, 400)],
        }),
    );
    assert_eq!(h.answers(), [(request, Ok(Answer::Older { found: false }))]);
    assert_eq!(h.device.load_older(h.now, &alpha, other), Ok(None));
}

// ---- pairing ----

const PAIRING: PairingId = PairingId([0x9a; 16]);

struct PairingMachine {
    identity: Identity,
    flow: machine::Pairing,
}

fn ticket(machine: &Identity, relay: &str, expires_at: u64, secret: [u8; 32]) -> Ticket {
    Ticket {
        relay_url: relay.try_into().unwrap(),
        pairing_id: PAIRING,
        machine: machine.public().fingerprint(),
        machine_noise: machine.public().noise,
        secret: PairingSecret(secret),
        hostname: hostname("pi"),
        expires_at,
    }
}

impl Harness {
    /// Play the relay and the pending machine until the device stops sending; returns the
    /// device's registry request, if it made one.
    fn run_pairing(&mut self, machine: &mut PairingMachine) -> Option<frame::Registry> {
        let device = self.device_public.fingerprint();
        loop {
            let frame = self.to_relay.pop()?;
            match frame {
                Frame::PairSend(send) => {
                    let step = machine
                        .flow
                        .on_pair_recv(&machine.identity, device, &send.payload, &mut self.rng)
                        .unwrap();
                    if let machine::PairingStep::Send(Frame::PairSend(reply)) = step {
                        self.deliver(Frame::PairRecv(PairRecv {
                            pairing_id: reply.pairing_id,
                            from: machine.identity.public().fingerprint(),
                            payload: reply.payload,
                        }));
                    }
                }
                Frame::Registry(registry) => return Some(registry),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn pairing_machine(secret: [u8; 32]) -> PairingMachine {
    let identity = identity(40);
    let flow = machine::Pairing::new(&identity, PAIRING, PairingSecret(secret), hostname("pi"));
    PairingMachine { identity, flow }
}

#[test]
fn pairing_from_a_link_to_the_relays_acknowledgement() {
    let mut h = Harness::new(&[], None);
    let mut machine = pairing_machine([0x42; 32]);
    let link = ticket(&machine.identity, RELAY, START / 1000 + 300, [0x42; 32]).link();
    // Asked before the login: it waits for it.
    let request = h.device.pair(h.now, &link, &mut h.rng).unwrap();
    h.pump();
    assert!(h.notes.contains(&Note::Pairing {
        request,
        progress: PairingProgress::WaitingForRelay
    }));
    h.login();
    assert!(h.notes.contains(&Note::Pairing {
        request,
        progress: PairingProgress::Contacting
    }));
    let registry = h.run_pairing(&mut machine).expect("the device registers");
    assert!(h.notes.contains(&Note::Pairing {
        request,
        progress: PairingProgress::Registering
    }));
    let entry = registry.entry.verify().expect("the relay accepts it");
    assert!(matches!(
        entry,
        RegistryEntry::RegisterMachine { machine: m, pairing_id: PAIRING, .. }
            if m == machine.identity.public()
    ));
    assert_eq!(
        h.answers(),
        [],
        "nothing is kept before the relay acknowledges"
    );
    h.deliver(Frame::RegistryAck(RegistryAck {
        request: registry.request,
    }));
    let answers = h.answers();
    let [(answered, Ok(Answer::Paired(record)))] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert_eq!(*answered, request);
    assert_eq!(record.hostname, "pi");
    assert_eq!(record.relay, RELAY);
    assert_eq!(record.paired_at, START / 1000);
    assert_eq!(record.identity(), Some(machine.identity.public()));
    // The machine hears that it is paired.
    let Some(Frame::PairSend(complete)) = h.to_relay.pop() else {
        panic!("the device tells the machine");
    };
    assert_eq!(
        machine.flow.on_pair_recv(
            &machine.identity,
            h.device_public.fingerprint(),
            &complete.payload,
            &mut h.rng
        ),
        Ok(machine::PairingStep::Paired(h.device_public))
    );
    // Now a paired machine: its presence opens a channel.
    let fingerprint = machine.identity.public().fingerprint();
    h.machines.push(FakeMachine {
        identity: machine.identity,
        name: "pi",
        peers: Peers::new(),
    });
    h.deliver(Frame::Presence(Presence {
        machine: fingerprint,
        hostname: hostname("pi"),
        online: true,
    }));
    assert_eq!(h.device.channel(&fingerprint), Channel::Syncing);
}

#[test]
fn a_link_for_another_relay_or_expired_or_damaged_is_refused_at_once() {
    let mut h = Harness::new(&[], None);
    h.login();
    let machine = identity(40);
    let now_secs = START / 1000;
    let other = ticket(&machine, "https://other.example", now_secs + 300, [1; 32]).link();
    let error = h.device.pair(h.now, &other, &mut h.rng).unwrap_err();
    assert!(matches!(error, ClientError::OtherRelay { .. }));
    assert_eq!(
        error.to_string(),
        "this pairing link is for the relay at https://other.example, but this app uses https://relay.example; open the link on https://other.example"
    );
    // The same relay spelled differently is the same relay.
    let same = ticket(
        &machine,
        "https://RELAY.example:443/",
        now_secs + 300,
        [1; 32],
    )
    .link();
    assert!(h.device.pair(h.now, &same, &mut h.rng).is_ok());
    assert_eq!(
        h.device.pair(h.now, &same, &mut h.rng),
        Err(ClientError::PairingBusy)
    );
    let mut h = Harness::new(&[], None);
    h.login();
    let expired = ticket(&machine, RELAY, now_secs, [1; 32]).link();
    let error = h.device.pair(h.now, &expired, &mut h.rng).unwrap_err();
    assert!(matches!(
        error,
        ClientError::Ticket(TicketError::Expired { .. })
    ));
    let mut damaged = ticket(&machine, RELAY, now_secs + 300, [1; 32]).link();
    damaged.truncate(damaged.len() - 10);
    let error = h.device.pair(h.now, &damaged, &mut h.rng).unwrap_err();
    assert!(matches!(error, ClientError::Ticket(_)), "{error:?}");
    assert!(error.to_string().contains("copy the whole link"), "{error}");
    assert!(h.to_relay.is_empty(), "nothing was sent");
}

#[test]
fn a_tampered_secret_is_refused_by_the_machine() {
    let mut h = Harness::new(&[], None);
    h.login();
    let mut machine = pairing_machine([0x42; 32]);
    let link = ticket(&machine.identity, RELAY, START / 1000 + 300, [0x43; 32]).link();
    let request = h.device.pair(h.now, &link, &mut h.rng).unwrap();
    h.pump();
    assert_eq!(h.run_pairing(&mut machine), None);
    let answers = h.answers();
    let [(answered, Err(error @ ClientError::Pairing(_)))] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert_eq!(*answered, request);
    assert!(
        error.to_string().contains("the pairing secret is wrong"),
        "{error}"
    );
    // The next pairing may start.
    assert!(h.device.pair(h.now, &link, &mut h.rng).is_ok());
}

#[test]
fn a_used_or_claimed_link_and_a_silent_machine_fail_the_pairing() {
    let machine = identity(40);
    let link = ticket(&machine, RELAY, START / 1000 + 300, [1; 32]).link();
    for (code, expected) in [
        (ErrorCode::PairingUnknown, ClientError::PairingUnknown),
        (ErrorCode::PairingTaken, ClientError::PairingTaken),
    ] {
        let mut h = Harness::new(&[], None);
        h.login();
        let request = h.device.pair(h.now, &link, &mut h.rng).unwrap();
        h.pump();
        h.deliver(Frame::Error(frame::Error {
            code,
            request: None,
            reason: "no".try_into().unwrap(),
        }));
        assert_eq!(h.answers(), [(request, Err(expected))]);
    }
    let mut h = Harness::new(&[], None);
    h.login();
    let request = h.device.pair(h.now, &link, &mut h.rng).unwrap();
    h.pump();
    h.advance(PAIR_TIMEOUT_MS);
    let answers = h.answers();
    assert_eq!(
        answers,
        [(
            request,
            Err(ClientError::PairingTimeout {
                hostname: "pi".into()
            })
        )]
    );
    assert_eq!(
        answers[0].1.clone().unwrap_err().to_string(),
        "pi did not answer within 30 s; is its daemon running?"
    );
    // The relay refusing the registration fails it too.
    let mut h = Harness::new(&[], None);
    h.login();
    let mut pending = pairing_machine([0x42; 32]);
    let link = ticket(&pending.identity, RELAY, START / 1000 + 300, [0x42; 32]).link();
    let request = h.device.pair(h.now, &link, &mut h.rng).unwrap();
    h.pump();
    let registry = h.run_pairing(&mut pending).unwrap();
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::EntryRefused,
        request: Some(registry.request),
        reason: "the pairing id expired".try_into().unwrap(),
    }));
    assert_eq!(
        h.answers(),
        [(
            request,
            Err(ClientError::RelayRefused("the pairing id expired".into()))
        )]
    );
}

// ---- revocation ----

#[test]
fn revoking_tells_the_machine_then_the_relay_and_forgets_it() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![]);
    let alpha = h.machine(0);
    let request = h.device.revoke(h.now, &alpha).unwrap();
    h.pump();
    assert!(matches!(
        h.inbox.pop(),
        Some((_, DeviceMessage::ForgetDevice(_)))
    ));
    let Some(Frame::Registry(registry)) = h.to_relay.pop() else {
        panic!("the revocation goes to the relay");
    };
    assert_eq!(registry.request, request);
    assert_eq!(
        registry.entry.verify(),
        Ok(RegistryEntry::RevokeMachine {
            device: h.device_public,
            machine: alpha,
            at: START / 1000
        })
    );
    h.deliver(Frame::RegistryAck(RegistryAck { request }));
    assert_eq!(h.answers(), [(request, Ok(Answer::Revoked))]);
    assert!(h.notes.contains(&Note::Removed { machine: alpha }));
    assert_eq!(
        h.device
            .request(h.now, &alpha, |request| ListRuntimes { request }.into()),
        Err(ClientError::UnknownMachine)
    );
}

// ---- the account's devices ----

#[test]
fn the_devices_query_is_answered_by_the_relay_list() {
    let mut h = Harness::new(&["alpha"], None);
    assert_eq!(h.device.devices(h.now), Err(ClientError::NotConnected));
    h.login();
    let request = h.device.devices(h.now).unwrap();
    h.pump();
    assert_eq!(
        h.to_relay.pop(),
        Some(Frame::DevicesQuery(frame::DevicesQuery { request }))
    );
    // An answer to another request is not this one's.
    let list = |request| DeviceList {
        request,
        machines: vec![],
        devices: vec![],
    };
    h.deliver(Frame::DeviceList(list(request + 1)));
    assert!(h.answers().is_empty());
    h.deliver(Frame::DeviceList(list(request)));
    assert_eq!(h.answers(), [(request, Ok(Answer::Devices(list(request))))]);
}

#[test]
fn an_owner_revokes_a_device_or_makes_it_an_owner_and_a_refusal_is_said() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let other = Fingerprint([0xab; 32]);
    let revoke = h.device.revoke_device(h.now, &other).unwrap();
    h.pump();
    let Some(Frame::Registry(registry)) = h.to_relay.pop() else {
        panic!("the revocation goes to the relay");
    };
    assert_eq!(registry.request, revoke);
    assert_eq!(
        registry.entry.verify(),
        Ok(RegistryEntry::RevokeDevice {
            author: h.device_public,
            device: other,
            at: START / 1000
        })
    );
    h.deliver(Frame::RegistryAck(RegistryAck { request: revoke }));
    assert_eq!(h.answers(), [(revoke, Ok(Answer::Registered))]);
    assert!(h.device.is_online() && !h.device.is_revoked());

    let grant = h.device.grant_owner(h.now, &other).unwrap();
    h.pump();
    let Some(Frame::Registry(registry)) = h.to_relay.pop() else {
        panic!("the grant goes to the relay");
    };
    assert!(matches!(
        registry.entry.verify(),
        Ok(RegistryEntry::GrantOwner { device, .. }) if device == other
    ));
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::EntryRefused,
        request: Some(grant),
        reason: "only an owner may do that".try_into().unwrap(),
    }));
    assert_eq!(
        h.answers(),
        [(
            grant,
            Err(ClientError::RelayRefused(
                "only an owner may do that".into()
            ))
        )]
    );
    let late = h.device.grant_owner(h.now, &other).unwrap();
    h.advance(REQUEST_TIMEOUT_MS);
    assert_eq!(h.answers(), [(late, Err(ClientError::RelayTimeout))]);
}

#[test]
fn a_device_that_revokes_itself_stops_for_good() {
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    let me = h.device_public.fingerprint();
    let request = h.device.revoke_device(h.now, &me).unwrap();
    h.pump();
    h.deliver(Frame::RegistryAck(RegistryAck { request }));
    assert_eq!(h.answers(), [(request, Ok(Answer::Registered))]);
    assert!(h.device.is_revoked());
    assert!(matches!(h.connection(), Some(Connection::Revoked { .. })));
    let connects = h.connects;
    h.device.wake(h.now);
    h.advance(RECONNECT_MAX_MS * 10);
    assert_eq!(h.connects, connects, "no attempt after a revocation");
    assert_eq!(h.device.poll_timeout(), None);
}

#[test]
fn a_device_revoked_elsewhere_hears_why_and_stays_offline() {
    // Revoked while connected: the relay's error, then the close.
    let mut h = Harness::new(&["alpha"], None);
    h.login();
    h.open(0, vec![]);
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::Revoked,
        request: None,
        reason: "this device was revoked".try_into().unwrap(),
    }));
    assert_eq!(
        h.connection(),
        Some(Connection::Revoked {
            detail: "this device was revoked".into()
        })
    );
    assert!(!h.device.machine_online(&h.machine(0)));
    let connects = h.connects;
    h.advance(RECONNECT_MAX_MS * 10);
    assert_eq!(h.connects, connects);

    // Revoked while away: the relay refuses the login.
    let mut h = Harness::new(&["alpha"], None);
    h.device.tick(h.now, &mut h.rng);
    h.pump();
    h.device.opened(h.now);
    h.deliver(Frame::ServerHello(ServerHello {
        min_protocol: 1,
        max_protocol: 1,
        challenge: [1; 32],
    }));
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::Revoked,
        request: None,
        reason: "this key is revoked".try_into().unwrap(),
    }));
    assert_eq!(
        h.connection(),
        Some(Connection::Revoked {
            detail: "this key is revoked".into()
        })
    );
    assert!(h.device.is_revoked());
    assert_eq!(h.device.poll_timeout(), None);
}

#[test]
fn origins_compare_by_scheme_host_and_port() {
    assert_eq!(origin("https://a.example"), "https://a.example:443");
    assert_eq!(origin("https://A.example:443/x"), "https://a.example:443");
    assert_eq!(origin("wss://a.example/relay"), "https://a.example:443");
    assert_eq!(origin("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
    assert_ne!(origin("http://a.example"), origin("https://a.example"));
    assert_eq!(origin("http://[::1]"), "http://[::1]:80");
    assert_eq!(origin("http://[::1]:81"), "http://[::1]:81");
}

// ---- push notifications ----

fn keys(kinds: u8) -> PushKeys {
    let mut p256dh = vec![0x04];
    p256dh.extend([0x11; 64]);
    PushKeys {
        p256dh,
        auth: [0x22; 16],
        kinds: muxagent_proto::app::PushKinds(kinds),
    }
}

impl Harness {
    /// The push notes seen since the last call.
    fn pushes(&mut self) -> Vec<(Fingerprint, bool, Result<(), ClientError>)> {
        let mut pushes = Vec::new();
        self.notes.retain(|note| match note {
            Note::Push {
                machine,
                on,
                result,
            } => {
                pushes.push((*machine, *on, result.clone()));
                false
            }
            _ => true,
        });
        pushes
    }
}

#[test]
fn push_queries_and_subscriptions_are_answered_by_the_relay() {
    let mut h = Harness::new(&["alpha"], None);
    assert_eq!(h.device.push_query(h.now), Err(ClientError::NotConnected));
    h.login();
    let query = h.device.push_query(h.now).unwrap();
    h.pump();
    assert_eq!(
        h.to_relay.pop(),
        Some(Frame::PushQuery(PushQuery { request: query }))
    );
    let vapid = {
        let mut key = vec![0x04];
        key.extend([0x33; 64]);
        key
    };
    let state = |request, endpoint: Option<&str>| PushState {
        request,
        vapid_public_key: vapid.clone(),
        endpoint: endpoint.map(String::from),
    };
    // An answer to no request of this device is ignored.
    h.deliver(Frame::PushState(state(query + 100, None)));
    h.deliver(Frame::PushState(state(query, None)));
    assert_eq!(h.answers(), [(query, Ok(Answer::Push(state(query, None))))]);

    let endpoint = "https://push.example/send/abc";
    let subscribe = h
        .device
        .push_subscribe(h.now, Some(endpoint.into()))
        .unwrap();
    h.pump();
    assert_eq!(
        h.to_relay.pop(),
        Some(Frame::PushSubscribe(PushSubscribe {
            request: subscribe,
            endpoint: Some(endpoint.into())
        }))
    );
    h.deliver(Frame::PushState(state(subscribe, Some(endpoint))));
    assert_eq!(
        h.answers(),
        [(
            subscribe,
            Ok(Answer::Push(state(subscribe, Some(endpoint))))
        )]
    );

    // Refused by the relay's policy; then one it never answers.
    let refused = h
        .device
        .push_subscribe(h.now, Some("http://elsewhere.example/x".into()))
        .unwrap();
    h.deliver(Frame::Error(frame::Error {
        code: ErrorCode::NotAllowed,
        request: Some(refused),
        reason: "push endpoints must be https".try_into().unwrap(),
    }));
    assert_eq!(
        h.answers(),
        [(
            refused,
            Err(ClientError::RelayRefused(
                "push endpoints must be https".into()
            ))
        )]
    );
    let silent = h.device.push_subscribe(h.now, None).unwrap();
    h.advance(REQUEST_TIMEOUT_MS);
    assert_eq!(h.answers(), [(silent, Err(ClientError::RelayTimeout))]);

    // What the wire cannot carry is refused at once.
    let long = format!("https://push.example/{}", "a".repeat(2000));
    assert!(matches!(
        h.device.push_subscribe(h.now, Some(long)),
        Err(ClientError::Push(_))
    ));
    assert!(matches!(
        h.device.push_subscribe(h.now, Some("https://a b".into())),
        Err(ClientError::Push(_))
    ));

    // A query in flight when the connection drops fails.
    let lost = h.device.push_query(h.now).unwrap();
    h.device.closed(h.now, &mut h.rng);
    h.pump();
    assert_eq!(h.answers(), [(lost, Err(ClientError::NotConnected))]);
}

#[test]
fn foreground_is_told_to_every_open_channel_and_after_each_hello() {
    let mut h = Harness::new(&["alpha", "beta"], None);
    h.login();
    h.open(0, vec![]);
    let alpha = h.machine(0);
    assert!(
        matches!(&h.after_hello[..], [(m, DeviceMessage::SetForeground(SetForeground { visible: false }))] if *m == alpha),
        "{:?}",
        h.after_hello
    );
    h.device.set_foreground(h.now, true);
    h.pump();
    assert!(matches!(
        h.inbox.pop(),
        Some((m, DeviceMessage::SetForeground(SetForeground { visible: true }))) if m == alpha
    ));
    // Only a change is sent; beta, whose channel is closed, hears it after its hello.
    h.device.set_foreground(h.now, true);
    h.pump();
    assert!(h.inbox.is_empty());
    h.open(1, vec![]);
    let beta = h.machine(1);
    assert!(matches!(
        &h.after_hello[..],
        [(m, DeviceMessage::SetForeground(SetForeground { visible: true }))] if *m == beta
    ));
    h.device.set_foreground(h.now, false);
    h.pump();
    let told: Vec<Fingerprint> = h
        .inbox
        .drain(..)
        .filter_map(|(m, message)| {
            matches!(
                message,
                DeviceMessage::SetForeground(SetForeground { visible: false })
            )
            .then_some(m)
        })
        .collect();
    assert_eq!(told.len(), 2);
    assert!(told.contains(&alpha) && told.contains(&beta));
}

#[test]
fn push_keys_reach_each_machine_after_every_hello_and_a_removal_until_acknowledged() {
    let mut h = Harness::new(&["alpha", "beta"], None);
    let alpha = h.machine(0);
    let beta = h.machine(1);
    assert_eq!(
        h.device
            .set_push(h.now, &Fingerprint([9; 32]), Some(keys(1))),
        Err(ClientError::UnknownMachine)
    );
    let mut bad = keys(1);
    bad.p256dh.pop();
    assert!(matches!(
        h.device.set_push(h.now, &alpha, Some(bad)),
        Err(ClientError::Push(_))
    ));
    // Set before any channel is open: sent after the hello.
    h.device.set_push(h.now, &alpha, Some(keys(7))).unwrap();
    h.pump();
    assert!(h.to_relay.is_empty() && h.inbox.is_empty());
    h.login();
    h.open(0, vec![]);
    let request = match &h.after_hello[..] {
        [
            (_, DeviceMessage::SetForeground(_)),
            (m, DeviceMessage::SetPush(set)),
        ] if *m == alpha && set.push == Some(keys(7)) => set.request,
        other => panic!("foreground then the keys after the hello, not {other:?}"),
    };
    h.machine_says(
        0,
        MachineMessage::Ack(Ack {
            request,
            session: None,
        }),
    );
    assert_eq!(h.pushes(), [(alpha, true, Ok(()))]);
    assert_eq!(h.answers(), [], "push answers are notes of their own");

    // Changed while open: sent at once; a refusal says why.
    h.device.set_push(h.now, &alpha, Some(keys(1))).unwrap();
    h.pump();
    let Some((_, DeviceMessage::SetPush(set))) = h.inbox.pop() else {
        panic!("sent at once");
    };
    assert_eq!(set.push, Some(keys(1)));
    h.machine_says(
        0,
        MachineMessage::Error(AppError {
            request: Some(set.request),
            code: AppErrorCode::InvalidState,
            message: "this machine does not send push notifications yet".into(),
        }),
    );
    assert_eq!(
        h.pushes(),
        [(
            alpha,
            true,
            Err(ClientError::Refused {
                hostname: "alpha".into(),
                code: AppErrorCode::InvalidState,
                message: "this machine does not send push notifications yet".into()
            })
        )]
    );

    // The machine reconnects: it hears the keys again.
    h.presence(0, false);
    h.open(0, vec![]);
    assert!(matches!(
        &h.after_hello[..],
        [_, (_, DeviceMessage::SetPush(set))] if set.push == Some(keys(1))
    ));
    let request = match &h.after_hello[..] {
        [_, (_, DeviceMessage::SetPush(set))] => set.request,
        _ => unreachable!(),
    };
    h.machine_says(
        0,
        MachineMessage::Ack(Ack {
            request,
            session: None,
        }),
    );

    // A removal for a machine that is offline: sent after its hello, answered, then not again.
    h.device.set_push(h.now, &beta, None).unwrap();
    h.device.set_push(h.now, &alpha, None).unwrap();
    h.pump();
    let Some((_, DeviceMessage::SetPush(removal))) = h.inbox.pop() else {
        panic!("alpha is told at once");
    };
    assert_eq!(removal.push, None);
    h.pushes();
    h.open(1, vec![]);
    let request = match &h.after_hello[..] {
        [_, (m, DeviceMessage::SetPush(set))] if *m == beta && set.push.is_none() => set.request,
        other => panic!("the removal after beta's hello, not {other:?}"),
    };
    h.machine_says(
        1,
        MachineMessage::Ack(Ack {
            request,
            session: None,
        }),
    );
    assert_eq!(h.pushes(), [(beta, false, Ok(()))]);
    h.presence(1, false);
    h.open(1, vec![]);
    assert!(
        matches!(&h.after_hello[..], [(_, DeviceMessage::SetForeground(_))]),
        "an acknowledged removal is not sent again: {:?}",
        h.after_hello
    );

    // Alpha never answered its removal: it times out, and goes out again after the next hello.
    h.advance(REQUEST_TIMEOUT_MS);
    assert_eq!(
        h.pushes(),
        [(
            alpha,
            false,
            Err(ClientError::Timeout {
                hostname: "alpha".into()
            })
        )]
    );
    h.presence(0, false);
    h.open(0, vec![]);
    assert!(matches!(
        &h.after_hello[..],
        [_, (_, DeviceMessage::SetPush(set))] if set.push.is_none()
    ));
    // Going offline with it in flight says so.
    h.presence(0, false);
    assert_eq!(
        h.pushes(),
        [(
            alpha,
            false,
            Err(ClientError::Offline {
                hostname: "alpha".into()
            })
        )]
    );
}

#[test]
fn a_whole_input_is_fetched_page_by_page_from_its_machine_only() {
    use muxagent_proto::app::InputChunk;
    let mut h = Harness::new(&["alpha", "beta"], None);
    h.login();
    h.open(0, vec![]);
    h.open(1, vec![]);
    let alpha = h.machine(0);
    let request = h.device.fetch_input(h.now, &alpha, SESSION, 3).unwrap();
    h.pump();
    // Asking again while it runs is the same fetch.
    assert_eq!(h.device.fetch_input(h.now, &alpha, SESSION, 3), Ok(request));
    let ask = |h: &mut Harness| match h.inbox.pop() {
        Some((to, DeviceMessage::FetchInput(fetch))) => (to, fetch.offset),
        other => panic!("a page is asked: {other:?}"),
    };
    assert_eq!(ask(&mut h), (alpha, 0));
    let whole = "añb".as_bytes();
    let page = |offset: usize, end: usize| {
        MachineMessage::InputChunk(InputChunk {
            request,
            session: SESSION,
            approval: 3,
            offset: offset as u64,
            total: whole.len() as u64,
            bytes: whole[offset..end].to_vec(),
        })
    };
    // beta cannot answer alpha's fetch.
    h.machine_says(1, page(0, 2));
    assert!(h.inbox.is_empty());
    h.machine_says(0, page(0, 2));
    assert!(h.notes.contains(&Note::InputProgress {
        request,
        have: 2,
        total: 4
    }));
    assert_eq!(ask(&mut h), (alpha, 2));
    h.machine_says(0, page(2, 4));
    assert_eq!(
        h.answers(),
        [(
            request,
            Ok(Answer::Input {
                session: SESSION,
                approval: 3,
                input: "añb".into()
            })
        )]
    );
    // A page that does not continue where the last ended ends the fetch.
    let again = h.device.fetch_input(h.now, &alpha, SESSION, 3).unwrap();
    h.pump();
    let _ = ask(&mut h);
    h.machine_says(
        0,
        MachineMessage::InputChunk(InputChunk {
            request: again,
            session: SESSION,
            approval: 3,
            offset: 1,
            total: 4,
            bytes: vec![b'x'],
        }),
    );
    assert!(matches!(
        h.answers().as_slice(),
        [(r, Err(ClientError::BadInput { .. }))] if *r == again
    ));
}
