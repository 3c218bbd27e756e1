//! One relay connection of a device with many paired machines, as a sans-IO state machine: the
//! web app drives it over a browser WebSocket (and `ctl` may, over its own client).
//!
//! The caller feeds it what happened — the transport [opened](Controller::opened), a frame
//! [arrived](Controller::received), the transport [closed](Controller::closed), time
//! [passed](Controller::tick) — and what the person asked for ([`Controller::request`],
//! [`Controller::pair`], [`Controller::revoke`], [`Controller::load_older`], the account's
//! [devices](Controller::devices)). It answers with
//! [`Output`]s taken from [`Controller::poll_output`]: connect, send these bytes, close, and
//! [`Note`]s of what changed. [`Controller::poll_timeout`] says when to call `tick` next.
//!
//! What it does on its own:
//!
//! - logs in to the relay (the relay's challenge signed with the device key);
//! - opens a [`MachineLink`] (a fresh Noise handshake) to every paired machine the relay says is
//!   online, asks for its session list, then sends `Hello` with the cursors it holds and follows
//!   the machine's `ReplayMore` pages until `ReplayComplete`;
//! - yields each event once: events are keyed by (machine, session, seq), and an event at or
//!   below what it already yielded is dropped, so a replay or a reconnect never repeats one;
//! - numbers requests, matches answers to them (only from the machine asked), and times them out;
//! - tells every machine, right after each `Hello`, whether the app is on screen
//!   ([`Controller::set_foreground`]) and which push keys it should hold
//!   ([`Controller::set_push`]), so a machine that was offline learns them when it comes back;
//! - runs the pairing flow from a ticket to the relay's acknowledgement;
//! - reconnects after a jittered exponential backoff ([`backoff`](crate::backoff)), with the
//!   randomness the caller passes in, and re-handshakes a machine whose channel broke;
//! - stops for good once the relay says this device is revoked ([`Connection::Revoked`]): its
//!   key is barred, so no attempt could succeed.
//!
//! Times are Unix milliseconds. Everything the network can make it remember is capped by
//! [`limits`](crate::limits).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use muxagent_proto::app::{
    Ack, AppErrorCode, ApprovalId, Cursor, DeviceMessage, Event, ForgetDevice, Hello, ListSessions,
    MachineMessage, PushKeys, Replay, Runtimes, SessionId, SessionInfo, SessionList, SetForeground,
    SetPush,
};
use muxagent_proto::device::{MachineLink, Pairing, PairingStep, Received};
use muxagent_proto::envelope::Body;
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{
    self, DeviceList, EntryError, ErrorCode, Frame, Login, PushQuery, PushState, PushSubscribe,
    RegistryEntry, Role, SignedEntry,
};
use muxagent_proto::identity::{Fingerprint, Identity, PublicIdentity};
use muxagent_proto::limits::{MAX_CURSORS, PROTOCOL_VERSION};
use muxagent_proto::peer::PeerError;
use muxagent_proto::ticket::{Ticket, TicketError};
use rand_core::CryptoRng;

use crate::backoff;
use crate::book::{self, Book, BookFull};
use crate::devices;
use crate::limits::{
    CONNECT_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, LOGIN_TIMEOUT_MS, MAX_MACHINES, MAX_PENDING_REQUESTS,
    MAX_QUEUED_REQUESTS, MAX_SESSIONS_PER_MACHINE, OFFLINE_AFTER_FAILURES, OLDER_EVENTS_PER_LOAD,
    PAIR_TIMEOUT_MS, REQUEST_TIMEOUT_MS,
};

/// How a controller is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The relay's base URL (`https://host[:port]`): the one the caller connects to. A pairing
    /// ticket for another relay is refused.
    pub relay: String,
    /// How many of a session's newest events to replay when the device holds none of it, or
    /// fell further behind than this (its older events are then dropped: [`Note::Reset`]).
    /// `None`: everything.
    pub resync_events: Option<u64>,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a transport to [`Config::relay`] now and call [`Controller::opened`] when it is.
    Connect,
    /// Send these bytes as one binary message.
    Send(Vec<u8>),
    /// Close the transport (the controller already counts it as closed).
    Close,
    /// Something changed.
    Note(Note),
}

/// The relay connection as a person should see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// The first attempt is under way.
    Connecting,
    /// Logged in.
    Online,
    /// Lost or refused; the next attempt starts at `retry_at` (or is under way when `None`).
    Reconnecting {
        /// When the next attempt starts.
        retry_at: Option<u64>,
        /// Why the last attempt failed.
        detail: String,
    },
    /// Failed [`OFFLINE_AFTER_FAILURES`] times in a row, or stopped until
    /// [`Controller::wake`] (`retry_at` is `None` then).
    Offline {
        /// When the next attempt starts.
        retry_at: Option<u64>,
        /// Why the last attempt failed.
        detail: String,
    },
    /// The relay revoked this device (an owner did, or the device itself): its key is barred
    /// for good and every machine forgot it. No attempt follows, not even on `wake`.
    Revoked {
        /// What the relay said, or that this device revoked itself.
        detail: String,
    },
}

/// The end-to-end channel to one machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// None.
    Closed,
    /// The Noise handshake is under way.
    Handshaking,
    /// Open; the machine is replaying what the device missed.
    Syncing,
    /// Open and caught up: new events arrive as they happen.
    Live,
}

/// What changed, for the caller's model of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The relay connection changed.
    Connection(Connection),
    /// A paired machine came online or went offline.
    Presence {
        /// The machine.
        machine: Fingerprint,
        /// The hostname the relay says it logged in with: the relay's word, not authenticated
        /// (a hostile relay could name it anything). Show the name from the pairing, and this
        /// one only as the relay's claim when it differs.
        hostname: String,
        /// Connected to the relay now.
        online: bool,
    },
    /// The channel to a machine changed.
    Channel {
        /// The machine.
        machine: Fingerprint,
        /// Its channel now.
        channel: Channel,
    },
    /// A machine's sessions.
    Sessions {
        /// The machine.
        machine: Fingerprint,
        /// As it sent them.
        list: SessionList,
    },
    /// An event the device did not have. Newer ones come in ascending seq per session; `older`
    /// ones (from [`Controller::load_older`]) ascend too, below everything yielded before.
    Event {
        /// The machine.
        machine: Fingerprint,
        /// The event.
        event: Event,
        /// Fetched below what the device held.
        older: bool,
    },
    /// The device was too far behind on a session: the machine replays only its newest
    /// [`Config::resync_events`], so the events held before are not contiguous with what
    /// follows and should be dropped.
    Reset {
        /// The machine.
        machine: Fingerprint,
        /// The session.
        session: SessionId,
    },
    /// A request was answered, refused or given up on.
    Answer {
        /// The number [`Controller::request`] (or `pair`, `revoke`, `load_older`) returned.
        request: u32,
        /// What came back.
        result: Result<Answer, ClientError>,
    },
    /// A [`Controller::fetch_input`] got a page (not the last).
    InputProgress {
        /// The number `fetch_input` returned.
        request: u32,
        /// Bytes fetched so far.
        have: u64,
        /// The whole input's length.
        total: u64,
    },
    /// A pairing got further.
    Pairing {
        /// The number [`Controller::pair`] returned.
        request: u32,
        /// Where it is.
        progress: PairingProgress,
    },
    /// A machine is no longer paired (revoked, or [forgotten](Controller::forget)).
    Removed {
        /// The machine.
        machine: Fingerprint,
    },
    /// A machine answered (or did not) the push keys [`Controller::set_push`] sent it.
    Push {
        /// The machine.
        machine: Fingerprint,
        /// Whether keys were sent (`false`: told to stop).
        on: bool,
        /// Its acknowledgement, or why there was none. `Offline` and `Lost` mean it is sent
        /// again after the machine's next `Hello`.
        result: Result<(), ClientError>,
    },
}

/// Where a pairing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingProgress {
    /// Waiting to be logged in to the relay.
    WaitingForRelay,
    /// The pairing handshake with the machine is under way.
    Contacting,
    /// The machine consented; the relay is registering it under this device's account.
    Registering,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The machine accepted the request.
    Ack(Ack),
    /// The machine's sessions.
    Sessions(SessionList),
    /// The machine's runtimes.
    Runtimes(Runtimes),
    /// A [`Controller::load_older`] fetch ended; whether it found any older event.
    Older {
        /// Older events came (as [`Note::Event`] with `older`).
        found: bool,
    },
    /// Paired: keep this record in the book.
    Paired(book::Machine),
    /// The relay removed the machine from the account.
    Revoked,
    /// The relay's push key and the subscription it holds for this device (the answer to
    /// [`Controller::push_query`] and [`Controller::push_subscribe`]).
    Push(PushState),
    /// The account's devices as the relay shows them to this device (the answer to
    /// [`Controller::devices`]; rows with [`devices::rows`]).
    Devices(DeviceList),
    /// The relay stored a device's revocation or its making an owner
    /// ([`Controller::revoke_device`], [`Controller::grant_owner`]).
    Registered,
    /// The whole input of an approval ([`Controller::fetch_input`]), as the machine sent it:
    /// sign over it only through [`decide::sign`](crate::decide::sign).
    Input {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
        /// The whole input.
        input: String,
    },
}

/// Why something failed, for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Not logged in to the relay right now.
    NotConnected,
    /// No paired machine has that fingerprint.
    UnknownMachine,
    /// The machine is not connected to the relay.
    Offline {
        /// Its hostname.
        hostname: String,
    },
    /// Too many requests in flight.
    Busy,
    /// The machine did not answer in time.
    Timeout {
        /// Its hostname.
        hostname: String,
    },
    /// The machine refused the request.
    Refused {
        /// Its hostname.
        hostname: String,
        /// Its reason, for programs.
        code: AppErrorCode,
        /// Its reason, for people.
        message: String,
    },
    /// The connection to the machine (or the relay) was lost before it answered.
    Lost {
        /// Its hostname.
        hostname: String,
    },
    /// The relay refused a registry change.
    RelayRefused(String),
    /// The relay did not confirm a registry change in time.
    RelayTimeout,
    /// The pairing link is not usable.
    Ticket(TicketError),
    /// The pairing link is for another relay.
    OtherRelay {
        /// The relay in the link.
        ticket: String,
        /// This app's relay.
        ours: String,
    },
    /// Another pairing is under way.
    PairingBusy,
    /// The relay does not know the link's pairing id: expired, used, or never opened.
    PairingUnknown,
    /// Another device claimed the link first.
    PairingTaken,
    /// The pairing failed in the protocol (a damaged or forged link, a wrong machine).
    Pairing(PeerError),
    /// The machine did not answer the pairing in time.
    PairingTimeout {
        /// The ticket's hostname.
        hostname: String,
    },
    /// The device's book is full.
    Full(BookFull),
    /// A push subscription the wire cannot carry (the browser gave something unusable).
    Push(&'static str),
    /// The machine sent an approval's input in pages that do not join up, or not as UTF-8.
    BadInput {
        /// Its hostname.
        hostname: String,
        /// What is wrong.
        error: crate::whole::InputError,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotConnected => f.write_str("not connected to the relay yet"),
            ClientError::UnknownMachine => f.write_str("that machine is not paired with this device"),
            ClientError::Offline { hostname } => write!(
                f,
                "{hostname} is offline (its daemon is not connected to the relay)"
            ),
            ClientError::Busy => f.write_str("too many requests are waiting; try again in a moment"),
            ClientError::Timeout { hostname } => write!(
                f,
                "{hostname} did not answer within {} s",
                REQUEST_TIMEOUT_MS / 1000
            ),
            ClientError::Refused {
                hostname, message, ..
            } => write!(f, "{hostname}: {message}"),
            ClientError::Lost { hostname } => {
                write!(f, "the connection to {hostname} was lost before it answered")
            }
            ClientError::RelayRefused(reason) => write!(f, "the relay refused: {reason}"),
            ClientError::RelayTimeout => f.write_str("the relay did not confirm in time"),
            ClientError::Ticket(error) => error.fmt(f),
            ClientError::OtherRelay { ticket, ours } => write!(
                f,
                "this pairing link is for the relay at {ticket}, but this app uses {ours}; open the link on {ticket}"
            ),
            ClientError::PairingBusy => f.write_str("another pairing is under way"),
            ClientError::PairingUnknown => f.write_str(
                "the pairing link is unknown, expired or already used; run `muxagent pair` on the machine for a new one",
            ),
            ClientError::PairingTaken => {
                f.write_str("another device is already using this pairing link")
            }
            ClientError::Pairing(error) => error.fmt(f),
            ClientError::PairingTimeout { hostname } => write!(
                f,
                "{hostname} did not answer within {} s; is its daemon running?",
                PAIR_TIMEOUT_MS / 1000
            ),
            ClientError::Full(error) => error.fmt(f),
            ClientError::Push(reason) => {
                write!(f, "the browser's push subscription is not usable: {reason}")
            }
            ClientError::BadInput { hostname, error } => write!(
                f,
                "{hostname}: {error}; it cannot be allowed from here"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

enum Conn {
    /// No transport; the next attempt at `retry_at` (`None`: only on [`Controller::wake`]).
    Waiting {
        retry_at: Option<u64>,
    },
    /// [`Output::Connect`] given; waiting for the transport and the relay's hello.
    Connecting {
        deadline: u64,
    },
    /// Login sent.
    LoggingIn {
        deadline: u64,
    },
    Online,
}

/// What the device holds of one session: every event in `first..=last` (none when `first` is
/// 0), and whether `first` is the oldest the machine has.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    first: u64,
    last: u64,
    complete: bool,
    older: Option<Older>,
}

/// A [`Controller::load_older`] fetch: events in `after + 1..until`, yielded up to `cursor`.
///
/// A `ReplayMore` or `ReplayComplete` the machine sent before it read the fetch's `Replay` can
/// still arrive after it: it says nothing about the fetch. Only once `reached` (the machine
/// replayed an event of the session above `after`, so it has read the `Replay`) may a page's
/// end finish the fetch.
#[derive(Clone, Copy, Debug)]
struct Older {
    request: u32,
    after: u64,
    until: u64,
    cursor: u64,
    lowest: Option<u64>,
    reached: bool,
}

struct Peer {
    hostname: String,
    online: bool,
    link: MachineLink,
    channel: Channel,
    /// When the handshake in progress gives up.
    handshake_deadline: Option<u64>,
    /// When to handshake again after a failure.
    retry_at: Option<u64>,
    failures: u32,
    tracks: BTreeMap<SessionId, Track>,
    /// Requests asked before the channel opened.
    queued: VecDeque<DeviceMessage>,
}

impl Peer {
    fn new(identity: PublicIdentity, hostname: String) -> Self {
        Self {
            hostname,
            online: false,
            link: MachineLink::new(identity),
            channel: Channel::Closed,
            handshake_deadline: None,
            retry_at: None,
            failures: 0,
            tracks: BTreeMap::new(),
            queued: VecDeque::new(),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.channel, Channel::Syncing | Channel::Live)
    }

    /// The track of `session`, made if there is room.
    fn track(&mut self, session: SessionId) -> Option<&mut Track> {
        if !self.tracks.contains_key(&session) && self.tracks.len() >= MAX_SESSIONS_PER_MACHINE {
            return None;
        }
        Some(self.tracks.entry(session).or_default())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    /// A request to a machine, answered over its channel.
    Machine(Fingerprint),
    /// The session list asked for right after the handshake (then `Hello`).
    List(Fingerprint),
    /// A [`Controller::load_older`] fetch.
    Older(Fingerprint, SessionId),
    /// A [`Controller::fetch_input`] run (its pages so far in `Controller::inputs`).
    Input(Fingerprint),
    /// A revocation, answered by the relay.
    Revoke(Fingerprint),
    /// A push query or subscription, or the devices query, answered by the relay.
    Relay,
    /// A device revoked or made an owner, answered by the relay; `true`: this device revokes
    /// itself.
    Entry(bool),
    /// Push keys (`true`) or their removal sent to a machine by [`Controller::set_push`].
    Push(Fingerprint, bool),
    /// A pairing.
    Pair,
}

struct Pending {
    deadline: u64,
    waiter: Waiter,
}

enum PairState {
    /// Not logged in yet: starts when online.
    Waiting(Box<Ticket>),
    Running(Box<Pairing>),
}

struct PairRun {
    request: u32,
    hostname: String,
    relay: String,
    state: PairState,
}

/// The device's relay connection and its channels to every paired machine.
pub struct Controller {
    identity: Identity,
    config: Config,
    conn: Conn,
    /// Failed connection attempts in a row.
    failures: u32,
    /// Why the last attempt failed.
    detail: String,
    /// The relay's `Restarting` hint for the next attempt (ms).
    restart_in: Option<u64>,
    /// The connection state last told.
    told: Option<Connection>,
    peers: BTreeMap<Fingerprint, Peer>,
    pending: BTreeMap<u32, Pending>,
    next_request: u32,
    pairing: Option<PairRun>,
    /// Whether the app is on screen ([`Controller::set_foreground`]).
    foreground: bool,
    /// What each machine should hold of this device's push keys ([`Controller::set_push`]):
    /// keys are sent after every `Hello`; a removal until a machine acknowledges it.
    push: BTreeMap<Fingerprint, Option<PushKeys>>,
    /// The relay revoked this device: it stays disconnected.
    revoked: bool,
    /// Whole approval inputs being fetched, by request number.
    inputs: BTreeMap<u32, input::InputFetch>,
    out: VecDeque<Output>,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("device", &self.identity.public().fingerprint())
            .field("machines", &self.peers.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `identity` with the machines of `book` (damaged records are left out).
    /// It connects at the first [`tick`](Self::tick).
    pub fn new(identity: Identity, book: &Book, config: Config) -> Self {
        let peers = book
            .machines
            .iter()
            .filter_map(|machine| {
                let identity = machine.identity()?;
                Some((
                    identity.fingerprint(),
                    Peer::new(identity, machine.hostname.clone()),
                ))
            })
            .take(MAX_MACHINES)
            .collect();
        Self {
            identity,
            config,
            conn: Conn::Waiting { retry_at: Some(0) },
            failures: 0,
            detail: String::new(),
            restart_in: None,
            told: None,
            peers,
            pending: BTreeMap::new(),
            next_request: 1,
            pairing: None,
            foreground: false,
            push: BTreeMap::new(),
            revoked: false,
            inputs: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// This device's key.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The setup.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether logged in to the relay.
    pub fn is_online(&self) -> bool {
        matches!(self.conn, Conn::Online)
    }

    /// Whether the relay revoked this device ([`Connection::Revoked`]).
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// The channel to `machine`.
    pub fn channel(&self, machine: &Fingerprint) -> Channel {
        self.peers
            .get(machine)
            .map_or(Channel::Closed, |peer| peer.channel)
    }

    /// Whether the relay says `machine` is connected.
    pub fn machine_online(&self, machine: &Fingerprint) -> bool {
        self.peers.get(machine).is_some_and(|peer| peer.online)
    }

    /// Say what the device already holds of a session (from its cache): every event in
    /// `first..=last`, and whether `first` is the oldest the machine has. Call before the
    /// machine's channel opens.
    pub fn hold(
        &mut self,
        machine: &Fingerprint,
        session: SessionId,
        first: u64,
        last: u64,
        complete: bool,
    ) {
        if let Some(track) = self
            .peers
            .get_mut(machine)
            .and_then(|peer| peer.track(session))
        {
            *track = Track {
                first: first.min(last),
                last,
                complete,
                older: None,
            };
        }
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`tick`](Self::tick) must be called next (Unix ms), if anything waits on time.
    pub fn poll_timeout(&self) -> Option<u64> {
        let conn = match self.conn {
            Conn::Waiting { retry_at } => retry_at,
            Conn::Connecting { deadline } | Conn::LoggingIn { deadline } => Some(deadline),
            Conn::Online => None,
        };
        let pending = self.pending.values().map(|pending| pending.deadline);
        let peers = self.peers.values().flat_map(|peer| {
            let retry = peer.retry_at.filter(|_| peer.online && self.is_online());
            peer.handshake_deadline.into_iter().chain(retry)
        });
        conn.into_iter().chain(pending).chain(peers).min()
    }

    /// Time passed: connect when it is time, give up on what took too long.
    pub fn tick<R: CryptoRng + ?Sized>(&mut self, now: u64, rng: &mut R) {
        match self.conn {
            Conn::Waiting { retry_at: Some(at) } if now >= at => self.connect(now),
            Conn::Connecting { deadline } if now >= deadline => self.fail(
                now,
                "the relay does not answer".into(),
                true,
                Some(rng.next_u32()),
            ),
            Conn::LoggingIn { deadline } if now >= deadline => self.fail(
                now,
                "the relay did not accept the login in time".into(),
                true,
                Some(rng.next_u32()),
            ),
            _ => {}
        }
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, pending)| now >= pending.deadline)
            .map(|(request, _)| *request)
            .collect();
        for request in expired {
            self.expire(now, request, rng);
        }
        if !self.is_online() {
            return;
        }
        let machines: Vec<Fingerprint> = self.peers.keys().copied().collect();
        for machine in machines {
            let Some(peer) = self.peers.get(&machine) else {
                continue;
            };
            if peer
                .handshake_deadline
                .is_some_and(|deadline| now >= deadline)
            {
                self.channel_failed(now, machine, rng);
            } else if peer.online
                && peer.channel == Channel::Closed
                && peer.retry_at.is_some_and(|at| now >= at)
            {
                self.open_link(now, machine, rng);
            }
        }
    }

    /// Connect now if waiting (the page became visible, the network came back).
    pub fn wake(&mut self, now: u64) {
        if self.revoked {
            return;
        }
        if let Conn::Waiting { .. } = self.conn {
            self.connect(now);
        }
    }

    /// The transport asked for by [`Output::Connect`] is open.
    pub fn opened(&mut self, _now: u64) {
        // The relay speaks first (its hello); the connect deadline covers waiting for it.
    }

    /// The transport closed (or failed to open).
    pub fn closed<R: CryptoRng + ?Sized>(&mut self, now: u64, rng: &mut R) {
        if !matches!(self.conn, Conn::Waiting { .. }) {
            let detail = if self.is_online() {
                "the connection to the relay was lost"
            } else {
                "the relay does not answer"
            };
            self.fail(now, detail.into(), false, Some(rng.next_u32()));
        }
    }

    /// A binary message from the relay.
    pub fn received<R: CryptoRng + ?Sized>(&mut self, now: u64, bytes: &[u8], rng: &mut R) {
        if matches!(self.conn, Conn::Waiting { .. }) {
            return;
        }
        let frame = match Frame::decode(bytes) {
            Ok(Decoded::Known(frame)) => frame,
            Ok(Decoded::Unknown { .. }) => return,
            Err(error) => {
                let detail = format!("the relay sent a malformed frame ({error})");
                return self.fail(now, detail, true, Some(rng.next_u32()));
            }
        };
        match (&self.conn, frame) {
            (Conn::Connecting { .. }, Frame::ServerHello(hello)) => {
                if !(hello.min_protocol..=hello.max_protocol).contains(&PROTOCOL_VERSION) {
                    let detail = format!(
                        "the relay speaks protocol {}–{}, this app {PROTOCOL_VERSION}; update one of them",
                        hello.min_protocol, hello.max_protocol
                    );
                    return self.fail(now, detail, true, None);
                }
                let login = Login::sign(&self.identity, &hello.challenge, Role::Device, None);
                self.send(Frame::Login(login));
                self.conn = Conn::LoggingIn {
                    deadline: now + LOGIN_TIMEOUT_MS,
                };
            }
            (Conn::LoggingIn { .. }, Frame::LoginOk(_)) => self.logged_in(now, rng),
            (Conn::Connecting { .. } | Conn::LoggingIn { .. }, Frame::Error(error))
                if error.code == ErrorCode::Revoked =>
            {
                self.revoked_here(now, error.reason.to_string());
            }
            (Conn::Connecting { .. } | Conn::LoggingIn { .. }, Frame::Error(error)) => {
                let detail = format!("the relay refused the login: {}", error.reason);
                self.fail(now, detail, true, Some(rng.next_u32()));
            }
            (Conn::Connecting { .. } | Conn::LoggingIn { .. }, _) => {
                let detail = "the relay broke the protocol during login".into();
                self.fail(now, detail, true, Some(rng.next_u32()));
            }
            (Conn::Online, frame) => self.on_frame(now, frame, rng),
            (Conn::Waiting { .. }, _) => {}
        }
    }

    /// Send a request to `machine`: `build` gets the request's number. The answer arrives as
    /// [`Note::Answer`] with that number. Asked while the channel is being opened, the request
    /// waits for it.
    pub fn request(
        &mut self,
        now: u64,
        machine: &Fingerprint,
        build: impl FnOnce(u32) -> DeviceMessage,
    ) -> Result<u32, ClientError> {
        self.request_as(now, machine, Waiter::Machine(*machine), build)
    }

    /// [`Controller::request`] answered to `waiter`.
    fn request_as(
        &mut self,
        now: u64,
        machine: &Fingerprint,
        waiter: Waiter,
        build: impl FnOnce(u32) -> DeviceMessage,
    ) -> Result<u32, ClientError> {
        let peer = self.ready_peer(machine)?;
        let queue = !peer.is_open();
        if queue && peer.queued.len() >= MAX_QUEUED_REQUESTS {
            return Err(ClientError::Busy);
        }
        let request = self.reserve(now + REQUEST_TIMEOUT_MS, waiter)?;
        let message = build(request);
        match self.peers.get_mut(machine) {
            Some(peer) if queue => peer.queued.push_back(message),
            _ => self.send_to(now, *machine, &message),
        }
        Ok(request)
    }

    /// Fetch up to [`OLDER_EVENTS_PER_LOAD`] events of `session` older than the oldest the
    /// device holds. `None` when the device holds the session's first event already (or none
    /// at all); otherwise the answer is [`Answer::Older`].
    pub fn load_older(
        &mut self,
        now: u64,
        machine: &Fingerprint,
        session: SessionId,
    ) -> Result<Option<u32>, ClientError> {
        let peer = self.ready_peer(machine)?;
        let Some(track) = peer.tracks.get(&session).copied() else {
            return Ok(None);
        };
        if let Some(older) = track.older {
            return Ok(Some(older.request));
        }
        if track.complete || track.first <= 1 {
            return Ok(None);
        }
        if !peer.is_open() {
            let hostname = peer.hostname.clone();
            return Err(ClientError::Offline { hostname });
        }
        let request = self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::Older(*machine, session))?;
        let after = track.first.saturating_sub(OLDER_EVENTS_PER_LOAD + 1);
        if let Some(track) = self
            .peers
            .get_mut(machine)
            .and_then(|peer| peer.tracks.get_mut(&session))
        {
            track.older = Some(Older {
                request,
                after,
                until: track.first,
                cursor: after,
                lowest: None,
                reached: false,
            });
        }
        let message = Replay {
            request,
            session,
            after_seq: after,
        };
        self.send_to(now, *machine, &message.into());
        Ok(Some(request))
    }

    /// Pair with the machine of a `/pair#…` link (or a bare ticket). `now` is Unix ms. Nothing
    /// is kept until the relay registered the machine: then [`Answer::Paired`] carries the
    /// record to store.
    pub fn pair<R: CryptoRng + ?Sized>(
        &mut self,
        now: u64,
        link: &str,
        rng: &mut R,
    ) -> Result<u32, ClientError> {
        let ticket = Ticket::from_link(link, now / 1000).map_err(ClientError::Ticket)?;
        let relay = ticket.relay_url.to_string();
        if origin(&relay) != origin(&self.config.relay) {
            return Err(ClientError::OtherRelay {
                ticket: relay,
                ours: self.config.relay.clone(),
            });
        }
        if self.pairing.is_some() {
            return Err(ClientError::PairingBusy);
        }
        if !self.peers.contains_key(&ticket.machine) && self.peers.len() >= MAX_MACHINES {
            return Err(ClientError::Full(BookFull));
        }
        let request = self.reserve(now + PAIR_TIMEOUT_MS, Waiter::Pair)?;
        self.pairing = Some(PairRun {
            request,
            hostname: ticket.hostname.to_string(),
            relay,
            state: PairState::Waiting(Box::new(ticket)),
        });
        if self.is_online() {
            self.start_pairing(rng);
        } else {
            self.note(Note::Pairing {
                request,
                progress: PairingProgress::WaitingForRelay,
            });
        }
        Ok(request)
    }

    /// Remove `machine` from the account: the relay refuses it from then on. The machine is
    /// told first (best effort) to forget this device. Answered by [`Answer::Revoked`], after
    /// which the machine is [removed](Note::Removed).
    pub fn revoke(&mut self, now: u64, machine: &Fingerprint) -> Result<u32, ClientError> {
        if !self.is_online() {
            return Err(ClientError::NotConnected);
        }
        let Some(peer) = self.peers.get(machine) else {
            return Err(ClientError::UnknownMachine);
        };
        let open = peer.is_open();
        let request = self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::Revoke(*machine))?;
        if open {
            // Its answer (if any) matches no pending request and is dropped.
            let forget = ForgetDevice {
                request: self.fresh_number(),
            };
            self.send_to(now, *machine, &forget.into());
        }
        let entry = RegistryEntry::RevokeMachine {
            device: self.identity.public(),
            machine: *machine,
            at: now / 1000,
        };
        match SignedEntry::sign(&self.identity, &entry) {
            Ok(entry) => self.send(Frame::Registry(frame::Registry { request, entry })),
            Err(error) => {
                self.pending.remove(&request);
                return Err(ClientError::Pairing(PeerError::Entry(error)));
            }
        }
        Ok(request)
    }

    /// Ask the relay for the account's devices: an owner is shown every device and machine,
    /// another device itself and the machines it paired with. Answered by [`Answer::Devices`].
    pub fn devices(&mut self, now: u64) -> Result<u32, ClientError> {
        self.relay_request(now, devices::query)
    }

    /// Revoke `device` (signed by this device: an owner of the account, or `device` itself).
    /// The relay closes its connections and bars its key for good; every machine forgets it.
    /// Answered by [`Answer::Registered`]; a device that revoked itself is then
    /// [revoked](Connection::Revoked).
    pub fn revoke_device(&mut self, now: u64, device: &Fingerprint) -> Result<u32, ClientError> {
        let itself = *device == self.identity.public().fingerprint();
        self.entry_request(now, itself, |identity, request| {
            devices::revoke(identity, *device, request, now / 1000)
        })
    }

    /// Make `device` an owner (signed by this device, which must be one). Answered by
    /// [`Answer::Registered`].
    pub fn grant_owner(&mut self, now: u64, device: &Fingerprint) -> Result<u32, ClientError> {
        self.entry_request(now, false, |identity, request| {
            devices::grant_owner(identity, *device, request, now / 1000)
        })
    }

    /// Ask the relay for its push key (VAPID) and the subscription it holds for this device.
    /// Answered by [`Answer::Push`].
    pub fn push_query(&mut self, now: u64) -> Result<u32, ClientError> {
        self.relay_request(now, |request| Frame::PushQuery(PushQuery { request }))
    }

    /// Hand the relay this device's push subscription endpoint, or `None` to remove it.
    /// Answered by [`Answer::Push`] (a refused endpoint by [`ClientError::RelayRefused`]).
    pub fn push_subscribe(
        &mut self,
        now: u64,
        endpoint: Option<String>,
    ) -> Result<u32, ClientError> {
        let probe = PushSubscribe {
            request: 0,
            endpoint: endpoint.clone(),
        };
        probe.validate().map_err(ClientError::Push)?;
        self.relay_request(now, |request| {
            Frame::PushSubscribe(PushSubscribe { request, endpoint })
        })
    }

    /// What `machine` should hold of this device's push keys from now on: keys (`Some`) or
    /// none. Sent at once when its channel is open, and again after every `Hello` (keys always,
    /// a removal until the machine acknowledges it), so a machine that was offline learns it
    /// when it comes back. Each answer arrives as [`Note::Push`].
    pub fn set_push(
        &mut self,
        now: u64,
        machine: &Fingerprint,
        push: Option<PushKeys>,
    ) -> Result<(), ClientError> {
        let probe = SetPush {
            request: 0,
            push: push.clone(),
        };
        probe.validate().map_err(ClientError::Push)?;
        let Some(peer) = self.peers.get(machine) else {
            return Err(ClientError::UnknownMachine);
        };
        let open = peer.is_open();
        self.push.insert(*machine, push.clone());
        if open && self.is_online() {
            self.send_push(now, *machine, push);
        }
        Ok(())
    }

    /// Whether the app is on screen: told to every open channel now, and to each machine
    /// right after its `Hello`. A machine does not push to a device while the app shows.
    pub fn set_foreground(&mut self, now: u64, visible: bool) {
        if self.foreground == visible {
            return;
        }
        self.foreground = visible;
        let open: Vec<Fingerprint> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.is_open())
            .map(|(machine, _)| *machine)
            .collect();
        for machine in open {
            self.send_to(now, machine, &SetForeground { visible }.into());
        }
    }

    /// Forget `machine` here (after the machine acknowledged `ForgetDevice`, or to drop a
    /// record): its channel closes, its requests fail, and [`Note::Removed`] follows.
    pub fn forget(&mut self, machine: &Fingerprint) {
        self.push.remove(machine);
        if let Some(peer) = self.peers.remove(machine) {
            self.fail_waiters(machine, &peer.hostname, false);
            self.note(Note::Removed { machine: *machine });
        }
    }

    // ---- connection ----

    fn connect(&mut self, now: u64) {
        self.conn = Conn::Connecting {
            deadline: now + CONNECT_TIMEOUT_MS,
        };
        self.out.push_back(Output::Connect);
        self.tell_connection();
    }

    fn logged_in<R: CryptoRng + ?Sized>(&mut self, _now: u64, rng: &mut R) {
        self.conn = Conn::Online;
        self.failures = 0;
        self.restart_in = None;
        self.detail.clear();
        self.tell_connection();
        if self.pairing.is_some() {
            self.start_pairing(rng);
        }
        // Channels open as the relay tells which machines are online (presence frames).
    }

    /// The relay revoked this device: fail what waits, close, and never connect again.
    fn revoked_here(&mut self, now: u64, detail: String) {
        self.revoked = true;
        self.fail(now, detail, true, None);
    }

    /// The connection failed or was lost: drop every channel, fail what waits on it, and
    /// schedule the next attempt (`random` jitters it; `None`: wait for [`Self::wake`]).
    fn fail(&mut self, now: u64, detail: String, close: bool, random: Option<u32>) {
        if close {
            self.out.push_back(Output::Close);
        }
        let machines: Vec<Fingerprint> = self.peers.keys().copied().collect();
        for machine in machines {
            if let Some(peer) = self.peers.get_mut(&machine) {
                let was_online = std::mem::replace(&mut peer.online, false);
                let hostname = peer.hostname.clone();
                self.close_link(&machine);
                if was_online {
                    self.note(Note::Presence {
                        machine,
                        hostname,
                        online: false,
                    });
                }
            }
        }
        for (request, pending) in std::mem::take(&mut self.pending) {
            let error = match pending.waiter {
                // A pairing waiting for the first login keeps waiting (until its deadline).
                Waiter::Pair
                    if matches!(
                        self.pairing,
                        Some(PairRun {
                            state: PairState::Waiting(_),
                            ..
                        })
                    ) =>
                {
                    self.pending.insert(request, pending);
                    continue;
                }
                Waiter::Pair => {
                    self.pairing = None;
                    ClientError::Lost {
                        hostname: "the relay".into(),
                    }
                }
                Waiter::Revoke(_) | Waiter::Relay | Waiter::Entry(_) => ClientError::NotConnected,
                Waiter::List(_) => continue,
                Waiter::Push(machine, on) => {
                    let hostname = self.hostname(&machine);
                    let result = Err(ClientError::Lost { hostname });
                    self.note(Note::Push {
                        machine,
                        on,
                        result,
                    });
                    continue;
                }
                Waiter::Machine(machine) | Waiter::Older(machine, _) | Waiter::Input(machine) => {
                    ClientError::Lost {
                        hostname: self.hostname(&machine),
                    }
                }
            };
            self.answer(request, Err(error));
        }
        self.failures = self.failures.saturating_add(1);
        self.detail = detail;
        let retry_at = random.map(|random| {
            now + match self.restart_in.take() {
                Some(wait) => wait + u64::from(random) % (wait / 2 + 1),
                None => backoff::delay_ms(self.failures, random),
            }
        });
        self.conn = Conn::Waiting { retry_at };
        self.tell_connection();
    }

    fn tell_connection(&mut self) {
        let detail = self.detail.clone();
        let state = match self.conn {
            _ if self.revoked => Connection::Revoked { detail },
            Conn::Online => Connection::Online,
            Conn::Waiting { retry_at: None } => Connection::Offline {
                retry_at: None,
                detail,
            },
            _ if self.failures == 0 => Connection::Connecting,
            Conn::Waiting { retry_at } if self.failures >= OFFLINE_AFTER_FAILURES => {
                Connection::Offline { retry_at, detail }
            }
            Conn::Waiting { retry_at } => Connection::Reconnecting { retry_at, detail },
            _ if self.failures >= OFFLINE_AFTER_FAILURES => Connection::Offline {
                retry_at: None,
                detail,
            },
            _ => Connection::Reconnecting {
                retry_at: None,
                detail,
            },
        };
        if self.told.as_ref() != Some(&state) {
            self.told = Some(state.clone());
            self.note(Note::Connection(state));
        }
    }

    fn on_frame<R: CryptoRng + ?Sized>(&mut self, now: u64, frame: Frame, rng: &mut R) {
        match frame {
            Frame::Presence(presence) => {
                let machine = presence.machine;
                let Some(peer) = self.peers.get_mut(&machine) else {
                    return; // not paired with this device
                };
                peer.online = presence.online;
                // The name the relay gives is its word only: the device keeps calling the
                // machine what it said in the pairing (or on its channel).
                let hostname = peer.hostname.clone();
                let handshaking = peer.channel == Channel::Handshaking;
                self.note(Note::Presence {
                    machine,
                    hostname: presence.hostname.to_string(),
                    online: presence.online,
                });
                if presence.online {
                    // A machine that (re)connected has no channel to this device any more.
                    if !handshaking {
                        self.open_link(now, machine, rng);
                    }
                } else {
                    self.close_link(&machine);
                    self.fail_waiters(&machine, &hostname, true);
                }
            }
            Frame::Recv(recv) => self.on_recv(now, recv.from, &recv.payload, rng),
            Frame::PairRecv(recv) => self.on_pair_recv(now, &recv),
            Frame::RegistryAck(ack) => self.on_registry_ack(now, ack.request),
            Frame::PushState(state) => {
                let request = state.request;
                if self.pending.get(&request).map(|p| p.waiter) == Some(Waiter::Relay) {
                    self.pending.remove(&request);
                    self.answer(request, Ok(Answer::Push(state)));
                }
            }
            Frame::DeviceList(list) => {
                let request = list.request;
                if self.pending.get(&request).map(|p| p.waiter) == Some(Waiter::Relay) {
                    self.pending.remove(&request);
                    self.answer(request, Ok(Answer::Devices(list)));
                }
            }
            Frame::Error(error) => self.on_relay_error(now, error, rng),
            Frame::Restarting(restarting) => {
                self.restart_in = Some(u64::from(restarting.reconnect_in_ms));
            }
            _ => {}
        }
    }

    fn on_relay_error<R: CryptoRng + ?Sized>(
        &mut self,
        now: u64,
        error: frame::Error,
        rng: &mut R,
    ) {
        let reason = error.reason.to_string();
        if let Some(request) = error.request
            && let Some(pending) = self.pending.get(&request)
        {
            match pending.waiter {
                Waiter::Revoke(_) | Waiter::Relay | Waiter::Entry(_) => {
                    self.pending.remove(&request);
                    return self.answer(request, Err(ClientError::RelayRefused(reason)));
                }
                Waiter::Pair => {
                    return self.fail_pairing(ClientError::RelayRefused(reason));
                }
                _ => {}
            }
        }
        match error.code {
            ErrorCode::PairingUnknown if self.pairing.is_some() => {
                self.fail_pairing(ClientError::PairingUnknown)
            }
            ErrorCode::PairingTaken if self.pairing.is_some() => {
                self.fail_pairing(ClientError::PairingTaken)
            }
            // A frame to a machine was dropped: its channel has a gap the counters will refuse.
            // The relay does not say which machine, so every open channel starts again.
            ErrorCode::Dropped => {
                let open: Vec<Fingerprint> = self
                    .peers
                    .iter()
                    .filter(|(_, peer)| peer.channel != Channel::Closed)
                    .map(|(machine, _)| *machine)
                    .collect();
                for machine in open {
                    let hostname = self.hostname(&machine);
                    self.close_link(&machine);
                    self.fail_waiters(&machine, &hostname, false);
                    self.open_link(now, machine, rng);
                }
            }
            // Another window of this device logged in: do not fight it for the connection.
            ErrorCode::Displaced => self.fail(
                now,
                "this device connected from another window or tab".into(),
                true,
                None,
            ),
            ErrorCode::Revoked => self.revoked_here(now, reason),
            // PeerOffline and the rest name no request: presence and timeouts tell the rest.
            _ => {}
        }
    }

    // ---- channels ----

    fn open_link<R: CryptoRng + ?Sized>(&mut self, now: u64, machine: Fingerprint, rng: &mut R) {
        let Some(peer) = self.peers.get_mut(&machine) else {
            return;
        };
        match peer.link.connect(&self.identity, rng) {
            Ok(frame) => {
                peer.channel = Channel::Handshaking;
                peer.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT_MS);
                peer.retry_at = None;
                self.send(frame);
                self.note(Note::Channel {
                    machine,
                    channel: Channel::Handshaking,
                });
            }
            Err(_) => self.channel_failed(now, machine, rng),
        }
    }

    /// Drop the channel to `machine` (no retry is scheduled).
    fn close_link(&mut self, machine: &Fingerprint) {
        let Some(peer) = self.peers.get_mut(machine) else {
            return;
        };
        peer.link.close();
        peer.handshake_deadline = None;
        let was = std::mem::replace(&mut peer.channel, Channel::Closed);
        for track in peer.tracks.values_mut() {
            track.older = None;
        }
        // Queued requests are failed by their pending entries.
        peer.queued.clear();
        if was != Channel::Closed {
            self.note(Note::Channel {
                machine: *machine,
                channel: Channel::Closed,
            });
        }
    }

    /// Fail every request waiting on `machine`: it went `offline`, or its channel was lost.
    fn fail_waiters(&mut self, machine: &Fingerprint, hostname: &str, offline: bool) {
        let waiting: Vec<(u32, Waiter)> = self
            .pending
            .iter()
            .filter(|(_, pending)| match pending.waiter {
                Waiter::Machine(m)
                | Waiter::List(m)
                | Waiter::Older(m, _)
                | Waiter::Push(m, _)
                | Waiter::Input(m) => m == *machine,
                Waiter::Revoke(_) | Waiter::Pair | Waiter::Relay | Waiter::Entry(_) => false,
            })
            .map(|(request, pending)| (*request, pending.waiter))
            .collect();
        for (request, waiter) in waiting {
            self.pending.remove(&request);
            if let Waiter::List(_) = waiter {
                continue;
            }
            let hostname = hostname.to_string();
            let error = if offline {
                ClientError::Offline { hostname }
            } else {
                ClientError::Lost { hostname }
            };
            if let Waiter::Push(machine, on) = waiter {
                let result = Err(error);
                self.note(Note::Push {
                    machine,
                    on,
                    result,
                });
                continue;
            }
            self.answer(request, Err(error));
        }
    }

    /// The channel to `machine` broke or never opened: try again after a backoff.
    fn channel_failed<R: CryptoRng + ?Sized>(
        &mut self,
        now: u64,
        machine: Fingerprint,
        rng: &mut R,
    ) {
        let hostname = self.hostname(&machine);
        self.close_link(&machine);
        self.fail_waiters(&machine, &hostname, false);
        if let Some(peer) = self.peers.get_mut(&machine) {
            peer.failures = peer.failures.saturating_add(1);
            peer.retry_at = Some(now + backoff::delay_ms(peer.failures, rng.next_u32()));
        }
    }

    fn on_recv<R: CryptoRng + ?Sized>(
        &mut self,
        now: u64,
        from: Fingerprint,
        payload: &[u8],
        rng: &mut R,
    ) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        match peer.link.receive(payload) {
            Ok(Received::Opened) => {
                peer.channel = Channel::Syncing;
                peer.handshake_deadline = None;
                peer.failures = 0;
                let queued: Vec<DeviceMessage> = peer.queued.drain(..).collect();
                self.note(Note::Channel {
                    machine: from,
                    channel: Channel::Syncing,
                });
                // The session list first, so the hello can name every session's cursor.
                match self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::List(from)) {
                    Ok(request) => self.send_to(now, from, &ListSessions { request }.into()),
                    Err(_) => {
                        self.send_hello(now, from, None);
                        self.after_hello(now, from);
                    }
                }
                for message in queued {
                    self.send_to(now, from, &message);
                }
            }
            Ok(Received::Message(message)) => self.on_message(now, from, message),
            Ok(Received::Skipped | Received::Stale) => {}
            Err(_) => self.channel_failed(now, from, rng),
        }
    }

    fn on_message(&mut self, now: u64, machine: Fingerprint, message: MachineMessage) {
        match message {
            MachineMessage::SessionList(list) => {
                let initial = list.request.is_some_and(|request| {
                    self.pending.get(&request).map(|p| p.waiter) == Some(Waiter::List(machine))
                });
                if initial {
                    if let Some(request) = list.request {
                        self.pending.remove(&request);
                    }
                    self.note(Note::Sessions {
                        machine,
                        list: list.clone(),
                    });
                    self.send_hello(now, machine, Some(&list.sessions));
                    self.after_hello(now, machine);
                    return;
                }
                self.note(Note::Sessions {
                    machine,
                    list: list.clone(),
                });
                if let Some(request) = list.request {
                    self.answer_from(machine, request, Ok(Answer::Sessions(list)));
                }
            }
            MachineMessage::Runtimes(runtimes) => {
                let request = runtimes.request;
                self.answer_from(machine, request, Ok(Answer::Runtimes(runtimes)));
            }
            MachineMessage::Event(event) => self.on_event(now, machine, event),
            MachineMessage::ReplayMore(more) => self.on_replay_more(now, machine, &more.cursors),
            MachineMessage::ReplayComplete(_) => {
                let older: Vec<SessionId> = self
                    .peers
                    .get(&machine)
                    .map(|peer| {
                        peer.tracks
                            .iter()
                            .filter(|(_, track)| track.older.is_some_and(|older| older.reached))
                            .map(|(session, _)| *session)
                            .collect()
                    })
                    .unwrap_or_default();
                for session in older {
                    self.finish_older(machine, session);
                }
                if let Some(peer) = self.peers.get_mut(&machine)
                    && peer.channel == Channel::Syncing
                {
                    peer.channel = Channel::Live;
                    self.note(Note::Channel {
                        machine,
                        channel: Channel::Live,
                    });
                }
            }
            MachineMessage::Ack(ack) => {
                let request = ack.request;
                self.answer_from(machine, request, Ok(Answer::Ack(ack)));
            }
            MachineMessage::Error(error) => {
                if let Some(request) = error.request {
                    let refused = ClientError::Refused {
                        hostname: self.hostname(&machine),
                        code: error.code,
                        message: error.message,
                    };
                    if let Some(Waiter::Older(_, session)) =
                        self.pending.get(&request).map(|p| p.waiter)
                        && let Some(track) = self
                            .peers
                            .get_mut(&machine)
                            .and_then(|peer| peer.tracks.get_mut(&session))
                    {
                        track.older = None;
                    }
                    self.answer_from(machine, request, Err(refused));
                }
            }
            MachineMessage::InputChunk(chunk) => self.on_input_chunk(now, machine, chunk),
            MachineMessage::PairingConsent(_) => {}
        }
    }

    fn on_event(&mut self, now: u64, machine: Fingerprint, event: Event) {
        let Some(track) = self
            .peers
            .get_mut(&machine)
            .and_then(|peer| peer.track(event.session))
        else {
            return; // more sessions than a device tracks
        };
        let seq = event.seq;
        let older = if seq > track.last {
            track.last = seq;
            if track.first == 0 {
                track.first = seq;
            }
            false
        } else if let Some(fetch) = track.older.as_mut()
            && seq > fetch.cursor
            && seq < fetch.until
        {
            fetch.reached = true;
            fetch.cursor = seq;
            fetch.lowest.get_or_insert(seq);
            let request = fetch.request;
            // Progress: the fetch is alive.
            if let Some(pending) = self.pending.get_mut(&request) {
                pending.deadline = now + REQUEST_TIMEOUT_MS;
            }
            true
        } else {
            // Held already; but a replayed event above the fetch's start shows the machine
            // has read its `Replay` (the range below may hold nothing any more).
            if let Some(fetch) = track.older.as_mut()
                && seq > fetch.after
            {
                fetch.reached = true;
            }
            return;
        };
        self.note(Note::Event {
            machine,
            event,
            older,
        });
    }

    fn on_replay_more(&mut self, now: u64, machine: Fingerprint, cursors: &[Cursor]) {
        let mut finished = Vec::new();
        let mut next = Vec::new();
        if let Some(peer) = self.peers.get(&machine) {
            for cursor in cursors.iter().take(MAX_CURSORS) {
                let seq = match peer.tracks.get(&cursor.session) {
                    Some(track) => match track.older {
                        // The page ended before the machine read the fetch's `Replay`: ask
                        // again from the fetch's own cursor.
                        Some(older) if !older.reached => older.cursor,
                        // Still inside an older fetch: go on from where the page ended.
                        Some(older) if cursor.last_seq + 1 < older.until => cursor.last_seq,
                        Some(_) => {
                            finished.push(cursor.session);
                            cursor.last_seq.max(track.last)
                        }
                        None => cursor.last_seq.max(track.last),
                    },
                    None => cursor.last_seq,
                };
                next.push(Cursor {
                    session: cursor.session,
                    last_seq: seq,
                });
            }
        }
        for session in finished {
            self.finish_older(machine, session);
        }
        self.send_to(now, machine, &Hello { cursors: next }.into());
    }

    /// `Hello` with the device's cursors. After the session list (`sessions`), a session the
    /// device holds nothing of, or fell too far behind on, starts at its newest
    /// [`Config::resync_events`].
    fn send_hello(&mut self, now: u64, machine: Fingerprint, sessions: Option<&[SessionInfo]>) {
        let window = self.config.resync_events;
        let mut resets = Vec::new();
        let mut cursors = Vec::new();
        if let Some(peer) = self.peers.get_mut(&machine) {
            for info in sessions.unwrap_or_default() {
                let start = window.map_or(0, |window| info.last_seq.saturating_sub(window));
                let Some(track) = peer.track(info.id) else {
                    break;
                };
                if track.last < start {
                    if track.last > 0 {
                        resets.push(info.id);
                    }
                    *track = Track {
                        first: 0,
                        last: start,
                        complete: false,
                        older: None,
                    };
                }
                cursors.push(Cursor {
                    session: info.id,
                    last_seq: track.last,
                });
            }
            if sessions.is_none() {
                cursors.extend(peer.tracks.iter().map(|(session, track)| Cursor {
                    session: *session,
                    last_seq: track.last,
                }));
            }
        }
        for session in resets {
            self.note(Note::Reset { machine, session });
        }
        cursors.truncate(MAX_CURSORS);
        self.send_to(now, machine, &Hello { cursors }.into());
    }

    fn finish_older(&mut self, machine: Fingerprint, session: SessionId) {
        let Some(track) = self
            .peers
            .get_mut(&machine)
            .and_then(|peer| peer.tracks.get_mut(&session))
        else {
            return;
        };
        let Some(older) = track.older.take() else {
            return;
        };
        let found = older.lowest.is_some();
        if let Some(lowest) = older.lowest {
            track.first = track.first.min(lowest);
        }
        // From the log's start, or nothing older came: the device holds all there is.
        track.complete = older.after == 0 || !found;
        if self.pending.remove(&older.request).is_some() {
            self.answer(older.request, Ok(Answer::Older { found }));
        }
    }

    // ---- pairing ----

    fn start_pairing<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let Some(run) = self.pairing.as_mut() else {
            return;
        };
        let PairState::Waiting(ticket) = &run.state else {
            return;
        };
        let request = run.request;
        match Pairing::start(&self.identity, (**ticket).clone(), request, rng) {
            Ok((pairing, init)) => {
                run.state = PairState::Running(Box::new(pairing));
                self.send(init);
                self.note(Note::Pairing {
                    request,
                    progress: PairingProgress::Contacting,
                });
            }
            Err(error) => self.fail_pairing(ClientError::Pairing(error)),
        }
    }

    fn on_pair_recv(&mut self, now: u64, recv: &frame::PairRecv) {
        let Some(PairRun {
            request,
            state: PairState::Running(pairing),
            ..
        }) = self.pairing.as_mut()
        else {
            return;
        };
        if pairing.ticket().pairing_id != recv.pairing_id {
            return;
        }
        let request = *request;
        match pairing.on_pair_recv(&self.identity, &recv.payload, now / 1000) {
            Ok(PairingStep::Send(frame)) => {
                let registering = matches!(frame, Frame::Registry(_));
                self.send(frame);
                if registering {
                    self.note(Note::Pairing {
                        request,
                        progress: PairingProgress::Registering,
                    });
                }
            }
            Ok(PairingStep::Ignored) => {}
            Ok(PairingStep::Paired(..)) => {}
            Err(error) => self.fail_pairing(ClientError::Pairing(error)),
        }
    }

    fn on_registry_ack(&mut self, now: u64, request: u32) {
        match self.pending.get(&request).map(|pending| pending.waiter) {
            Some(Waiter::Revoke(machine)) => {
                self.pending.remove(&request);
                self.forget(&machine);
                self.answer(request, Ok(Answer::Revoked));
            }
            Some(Waiter::Entry(itself)) => {
                self.pending.remove(&request);
                self.answer(request, Ok(Answer::Registered));
                if itself {
                    // The relay closes this connection next and refuses the key from now on.
                    self.revoked_here(now, "this device revoked itself".into());
                }
            }
            Some(Waiter::Pair) => {
                let Some(PairRun {
                    state: PairState::Running(mut pairing),
                    relay,
                    ..
                }) = self.pairing.take()
                else {
                    return;
                };
                match pairing.on_registry_ack(request) {
                    Ok(PairingStep::Paired(frame, machine)) => {
                        self.send(frame);
                        self.pending.remove(&request);
                        let record = book::Machine::new(
                            &machine.identity,
                            &machine.hostname,
                            &relay,
                            now / 1000,
                        );
                        let fingerprint = machine.identity.fingerprint();
                        self.peers.insert(
                            fingerprint,
                            Peer::new(machine.identity, machine.hostname.to_string()),
                        );
                        self.answer(request, Ok(Answer::Paired(record)));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.pending.remove(&request);
                        self.answer(request, Err(ClientError::Pairing(error)));
                    }
                }
            }
            _ => {}
        }
    }

    fn fail_pairing(&mut self, error: ClientError) {
        if let Some(run) = self.pairing.take() {
            self.pending.remove(&run.request);
            self.answer(run.request, Err(error));
        }
    }

    // ---- requests ----

    /// The peer for a request: logged in, paired, online.
    fn ready_peer(&self, machine: &Fingerprint) -> Result<&Peer, ClientError> {
        if !self.is_online() {
            return Err(ClientError::NotConnected);
        }
        let peer = self.peers.get(machine).ok_or(ClientError::UnknownMachine)?;
        if !peer.online {
            return Err(ClientError::Offline {
                hostname: peer.hostname.clone(),
            });
        }
        Ok(peer)
    }

    fn fresh_number(&mut self) -> u32 {
        loop {
            let number = self.next_request;
            self.next_request = self.next_request.checked_add(1).unwrap_or(1);
            if !self.pending.contains_key(&number) {
                return number;
            }
        }
    }

    fn reserve(&mut self, deadline: u64, waiter: Waiter) -> Result<u32, ClientError> {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return Err(ClientError::Busy);
        }
        let request = self.fresh_number();
        self.pending.insert(request, Pending { deadline, waiter });
        Ok(request)
    }

    /// Answer `request` if `machine` is the one it was asked of.
    fn answer_from(
        &mut self,
        machine: Fingerprint,
        request: u32,
        result: Result<Answer, ClientError>,
    ) {
        match self.pending.get(&request).map(|pending| pending.waiter) {
            Some(Waiter::Machine(m) | Waiter::Older(m, _) | Waiter::Input(m)) if m == machine => {
                self.pending.remove(&request);
                self.answer(request, result);
            }
            Some(Waiter::Push(m, on)) if m == machine => {
                self.pending.remove(&request);
                // A removal, acknowledged, is not sent again (unless set again meanwhile).
                if !on && result.is_ok() && self.push.get(&machine) == Some(&None) {
                    self.push.remove(&machine);
                }
                let result = result.map(|_| ());
                self.note(Note::Push {
                    machine,
                    on,
                    result,
                });
            }
            _ => {}
        }
    }

    /// Send a frame the relay answers (a push query or subscription), numbered.
    fn relay_request(
        &mut self,
        now: u64,
        build: impl FnOnce(u32) -> Frame,
    ) -> Result<u32, ClientError> {
        if !self.is_online() {
            return Err(ClientError::NotConnected);
        }
        let request = self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::Relay)?;
        self.send(build(request));
        Ok(request)
    }

    /// Send a registry entry signed by this device, numbered; the relay acknowledges it.
    fn entry_request(
        &mut self,
        now: u64,
        itself: bool,
        sign: impl FnOnce(&Identity, u32) -> Result<Frame, EntryError>,
    ) -> Result<u32, ClientError> {
        if !self.is_online() {
            return Err(ClientError::NotConnected);
        }
        let request = self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::Entry(itself))?;
        match sign(&self.identity, request) {
            Ok(frame) => {
                self.send(frame);
                Ok(request)
            }
            Err(error) => {
                self.pending.remove(&request);
                Err(ClientError::Pairing(PeerError::Entry(error)))
            }
        }
    }

    /// What a machine hears right after the device's first `Hello` on a channel: whether the
    /// app is on screen, and the push keys it should hold.
    fn after_hello(&mut self, now: u64, machine: Fingerprint) {
        let visible = self.foreground;
        self.send_to(now, machine, &SetForeground { visible }.into());
        if let Some(push) = self.push.get(&machine).cloned() {
            self.send_push(now, machine, push);
        }
    }

    fn send_push(&mut self, now: u64, machine: Fingerprint, push: Option<PushKeys>) {
        let on = push.is_some();
        match self.reserve(now + REQUEST_TIMEOUT_MS, Waiter::Push(machine, on)) {
            Ok(request) => self.send_to(now, machine, &SetPush { request, push }.into()),
            Err(error) => self.note(Note::Push {
                machine,
                on,
                result: Err(error),
            }),
        }
    }

    fn answer(&mut self, request: u32, result: Result<Answer, ClientError>) {
        self.inputs.remove(&request);
        self.note(Note::Answer { request, result });
    }

    fn expire<R: CryptoRng + ?Sized>(&mut self, now: u64, request: u32, rng: &mut R) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        match pending.waiter {
            Waiter::Machine(machine) | Waiter::Input(machine) => {
                let hostname = self.hostname(&machine);
                self.answer(request, Err(ClientError::Timeout { hostname }));
            }
            Waiter::Older(machine, session) => {
                if let Some(track) = self
                    .peers
                    .get_mut(&machine)
                    .and_then(|peer| peer.tracks.get_mut(&session))
                {
                    track.older = None;
                }
                let hostname = self.hostname(&machine);
                self.answer(request, Err(ClientError::Timeout { hostname }));
            }
            // A machine that opens a channel but does not list its sessions is broken.
            Waiter::List(machine) => self.channel_failed(now, machine, rng),
            Waiter::Revoke(_) | Waiter::Relay | Waiter::Entry(_) => {
                self.answer(request, Err(ClientError::RelayTimeout))
            }
            Waiter::Push(machine, on) => {
                let hostname = self.hostname(&machine);
                let result = Err(ClientError::Timeout { hostname });
                self.note(Note::Push {
                    machine,
                    on,
                    result,
                });
            }
            Waiter::Pair => {
                let hostname = self
                    .pairing
                    .take()
                    .map(|run| run.hostname)
                    .unwrap_or_default();
                self.answer(request, Err(ClientError::PairingTimeout { hostname }));
            }
        }
    }

    // ---- output ----

    fn send(&mut self, frame: Frame) {
        self.out.push_back(Output::Send(frame.encode()));
    }

    /// Encrypt `message` for `machine` and send it; a channel that cannot encrypt is dropped.
    fn send_to(&mut self, now: u64, machine: Fingerprint, message: &DeviceMessage) {
        let Some(peer) = self.peers.get_mut(&machine) else {
            return;
        };
        match peer.link.send(message) {
            Ok(frame) => self.send(frame),
            Err(_) => {
                let hostname = peer.hostname.clone();
                self.close_link(&machine);
                self.fail_waiters(&machine, &hostname, false);
                if let Some(peer) = self.peers.get_mut(&machine) {
                    peer.failures = peer.failures.saturating_add(1);
                    peer.retry_at = Some(now + backoff::delay_ms(peer.failures, 0));
                }
            }
        }
    }

    fn note(&mut self, note: Note) {
        self.out.push_back(Output::Note(note));
    }

    fn hostname(&self, machine: &Fingerprint) -> String {
        self.peers
            .get(machine)
            .map(|peer| peer.hostname.clone())
            .unwrap_or_else(|| machine.to_string())
    }
}

/// `scheme://host:port` of a URL, lowercased, with the default port spelled out, so
/// `https://Relay.example/` and `https://relay.example:443` compare equal.
fn origin(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.to_ascii_lowercase();
    let has_port = match authority.rsplit_once(':') {
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    } && !authority.ends_with(']');
    let default = match scheme.as_str() {
        "https" | "wss" => "443",
        _ => "80",
    };
    let scheme = match scheme.as_str() {
        "wss" => "https",
        "ws" => "http",
        other => other,
    };
    if has_port {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}:{default}")
    }
}

mod input;
#[cfg(test)]
mod tests;
