//! Who is connected, the pairing rendezvous, and the registry they are checked against: every
//! decision about who may send what to whom is made here, under one lock that is held for map
//! lookups only (never across IO).
//!
//! Live connections are keyed by (fingerprint, role): a machine's daemon may hold its
//! `Machine` connection and a `PendingMachine` one (to pair another device) at once.
//!
//! - A **machine** (or pending machine) has one live connection: a second login for the same
//!   key and role displaces the first (newest active, the old one is sent `Error{Displaced}`
//!   and closed). iroh keeps the old connection open but inactive; closing it frees its
//!   resources at once, and a client that is told `Displaced` must not reconnect by itself,
//!   which is what stops two daemons sharing a key from fighting.
//! - A **device** may have up to `connections_per_device` live connections (the web app in
//!   several tabs, `ctl watch` beside `ctl approve`); a login past that displaces the *oldest*.
//!   They share one inbound byte budget ([`Budget`]). What a machine sends the device goes to
//!   every one of them (encoded once, the bytes shared by every queue): each connection runs
//!   its own end-to-end channel, and the connection id in the packet header lets each drop
//!   what is not its own.
//!
//! Who may reach whom is the registry's ([`crate::registry`]): a device reaches the machines it
//! paired with (an owner every machine of its account), and presence follows reach both ways.
//! A machine is told which devices may reach it ([`AllowedDevices`]) at login and whenever that
//! changes; what the account's devices may see of it is in [`account`].
//!
//! Machines learn about devices from [`DevicePresence`]: online when a device's first
//! connection comes up, offline when its last one goes, and in between which of the machine's
//! channels ended with a connection that closed. For that the router remembers, per device
//! connection, the (machine, connection id) of the session handshakes it carried (the packet
//! header's routing label; the relay reads nothing else of a payload).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::limits::RELAY_TRACKED_CHANNELS_PER_CONNECTION;
use async_tungstenite::tungstenite::Bytes;
use muxagent_proto::frame::{
    self, AllowedDevices, ClosedChannels, DevicePresence, ErrorCode, Frame, Hostname, Login,
    OpenPairing, PairRecv, PairSend, PairingId, PairingOpened, Presence, Reason, Recv,
    RegistryEntry, Role, SignedEntry,
};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::noise::ConnectionId;
use muxagent_proto::noise::packet::{self, Kind};

use crate::bucket::{Budget, Window};
use crate::metrics::{Disconnect, DropReason, LoginFailure, Metrics, Refusal, RouteKind, Sizes};
use crate::outbox::{Bound, Outbox, Pool, PushError};
use crate::pushback::{self, Held};
use crate::registry::{AccountRecord, Caps, Registry, Rules};

mod account;

/// Encode a frame for the wire.
pub(crate) fn encode(frame: Frame) -> Bytes {
    Bytes::from(frame.encode())
}

/// A reason for people, cut to the wire limit at a character boundary.
pub(crate) fn reason(text: &str) -> Reason {
    let mut out = Reason::new();
    for ch in text.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
    out
}

/// An `Error` frame.
pub(crate) fn error_frame(code: ErrorCode, request: Option<u32>, text: &str) -> Bytes {
    encode(Frame::Error(frame::Error {
        code,
        request,
        reason: reason(text),
    }))
}

/// A refused request: what the client is told and what is counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused {
    pub code: ErrorCode,
    /// The refusal counter to bump; `None` when a drop counter already counted it.
    pub counter: Option<Refusal>,
    pub reason: &'static str,
}

const fn refused(code: ErrorCode, counter: Refusal, reason: &'static str) -> Refused {
    Refused {
        code,
        counter: Some(counter),
        reason,
    }
}

/// A refused login.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoginRefused {
    pub code: ErrorCode,
    pub counter: LoginFailure,
    pub reason: &'static str,
}

/// A logged-in connection as the router knows it.
pub(crate) struct Session {
    pub conn: u64,
    pub fingerprint: Fingerprint,
    pub role: Role,
    pub outbox: Arc<Outbox>,
    /// The inbound byte budget, shared by every live connection of a device key
    /// ([`Router::login`] hands out the key's).
    pub budget: Arc<Budget>,
    /// The source prefix the connection came from (pairing ids are counted per prefix).
    pub prefix: IpAddr,
    /// Registry requests in the current minute.
    pub registry_requests: Mutex<Window>,
}

impl Session {
    fn key(&self) -> (Fingerprint, Role) {
        (self.fingerprint, self.role)
    }
}

/// One live connection.
struct Live {
    conn: u64,
    outbox: Arc<Outbox>,
    hostname: Option<Hostname>,
    /// For a machine: the account whose devices were told it is online.
    account: Option<Fingerprint>,
    /// Pairing ids this connection opened (at most `pairings_per_connection`).
    pairings: Vec<PairingId>,
    /// For a device: the channels (machine, connection id) whose handshakes this connection
    /// carried, oldest first, at most [`RELAY_TRACKED_CHANNELS_PER_CONNECTION`].
    channels: Vec<(Fingerprint, ConnectionId)>,
}

/// The live connections of one (key, role), oldest first: one for a machine, up to
/// `connections_per_device` for a device.
struct Key {
    conns: Vec<Live>,
    budget: Arc<Budget>,
}

impl Key {
    fn conn(&self, conn: u64) -> Option<&Live> {
        self.conns.iter().find(|live| live.conn == conn)
    }

    fn conn_mut(&mut self, conn: u64) -> Option<&mut Live> {
        self.conns.iter_mut().find(|live| live.conn == conn)
    }
}

struct Pairing {
    /// The opener's source prefix.
    prefix: IpAddr,
    opener_conn: u64,
    opener: (Fingerprint, Role),
    expires_at: u64,
    claimed_by: Option<Fingerprint>,
    used: bool,
}

/// The bounds the router enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouterLimits {
    pub caps: Caps,
    pub connections_per_device: usize,
    pub pairings_per_connection: usize,
    pub pairings_per_prefix: usize,
    pub max_pairings: usize,
    pub queue_bytes_per_account: usize,
    pub pairing_ttl_secs: u64,
}

#[derive(Default)]
struct State {
    live: HashMap<(Fingerprint, Role), Key>,
    pairings: Pairings,
    registry: Registry,
    /// The queue byte pool of each account with a live connection.
    queues: QueuePools,
}

/// The queue byte pool of each account, held by its connections' outboxes: a pool lives as long
/// as one of them, so the table only refers to them (and forgets dead ones as it grows).
#[derive(Default)]
struct QueuePools {
    by_account: HashMap<Fingerprint, Weak<Pool>>,
    /// Entries after the last sweep of dead ones.
    swept: usize,
}

impl QueuePools {
    /// `account`'s pool, made with `cap` bytes if none of its connections holds one.
    fn of(&mut self, account: Fingerprint, cap: usize) -> Arc<Pool> {
        if let Some(pool) = self.by_account.get(&account).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(Pool::new(cap));
        self.by_account.insert(account, Arc::downgrade(&pool));
        // Sweep when the table has doubled since the last sweep: dead entries stay at most
        // as many as live ones (plus 64), at O(1) amortised per login.
        if self.by_account.len() > 2 * self.swept.max(64) {
            self.by_account.retain(|_, pool| pool.strong_count() > 0);
            self.swept = self.by_account.len();
        }
        pool
    }
}

/// Open pairing ids, and how many each source prefix holds.
#[derive(Default)]
struct Pairings {
    by_id: HashMap<PairingId, Pairing>,
    per_prefix: HashMap<IpAddr, usize>,
}

impl Pairings {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn get(&self, id: &PairingId) -> Option<&Pairing> {
        self.by_id.get(id)
    }

    fn get_mut(&mut self, id: &PairingId) -> Option<&mut Pairing> {
        self.by_id.get_mut(id)
    }

    fn of_prefix(&self, prefix: &IpAddr) -> usize {
        self.per_prefix.get(prefix).copied().unwrap_or(0)
    }

    fn insert(&mut self, id: PairingId, pairing: Pairing) {
        *self.per_prefix.entry(pairing.prefix).or_insert(0) += 1;
        if let Some(old) = self.by_id.insert(id, pairing) {
            self.uncount(old.prefix);
        }
    }

    fn remove(&mut self, id: &PairingId) {
        if let Some(old) = self.by_id.remove(id) {
            self.uncount(old.prefix);
        }
    }

    /// Forget every id that has expired at `now`.
    fn sweep(&mut self, now: u64) {
        let per_prefix = &mut self.per_prefix;
        self.by_id.retain(|_, pairing| {
            let keep = pairing.expires_at > now;
            if !keep && let Some(count) = per_prefix.get_mut(&pairing.prefix) {
                *count -= 1;
                if *count == 0 {
                    per_prefix.remove(&pairing.prefix);
                }
            }
            keep
        });
    }

    fn uncount(&mut self, prefix: IpAddr) {
        if let Some(count) = self.per_prefix.get_mut(&prefix) {
            *count -= 1;
            if *count == 0 {
                self.per_prefix.remove(&prefix);
            }
        }
    }
}

pub(crate) struct Router {
    state: Mutex<State>,
    limits: RouterLimits,
    metrics: Arc<Metrics>,
}

/// An admitted login: what `LoginOk` says and what follows it.
pub(crate) struct Admitted {
    /// The account for `LoginOk`.
    pub account: Option<Fingerprint>,
    /// Frames to write right after `LoginOk` (presence of the account's machines to a device,
    /// of its devices to a machine).
    pub initial: Vec<Bytes>,
    /// The inbound budget the connection draws on (its key's, for a device).
    pub budget: Arc<Budget>,
}

/// What an accepted registry entry changed, for the author's connection.
pub(crate) struct Applied {
    /// Frames for the author to write after its ack (presence of the machines it reaches).
    pub frames: Vec<Bytes>,
    /// A device the entry revoked: whatever else the relay keeps for it (a push
    /// subscription) goes too. Its connections are closed already, but for the author's own
    /// when it revoked itself ([`Applied::close_author`]).
    pub revoked_device: Option<Fingerprint>,
    /// The author revoked itself: its connection closes after the acknowledgement.
    pub close_author: bool,
}

impl Router {
    pub(crate) fn new(limits: RouterLimits, metrics: Arc<Metrics>) -> Self {
        Router {
            state: Mutex::new(State::default()),
            limits,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, outbox: &Outbox, frame: Bytes) -> Result<(), PushError> {
        let result = outbox.push(frame);
        if let Err(error) = result {
            self.metrics.dropped(drop_reason(error));
        }
        result
    }

    /// Sizes for `/metrics`.
    pub(crate) fn sizes(&self) -> Sizes {
        let state = self.lock();
        let (accounts, machines, revoked) = state.registry.sizes();
        Sizes {
            accounts,
            machines,
            revoked,
            registry_keys: state.registry.keys(),
            registry_log_bytes: 0,
            pairings: state.pairings.len(),
            queued_bytes: 0,
            push_subscriptions: 0,
            pushes_held: 0,
        }
    }

    // ---- Registry at startup ----

    /// Fold one stored entry at startup: re-verify its signatures and the registry's rules.
    pub(crate) fn load(&self, signed: &SignedEntry) -> Result<(), String> {
        let entry = signed.verify().map_err(|e| e.to_string())?;
        let mut state = self.lock();
        state
            .registry
            .check(&entry, &self.limits.caps, Rules::Replay)?;
        state.registry.apply(&entry);
        Ok(())
    }

    /// Fold one account of a compacted log at startup, as it was verified when compacted.
    pub(crate) fn restore(&self, record: &AccountRecord) -> Result<(), &'static str> {
        self.lock().registry.restore(record)
    }

    /// Every account, for a compaction of the log.
    pub(crate) fn snapshot(&self) -> Vec<AccountRecord> {
        self.lock().registry.snapshot()
    }

    /// Keys the registry holds (machines, devices with an account, revoked keys).
    pub(crate) fn registry_keys(&self) -> usize {
        self.lock().registry.keys()
    }

    /// Keys `entry` would add to the registry now.
    pub(crate) fn new_keys(&self, entry: &RegistryEntry) -> usize {
        self.lock().registry.new_keys(entry)
    }

    /// The account whose registry request rate `entry` counts against: the account of the
    /// machine it names, else its author's, else (a key in no account) the author itself.
    pub(crate) fn rate_account(&self, entry: &RegistryEntry) -> Fingerprint {
        self.lock().registry.rate_account(entry)
    }

    // ---- Login ----

    /// Admit a verified login: check the key against the registry and make the session a live
    /// connection of its key and role (displacing an older one past the role's cap).
    pub(crate) fn login(
        &self,
        session: &Session,
        hostname: Option<Hostname>,
    ) -> Result<Admitted, LoginRefused> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let fp = session.fingerprint;
        let refuse = |code, counter, reason| {
            Err(LoginRefused {
                code,
                counter,
                reason,
            })
        };
        if state.registry.is_revoked(&fp) {
            return refuse(
                ErrorCode::Revoked,
                LoginFailure::Revoked,
                "this key is revoked",
            );
        }
        let mut initial = Vec::new();
        let account = match session.role {
            Role::Device => {
                if state.registry.machine(&fp).is_some() {
                    return refuse(
                        ErrorCode::LoginFailed,
                        LoginFailure::KeyConflict,
                        "this key is a registered machine, not a device",
                    );
                }
                initial = online_machines(state, &fp);
                state.registry.device_account(&fp)
            }
            Role::Machine => match state.registry.machine(&fp) {
                Some(record) => {
                    let account = record.account;
                    initial.push(allowed_devices(state, &fp));
                    initial.extend(online_devices(state, &fp));
                    Some(account)
                }
                None => {
                    return refuse(
                        ErrorCode::LoginFailed,
                        LoginFailure::NotPaired,
                        "this machine is not paired: log in as a pending machine and pair",
                    );
                }
            },
            Role::PendingMachine => {
                if state.registry.is_device(&fp) {
                    return refuse(
                        ErrorCode::LoginFailed,
                        LoginFailure::KeyConflict,
                        "this key is a device of an account, not a machine",
                    );
                }
                None
            }
        };
        let live = Live {
            conn: session.conn,
            outbox: session.outbox.clone(),
            hostname: hostname.clone(),
            account: if session.role == Role::Machine {
                account
            } else {
                None
            },
            pairings: Vec::new(),
            channels: Vec::new(),
        };
        let cap = match session.role {
            Role::Device => self.limits.connections_per_device.max(1),
            Role::Machine | Role::PendingMachine => 1,
        };
        let key = state.live.entry(session.key()).or_insert_with(|| Key {
            conns: Vec::new(),
            budget: session.budget.clone(),
        });
        let first = key.conns.is_empty();
        let displaced: Vec<Live> = if key.conns.len() >= cap {
            let excess = key.conns.len() + 1 - cap;
            key.conns.drain(..excess).collect()
        } else {
            Vec::new()
        };
        if session.role != Role::Device {
            // A machine's new connection starts with its own budget, as before.
            key.budget = session.budget.clone();
        }
        if let (Role::Device | Role::Machine, Some(account)) = (session.role, account) {
            let pool = state
                .queues
                .of(account, self.limits.queue_bytes_per_account);
            session.outbox.set_account(pool);
        }
        let budget = key.budget.clone();
        key.conns.push(live);
        for old in displaced {
            old.outbox.close_with(
                Some(error_frame(
                    ErrorCode::Displaced,
                    None,
                    "a newer login for this key took over",
                )),
                Disconnect::Displaced,
            );
            for id in &old.pairings {
                state.pairings.remove(id);
            }
            // The key stays online through the new connection; a device's machines only
            // hear which channels ended with the old one.
            if session.role == Role::Device {
                self.device_left(state, fp, &old, true);
            }
        }
        if first {
            match (session.role, account) {
                (Role::Machine, Some(_)) => {
                    let hostname = presence_hostname(state, &fp, &hostname);
                    let frame = encode(Frame::Presence(Presence {
                        machine: fp,
                        hostname,
                        online: true,
                    }));
                    self.tell_devices(state, &fp, &frame);
                }
                (Role::Device, _) => {
                    self.metrics.device_online(true);
                    self.tell_machines(state, &fp, &device_presence(fp, true));
                }
                _ => {}
            }
        }
        Ok(Admitted {
            account: if session.role == Role::PendingMachine {
                None
            } else {
                account
            },
            initial,
            budget,
        })
    }

    /// Forget a connection that ended (unless it was displaced already).
    pub(crate) fn logout(&self, session: &Session) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let key = session.key();
        let Some(entry) = state.live.get_mut(&key) else {
            return;
        };
        let Some(index) = entry.conns.iter().position(|l| l.conn == session.conn) else {
            return;
        };
        let live = entry.conns.remove(index);
        let last = entry.conns.is_empty();
        if last {
            state.live.remove(&key);
        }
        for id in &live.pairings {
            state.pairings.remove(id);
        }
        match key.1 {
            Role::Machine => {
                if live.account.is_some() {
                    let hostname = presence_hostname(state, &key.0, &live.hostname);
                    let frame = encode(Frame::Presence(Presence {
                        machine: key.0,
                        hostname,
                        online: false,
                    }));
                    self.tell_devices(state, &key.0, &frame);
                }
            }
            Role::Device => {
                if last {
                    self.metrics.device_online(false);
                }
                self.device_left(state, key.0, &live, !last);
            }
            Role::PendingMachine => {}
        }
    }

    /// A connection of `device` ended: tell each machine it reaches which of its channels
    /// ended with it, and (when it was the last one) that the device is offline.
    fn device_left(&self, state: &State, device: Fingerprint, live: &Live, still_online: bool) {
        for machine in state.registry.reachable(&device) {
            let closed: ClosedChannels = live
                .channels
                .iter()
                .filter(|(to, _)| to == machine)
                .map(|(_, connection)| *connection)
                .collect();
            if still_online && closed.is_empty() {
                continue;
            }
            if let Some(key) = state.live.get(&(*machine, Role::Machine)) {
                let frame = encode(Frame::DevicePresence(DevicePresence {
                    device,
                    online: still_online,
                    closed,
                }));
                for conn in &key.conns {
                    let _ = self.push(&conn.outbox, frame.clone());
                }
            }
        }
    }

    /// Push `frame` to every live connection of `key`.
    fn tell(&self, state: &State, key: (Fingerprint, Role), frame: &Bytes) {
        for conn in state.live.get(&key).into_iter().flat_map(|key| &key.conns) {
            let _ = self.push(&conn.outbox, frame.clone());
        }
    }

    /// Push `frame` to every live connection of every device that may reach `machine`.
    fn tell_devices(&self, state: &State, machine: &Fingerprint, frame: &Bytes) {
        for device in state.registry.allowed(machine) {
            self.tell(state, (device, Role::Device), frame);
        }
    }

    /// Push `frame` to every machine `device` may reach that is online.
    fn tell_machines(&self, state: &State, device: &Fingerprint, frame: &Bytes) {
        for machine in state.registry.reachable(device) {
            self.tell(state, (*machine, Role::Machine), frame);
        }
    }

    /// Tell every connection its own `frame()` and close it (shutdown).
    pub(crate) fn close_all(&self, mut frame: impl FnMut() -> Bytes) {
        let state = self.lock();
        for live in state.live.values().flat_map(|key| &key.conns) {
            live.outbox.close_with(Some(frame()), Disconnect::Shutdown);
        }
    }

    // ---- Routing ----

    /// Route a `Send` from `session`: only between a device and a machine of one account. A
    /// frame for a device goes to every live connection of it.
    ///
    /// `Ok(Some(held))` when a receiver's queue is full: the caller holds the frame for at most
    /// `pushback` (see [`crate::pushback`]).
    pub(crate) fn send(
        &self,
        session: &Session,
        send: frame::Send,
        pushback: Duration,
        behind: &dyn Fn(&Outbox) -> bool,
    ) -> Result<Option<Held>, Refused> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let registry = &state.registry;
        let from = session.fingerprint;
        let target_role = match session.role {
            Role::Device => {
                if registry.device_account(&from).is_none() {
                    return Err(refused(
                        ErrorCode::NotAllowed,
                        Refusal::NotAllowed,
                        "this device has no machines",
                    ));
                }
                if !registry.may_reach(&from, &send.to) {
                    return Err(refused(
                        ErrorCode::NotAllowed,
                        Refusal::NotAllowed,
                        "the receiver is not a machine this device paired with (nor is this \
                         device an owner of its account)",
                    ));
                }
                Role::Machine
            }
            Role::Machine => {
                if registry.machine(&from).is_none() {
                    return Err(refused(
                        ErrorCode::NotAllowed,
                        Refusal::NotAllowed,
                        "this machine is not paired",
                    ));
                }
                if !registry.may_reach(&send.to, &from) {
                    return Err(refused(
                        ErrorCode::NotAllowed,
                        Refusal::NotAllowed,
                        "the receiver is not a device that may reach this machine",
                    ));
                }
                Role::Device
            }
            Role::PendingMachine => {
                return Err(refused(
                    ErrorCode::NotAllowed,
                    Refusal::NotAllowed,
                    "a pending machine may only answer on its pairing ids",
                ));
            }
        };
        // A device opening a channel: remember it, to tell the machine when this connection
        // ends. Only the header's routing label is read.
        let opened = match packet::decode(&send.payload) {
            Ok(packet) if session.role == Role::Device && packet.kind() == Kind::SessionInit => {
                Some(packet.connection)
            }
            _ => None,
        };
        let Some(key) = state.live.get(&(send.to, target_role)) else {
            return Err(refused(
                ErrorCode::PeerOffline,
                Refusal::PeerOffline,
                "the receiver is not connected",
            ));
        };
        let len = send.payload.len();
        let frame = encode(Frame::Recv(Recv {
            from,
            payload: send.payload,
        }));
        // Every connection gets it (the bytes are shared, not copied). The sender hears of a
        // drop if any connection's queue refused it: that connection's channel has a gap.
        let routed = self.deliver(
            session,
            key.conns.iter(),
            frame,
            RouteKind::Send,
            len,
            pushback,
            behind,
        );
        if let (Some(connection), Ok(_)) = (opened, &routed)
            && let Some(live) = state
                .live
                .get_mut(&session.key())
                .and_then(|key| key.conn_mut(session.conn))
        {
            let channel = (send.to, connection);
            if !live.channels.contains(&channel) {
                if live.channels.len() >= RELAY_TRACKED_CHANNELS_PER_CONNECTION {
                    live.channels.remove(0);
                }
                live.channels.push(channel);
            }
        }
        routed
    }

    /// Push `frame` to every one of `receivers`. Those whose queue is full at its own bound,
    /// and those `behind` a frame `session`'s connection already holds for them (their order
    /// is kept), make it a [`Held`] frame for that connection to hold for `pushback` (see
    /// [`crate::pushback`]); otherwise the sender's answer (`Dropped` if a queue refused it,
    /// `PeerOffline` if every receiver was closing).
    #[allow(clippy::too_many_arguments)]
    fn deliver<'a>(
        &self,
        session: &Session,
        receivers: impl Iterator<Item = &'a Live>,
        frame: Bytes,
        kind: RouteKind,
        len: usize,
        pushback: Duration,
        behind: &dyn Fn(&Outbox) -> bool,
    ) -> Result<Option<Held>, Refused> {
        let (mut delivered, mut dropped) = (false, false);
        let mut waiting = Vec::new();
        for live in receivers {
            if behind(&live.outbox) {
                waiting.push(live.outbox.clone());
                continue;
            }
            match live.outbox.push(frame.clone()) {
                Ok(()) => {
                    delivered = true;
                    self.metrics.routed(kind, len);
                }
                Err(PushError::Full(Bound::Connection)) => waiting.push(live.outbox.clone()),
                Err(error) => {
                    dropped |= error != PushError::Closing;
                    self.metrics.dropped(drop_reason(error));
                }
            }
        }
        if !waiting.is_empty() {
            self.metrics.held();
            return Ok(Some(Held::new(
                frame,
                waiting,
                kind,
                len,
                delivered,
                dropped,
                session.conn,
                Instant::now(),
                pushback,
                self.metrics.clone(),
            )));
        }
        match pushback::outcome(delivered, dropped) {
            Some(refused) => Err(refused),
            None => Ok(None),
        }
    }

    // ---- Web Push ----

    /// Whether `device` is a device of an account. Only those hold a push subscription, so
    /// the registry bounds the table (anyone can make a key and log in as a device).
    pub(crate) fn device_has_account(&self, device: &Fingerprint) -> bool {
        self.lock().registry.device_account(device).is_some()
    }

    /// Whether `device` may reach `machine` (so `machine` may push to it): it paired with it,
    /// or it is an owner of its account.
    pub(crate) fn may_reach(&self, device: &Fingerprint, machine: &Fingerprint) -> bool {
        self.lock().registry.may_reach(device, machine)
    }

    // ---- Pairing rendezvous ----

    /// A pending machine (or a paired one pairing a further device) opens a pairing id.
    pub(crate) fn open_pairing(
        &self,
        session: &Session,
        open: &OpenPairing,
        now: u64,
    ) -> Result<PairingOpened, Refused> {
        if !matches!(session.role, Role::PendingMachine | Role::Machine) {
            return Err(refused(
                ErrorCode::NotAllowed,
                Refusal::NotAllowed,
                "only a machine opens pairing ids",
            ));
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(existing) = state.pairings.get(&open.pairing_id) {
            let live = existing.expires_at > now && !existing.used;
            if live && existing.opener_conn == session.conn {
                // Opening one's own live id again is answered, not refused (a retried frame).
                return Ok(PairingOpened {
                    pairing_id: open.pairing_id,
                    expires_at: existing.expires_at,
                });
            }
            if live || existing.used {
                return Err(refused(
                    ErrorCode::PairingTaken,
                    Refusal::PairingTaken,
                    "this pairing id is in use",
                ));
            }
            // Expired and never used: forget it, and open it afresh below.
            state.pairings.remove(&open.pairing_id);
        }
        let Some(live) = state
            .live
            .get_mut(&session.key())
            .and_then(|key| key.conn_mut(session.conn))
        else {
            return Err(refused(
                ErrorCode::NotAllowed,
                Refusal::NotAllowed,
                "this connection is closing",
            ));
        };
        // Forget this connection's expired or used ids before counting.
        let pairings = &mut state.pairings;
        live.pairings.retain(|id| {
            let keep = pairings
                .get(id)
                .is_some_and(|p| p.expires_at > now && !p.used);
            if !keep {
                pairings.remove(id);
            }
            keep
        });
        if live.pairings.len() >= self.limits.pairings_per_connection {
            return Err(refused(
                ErrorCode::RateLimited,
                Refusal::PairingLimit,
                "this connection has its maximum of open pairing ids",
            ));
        }
        if state.pairings.of_prefix(&session.prefix) >= self.limits.pairings_per_prefix
            || state.pairings.len() >= self.limits.max_pairings
        {
            state.pairings.sweep(now);
            if state.pairings.of_prefix(&session.prefix) >= self.limits.pairings_per_prefix {
                return Err(refused(
                    ErrorCode::RateLimited,
                    Refusal::PairingLimit,
                    "this network has its maximum of open pairing ids; try again later",
                ));
            }
            if state.pairings.len() >= self.limits.max_pairings {
                return Err(refused(
                    ErrorCode::RateLimited,
                    Refusal::PairingLimit,
                    "the relay has its maximum of open pairing ids; try again later",
                ));
            }
        }
        let ceiling = now.saturating_add(self.limits.pairing_ttl_secs);
        // A machine whose clock is behind would ask for an expiry in our past: give it the TTL.
        let expires_at = if open.expires_at > now {
            open.expires_at.min(ceiling)
        } else {
            ceiling
        };
        live.pairings.push(open.pairing_id);
        state.pairings.insert(
            open.pairing_id,
            Pairing {
                prefix: session.prefix,
                opener_conn: session.conn,
                opener: session.key(),
                expires_at,
                claimed_by: None,
                used: false,
            },
        );
        self.metrics.pairing_opened();
        Ok(PairingOpened {
            pairing_id: open.pairing_id,
            expires_at,
        })
    }

    /// Forward a `PairSend`: a device's goes to the machine that opened the id (the first
    /// device to send claims it); the machine's goes to the device that claimed it.
    pub(crate) fn pair_send(
        &self,
        session: &Session,
        send: PairSend,
        now: u64,
        pushback: Duration,
        behind: &dyn Fn(&Outbox) -> bool,
    ) -> Result<Option<Held>, Refused> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let unknown = refused(
            ErrorCode::PairingUnknown,
            Refusal::PairingUnknown,
            "no live pairing has this id",
        );
        let Some(pairing) = state.pairings.get_mut(&send.pairing_id) else {
            return Err(unknown);
        };
        // A used id still carries the last messages between its machine and the device that
        // registered it (the device tells the machine the registration went through); no
        // other device can reach it, since it stays claimed.
        if pairing.expires_at <= now || (pairing.used && pairing.claimed_by.is_none()) {
            return Err(unknown);
        }
        let from = session.fingerprint;
        let target = if session.conn == pairing.opener_conn {
            match pairing.claimed_by {
                // Every connection of the claiming device: its pairing flow ignores packets
                // of another attempt.
                Some(device) => (device, Role::Device),
                None => {
                    return Err(refused(
                        ErrorCode::NotAllowed,
                        Refusal::NotAllowed,
                        "no device has reached this pairing id yet",
                    ));
                }
            }
        } else if session.role == Role::Device {
            match pairing.claimed_by {
                None => {
                    pairing.claimed_by = Some(from);
                    self.metrics.pairing_claimed();
                }
                Some(device) if device == from => {}
                Some(_) => {
                    return Err(refused(
                        ErrorCode::PairingTaken,
                        Refusal::PairingTaken,
                        "another device already claimed this pairing id",
                    ));
                }
            }
            pairing.opener
        } else {
            return Err(refused(
                ErrorCode::NotAllowed,
                Refusal::NotAllowed,
                "only a device or the pairing id's machine may send on it",
            ));
        };
        let opener_conn = pairing.opener_conn;
        let offline = refused(
            ErrorCode::PeerOffline,
            Refusal::PeerOffline,
            "the other side of this pairing is not connected",
        );
        let Some(key) = state.live.get(&target) else {
            return Err(offline);
        };
        let receivers: Vec<&Live> = if target.1 == Role::Device {
            key.conns.iter().collect()
        } else {
            key.conn(opener_conn).into_iter().collect()
        };
        if receivers.is_empty() {
            return Err(offline);
        }
        let len = send.payload.len();
        let frame = encode(Frame::PairRecv(PairRecv {
            pairing_id: send.pairing_id,
            from,
            payload: send.payload,
        }));
        self.deliver(
            session,
            receivers.into_iter(),
            frame,
            RouteKind::Pair,
            len,
            pushback,
            behind,
        )
    }

    // ---- Registry changes from clients ----

    /// Whether `entry` (already signature-verified) may be accepted from `session` now: it must
    /// come from its author's own connection in the right role, a registration must name a
    /// live pairing id that its machine opened and this device claimed, and the registry's
    /// rules must allow it.
    pub(crate) fn check_entry(
        &self,
        session: &Session,
        entry: &RegistryEntry,
        now: u64,
    ) -> Result<(), &'static str> {
        let author_role = match entry {
            RegistryEntry::RegisterMachine { .. }
            | RegistryEntry::RevokeMachine { .. }
            | RegistryEntry::GrantOwner { .. }
            | RegistryEntry::RevokeDevice { .. } => Role::Device,
            RegistryEntry::UnpairMachine { .. } => Role::Machine,
        };
        // The fingerprint covers both public keys: equal fingerprints, equal identities.
        if entry.author().fingerprint() != session.fingerprint || session.role != author_role {
            return Err("a registry entry must be sent by its author, logged in in its role");
        }
        let state = self.lock();
        if let RegistryEntry::RegisterMachine {
            machine,
            pairing_id,
            ..
        } = entry
        {
            let Some(pairing) = state.pairings.get(pairing_id) else {
                return Err("the pairing id is not open on this relay");
            };
            if pairing.used || pairing.expires_at <= now {
                return Err("the pairing id has expired or was used");
            }
            if pairing.opener.0 != machine.fingerprint() {
                return Err("the pairing id was opened by another machine");
            }
            if pairing.claimed_by != Some(session.fingerprint) {
                return Err("this device has not claimed the pairing id");
            }
        }
        state.registry.check(entry, &self.limits.caps, Rules::Live)
    }

    /// Apply an entry that passed [`Router::check_entry`] and is durable in the log, and tell
    /// whom it concerns: presence follows reach, a machine whose allowed devices changed is
    /// told them, and a revoked key's connections are closed at once.
    pub(crate) fn apply_entry(&self, entry: &RegistryEntry, author: &Session) -> Applied {
        let mut guard = self.lock();
        let state = &mut *guard;
        // What the entry takes away, seen before it is applied.
        let reached: Vec<Fingerprint> = match entry {
            RegistryEntry::RegisterMachine { device, .. } => {
                state.registry.reachable(&device.fingerprint()).to_vec()
            }
            RegistryEntry::GrantOwner { device, .. }
            | RegistryEntry::RevokeDevice { device, .. } => {
                state.registry.reachable(device).to_vec()
            }
            RegistryEntry::RevokeMachine { .. } | RegistryEntry::UnpairMachine { .. } => Vec::new(),
        };
        let audience: Vec<Fingerprint> = match entry {
            RegistryEntry::RevokeMachine { machine, .. } => state.registry.allowed(machine),
            RegistryEntry::UnpairMachine { machine, .. } => {
                state.registry.allowed(&machine.fingerprint())
            }
            _ => Vec::new(),
        };
        state.registry.apply(entry);
        let mut applied = Applied {
            frames: Vec::new(),
            revoked_device: None,
            close_author: false,
        };
        match entry {
            RegistryEntry::RegisterMachine {
                device, pairing_id, ..
            } => {
                if let Some(pairing) = state.pairings.get_mut(pairing_id) {
                    pairing.used = true;
                }
                let device = device.fingerprint();
                applied.frames = online_machines(state, &device);
                // A new pair: the machine (if online) hears its allowed devices and the device.
                self.reach_gained(state, &device, &reached);
            }
            RegistryEntry::GrantOwner { device, .. } => {
                self.reach_gained(state, device, &reached);
                // The new owner's connections learn the machines it reaches now.
                for frame in online_machines(state, device) {
                    self.tell(state, (*device, Role::Device), &frame);
                }
            }
            RegistryEntry::RevokeDevice { device, .. } => {
                let frame = error_frame(ErrorCode::Revoked, None, "this device was revoked");
                for live in state
                    .live
                    .get(&(*device, Role::Device))
                    .into_iter()
                    .flat_map(|key| &key.conns)
                {
                    if live.conn == author.conn {
                        // It revoked itself: it hears the acknowledgement, then the close.
                        applied.close_author = true;
                        continue;
                    }
                    live.outbox
                        .close_with(Some(frame.clone()), Disconnect::Revoked);
                }
                for machine in &reached {
                    self.tell(
                        state,
                        (*machine, Role::Machine),
                        &allowed_devices(state, machine),
                    );
                }
                applied.revoked_device = Some(*device);
            }
            RegistryEntry::RevokeMachine { machine, .. } => {
                let frame = error_frame(ErrorCode::Revoked, None, "this machine was revoked");
                for role in [Role::Machine, Role::PendingMachine] {
                    for live in state
                        .live
                        .get(&(*machine, role))
                        .into_iter()
                        .flat_map(|key| &key.conns)
                    {
                        live.outbox
                            .close_with(Some(frame.clone()), Disconnect::Revoked);
                    }
                }
                self.machine_left(state, machine, &audience);
            }
            RegistryEntry::UnpairMachine { machine, .. } => {
                self.machine_left(state, &machine.fingerprint(), &audience);
            }
        }
        applied
    }

    /// `device` may reach more machines than `before`: each new one is told its allowed
    /// devices, and that the device is online if it is.
    fn reach_gained(&self, state: &State, device: &Fingerprint, before: &[Fingerprint]) {
        let online = state.live.contains_key(&(*device, Role::Device));
        for machine in state.registry.reachable(device) {
            if before.contains(machine) {
                continue;
            }
            let key = (*machine, Role::Machine);
            self.tell(state, key, &allowed_devices(state, machine));
            if online {
                self.tell(state, key, &device_presence(*device, true));
            }
        }
    }

    /// `machine` left the registry: the devices that reached it (`audience`, seen before) hear
    /// it is offline, once (its connection no longer counts as announced).
    fn machine_left(&self, state: &mut State, machine: &Fingerprint, audience: &[Fingerprint]) {
        let taken = state
            .live
            .get_mut(&(*machine, Role::Machine))
            .and_then(|key| key.conns.first_mut())
            .and_then(|live| live.account.take().map(|_| live.hostname.clone()));
        if let Some(hostname) = taken {
            let hostname = presence_hostname(state, machine, &hostname);
            let frame = encode(Frame::Presence(Presence {
                machine: *machine,
                hostname,
                online: false,
            }));
            for device in audience {
                self.tell(state, (*device, Role::Device), &frame);
            }
        }
    }
}

/// The drop counter for a frame `outbox.push` refused.
pub(crate) fn drop_reason(error: PushError) -> DropReason {
    match error {
        PushError::Full(Bound::Connection) => DropReason::QueueFull,
        PushError::Full(Bound::Account) => DropReason::AccountQueueFull,
        PushError::Full(Bound::Total) => DropReason::TotalQueueFull,
        PushError::Closing => DropReason::ReceiverClosing,
    }
}

/// Presence frames for every machine `device` may reach that is online now.
fn online_machines(state: &State, device: &Fingerprint) -> Vec<Bytes> {
    state
        .registry
        .reachable(device)
        .iter()
        .filter_map(|machine| {
            let live = state.live.get(&(*machine, Role::Machine))?.conns.first()?;
            let hostname = presence_hostname(state, machine, &live.hostname);
            Some(encode(Frame::Presence(Presence {
                machine: *machine,
                hostname,
                online: true,
            })))
        })
        .collect()
}

/// Device presence frames for every device that may reach `machine` and is online now (for
/// a machine that logs in).
fn online_devices(state: &State, machine: &Fingerprint) -> Vec<Bytes> {
    state
        .registry
        .allowed(machine)
        .into_iter()
        .filter(|device| state.live.contains_key(&(*device, Role::Device)))
        .map(|device| device_presence(device, true))
        .collect()
}

/// The devices that may reach `machine` now, as the machine is told them.
fn allowed_devices(state: &State, machine: &Fingerprint) -> Bytes {
    encode(Frame::AllowedDevices(AllowedDevices {
        devices: state.registry.allowed(machine),
    }))
}

/// A `DevicePresence` that names no closed channel.
fn device_presence(device: Fingerprint, online: bool) -> Bytes {
    encode(Frame::DevicePresence(DevicePresence {
        device,
        online,
        closed: ClosedChannels::new(),
    }))
}

/// The hostname to announce: the one from the machine's login, else the registered one.
fn presence_hostname(state: &State, machine: &Fingerprint, login: &Option<Hostname>) -> Hostname {
    login
        .clone()
        .or_else(|| {
            state
                .registry
                .machine(machine)
                .map(|record| record.hostname.clone())
        })
        .unwrap_or_else(|| {
            let mut unknown = Hostname::new();
            let _ = unknown.push('?');
            unknown
        })
}

/// Check a login frame's shape against what this relay speaks (the signature is checked by
/// the caller against its challenge).
pub(crate) fn check_version(login: &Login, min: u16, max: u16) -> bool {
    (min..=max).contains(&login.protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_queue_pool_lives_with_its_connections() {
        let mut pools = QueuePools::default();
        let account = |n: u8| Fingerprint([n; 32]);
        let held = pools.of(account(0), 100);
        assert!(Arc::ptr_eq(&held, &pools.of(account(0), 100)));
        // Accounts whose connections all went are swept as the table grows.
        for n in 1..=200 {
            drop(pools.of(account(n), 100));
        }
        assert!(
            pools.by_account.len() <= 2 * 64,
            "{}",
            pools.by_account.len()
        );
        assert!(Arc::ptr_eq(&held, &pools.of(account(0), 100)));
    }
}
