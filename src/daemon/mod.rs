//! The machine's daemon: one process per machine that keeps the relay link, runs sessions and
//! answers devices. Everything runs on one thread (a `LocalExecutor`), so the shared state is a
//! `RefCell` that is never held across an await.
//!
//! - [`state`]: what is kept between runs (`machine.json`).
//! - [`sessions`]: the sessions' logs and metadata.
//! - [`runtime`]: the agent adapters (command, Claude Code, Codex, ACP) behind one trait.
//! - [`process`]: agent processes in their own process groups.
//! - [`session_machine`]: a session's state machine, sans IO — status, approvals' life, usage.
//! - [`agent`]: agent processes — start, prompt, interrupt, mode, stop — feeding the machine.
//! - [`approvals`]: signed decisions' checks, and the whole inputs devices fetch.
//! - [`refusal`]: why a device's request was refused, for people, and its wire code.
//! - [`notify`]: what is worth a push notification to which device, and when (sans-IO).
//! - [`webpush`]: a notice encrypted for a device's push subscription (RFC 8291).
//! - [`link`]: the relay connection, pairing, device requests and replay.
//! - [`control`]: the Unix socket the CLI talks to.
//! - [`lock`]: one daemon per `$MUXAGENT_HOME`.

pub mod agent;
pub mod approvals;
pub mod control;
pub mod link;
pub mod lock;
pub mod notify;
pub mod process;
pub mod refusal;
pub mod runtime;
pub mod session_machine;
pub mod sessions;
pub mod state;
pub mod webpush;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use crate::limits::DAEMON_COMMIT_MAX_EVENTS;
use muxagent_proto::app::{Event, EventKind, MachineMessage, SessionId, SessionStatus};
use muxagent_proto::frame::{self, DevicePresence, Frame, Hostname};
use muxagent_proto::identity::{Fingerprint, Identity, PublicIdentity};
use muxagent_proto::noise::ConnectionId;
use smol::channel::{Receiver, Sender};
use smol::{LocalExecutor, Timer};

use crate::home::{Home, HomeError};
use crate::log;
use crate::os;
use link::Link;
use notify::{Context, Notifier};
use refusal::Refusal;
use runtime::Command;
use session_machine::{Effect, Input, Machine, Policy};
use sessions::{SessionError, Sessions};
use state::MachineState;

/// What the relay link sends, in order. App messages are encrypted when they are written, so
/// the channel's counter order is the wire order.
#[derive(Debug)]
pub enum Out {
    /// A frame as it is.
    Frame(Frame),
    /// An app message for one connection of a device, encrypted on its channel when written
    /// (dropped if the device has moved to another connection since).
    ToDevice(Route, MachineMessage),
    /// Nothing to send: look at the state again (a pairing was asked for).
    Wake,
}

/// One connection of a paired device: where answers and the events it subscribed to go.
///
/// A device may be connected several times at once (tabs of the web app, `ctl watch` beside
/// `ctl approve`), each connection with its own channel; the relay delivers what the machine
/// sends the device to all of them, and each drops what was not sealed for it. So everything
/// the machine says is addressed to a route, never to a device as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub device: Fingerprint,
    pub connection: ConnectionId,
}

/// An event logged but not yet durable: what [`Core::commit`] does with it once it is.
#[derive(Debug)]
struct Uncommitted {
    event: Event,
    /// The session's status before it, for the notifier; `None`: not shown to the notifier.
    notify: Option<SessionStatus>,
}

/// What a step of a session's machine leaves to the asynchronous shell ([`agent::step`]).
#[derive(Debug, Default)]
pub struct Stepped {
    /// When to give the machine a [`Input::Tick`] (unix seconds).
    pub timers: Vec<u64>,
    /// The first of its events that could not be logged (already reported).
    pub unrecorded: Option<SessionError>,
}

/// Everything the daemon's tasks share. Its fields are the daemon's modules' (none is public);
/// the relay link's state is the link's own ([`Link`]), reached through its methods.
pub struct Core {
    home: Home,
    identity: Rc<Identity>,
    hostname: Hostname,
    state: MachineState,
    sessions: Sessions,
    /// The relay connection, device channels, subscriptions and pairing.
    link: Link,
    agents: BTreeMap<SessionId, agent::Running>,
    /// Sessions a device asked to stop (their exit is `Stopped`, not `Error`).
    stopping: BTreeSet<SessionId>,
    /// Budgets for warnings a peer causes (junk packets, refusals), by peer.
    warnings: log::Throttle<String>,
    /// What to push to which device, and when.
    notifier: Notifier,
    /// Wakes the push timer ([`push_timer`]) to look at the notifier again.
    push_wake: (Sender<()>, Receiver<()>),
    /// Events logged since the last [`Core::commit`], in order; at most
    /// [`DAEMON_COMMIT_MAX_EVENTS`].
    uncommitted: Vec<Uncommitted>,
    /// Wakes the committer ([`committer`]): events wait in `uncommitted`.
    commit_wake: (Sender<()>, Receiver<()>),
}

/// The shared state.
pub type Shared = Rc<RefCell<Core>>;

/// The daemon could not start or run.
#[derive(Debug)]
pub enum DaemonError {
    /// The state folder.
    Home(HomeError),
    /// The session logs.
    Sessions(SessionError),
    /// Another daemon holds the lock.
    AlreadyRunning(String),
    /// No relay URL was given or saved.
    NoRelay,
    /// A socket or process operation failed.
    Io(&'static str, std::io::Error),
    /// The hostname set for this machine cannot be shown to people as it is.
    Hostname(String),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Home(error) => error.fmt(f),
            DaemonError::Sessions(error) => error.fmt(f),
            DaemonError::AlreadyRunning(pid) => write!(f, "the daemon is already running (pid {pid})"),
            DaemonError::Hostname(why) => f.write_str(why),
            DaemonError::NoRelay => f.write_str(
                "no relay is set: pass --relay URL (e.g. https://relay.example.net) once; it is saved",
            ),
            DaemonError::Io(what, error) => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<HomeError> for DaemonError {
    fn from(error: HomeError) -> Self {
        DaemonError::Home(error)
    }
}

impl From<SessionError> for DaemonError {
    fn from(error: SessionError) -> Self {
        DaemonError::Sessions(error)
    }
}

/// What is said about a session whose log could not be read.
pub fn set_aside_message(damaged: &sessions::Damaged) -> String {
    format!(
        "session {:#} is set aside: its history cannot be read ({}); the other sessions work",
        damaged.id, damaged.reason
    )
}

/// A session set aside as a row of `muxagent sessions --json`.
pub fn damaged_json(damaged: &sessions::Damaged) -> serde_json::Value {
    serde_json::json!({
        "id": format!("{:#}", damaged.id),
        "status": "damaged",
        "error": set_aside_message(damaged),
    })
}

/// Path of the sessions folder.
pub fn sessions_dir(home: &Home) -> PathBuf {
    home.path("sessions")
}

impl Core {
    /// Load keys, state and sessions from `home`.
    pub fn load(home: Home, replays: Sender<(Route, u64)>) -> Result<Self, DaemonError> {
        let identity = home.load_or_create_identity(state::KEY_FILE, &mut os::rng())?;
        let state = MachineState::load(&home)?;
        let (sessions, repaired) = Sessions::open(&sessions_dir(&home))?;
        let hostname = os::hostname().map_err(DaemonError::Hostname)?;
        let notifier = Notifier::new(
            identity.public().fingerprint(),
            &hostname,
            webpush::topic_key(&identity.to_secret_bytes()[..]),
        );
        for line in repaired {
            log::warn(&line);
        }
        for damaged in sessions.damaged() {
            log::error(&set_aside_message(damaged));
        }
        Ok(Core {
            identity: Rc::new(identity),
            hostname,
            state,
            sessions,
            link: Link::new(replays),
            agents: BTreeMap::new(),
            stopping: BTreeSet::new(),
            warnings: log::Throttle::new(),
            notifier,
            push_wake: smol::channel::bounded(1),
            uncommitted: Vec::new(),
            commit_wake: smol::channel::bounded(1),
            home,
        })
    }

    /// Forget the account and every paired device and make new keys, without the relay (which
    /// may refuse this machine: it was revoked). Sessions stay. The relay link logs in again at
    /// once as a pending machine, ready to pair. Returns the new fingerprint.
    pub fn reset(&mut self) -> Result<Fingerprint, HomeError> {
        let identity = state::reset(&self.home, &mut self.state)?;
        let fingerprint = identity.public().fingerprint();
        self.notifier.rekey(
            fingerprint,
            webpush::topic_key(&identity.to_secret_bytes()[..]),
        );
        self.identity = Rc::new(identity);
        self.link.reset();
        log::info(&format!(
            "reset: this machine forgot its account and devices; its new fingerprint is {fingerprint}"
        ));
        Ok(fingerprint)
    }

    /// Mark sessions whose process died with the previous daemon.
    pub fn close_orphans(&mut self) -> Result<(), SessionError> {
        for id in self.sessions.unfinished() {
            let stepped = self.step(id, Input::Orphaned, os::unix_now());
            if let Ok(Stepped {
                unrecorded: Some(error),
                ..
            }) = stepped
            {
                return Err(error);
            }
        }
        self.commit();
        Ok(())
    }

    /// Session `id`'s machine: what its log says, and its running agent.
    pub fn machine(&self, id: SessionId) -> Result<Machine<'_>, Refusal> {
        let (Some(info), Some(state)) = (self.sessions.info(&id), self.sessions.state(&id)) else {
            return Err(Refusal::UnknownSession(id));
        };
        let agent = self.agents.get(&id).map(|running| running.machine.clone());
        let policy = Policy {
            auto_deny_after_minutes: self.state.auto_deny_after_minutes,
        };
        Ok(Machine::new(
            id,
            info.status,
            info.usage,
            state,
            agent,
            policy,
        ))
    }

    /// Feed `input` to session `id`'s machine at time `now` and run its effects: log its
    /// events ([`Core::record`]: devices get them after the fsync), hand the agent its commands,
    /// keep whole inputs. Timers are left to the caller ([`agent::step`] arms them). A refused
    /// input, or a command the agent's full queue cannot take, changes nothing.
    pub fn step(&mut self, id: SessionId, input: Input, now: u64) -> Result<Stepped, Refusal> {
        self.step_as(id, input, now, true)
    }

    /// [`Core::step`]; `notify`: its events are shown to the notifier.
    fn step_as(
        &mut self,
        id: SessionId,
        input: Input,
        now: u64,
        notify: bool,
    ) -> Result<Stepped, Refusal> {
        let (effects, agent) = {
            let mut machine = self.machine(id)?;
            (machine.step(input, now)?, machine.into_agent())
        };
        let mut stepped = Stepped::default();
        for effect in effects {
            match effect {
                Effect::Tell(command) => {
                    if !self.tell(id, command) {
                        // The step's first effect: nothing ran yet.
                        return Err(Refusal::Busy);
                    }
                }
                Effect::TellIfPossible(command) => {
                    self.tell(id, command);
                }
                Effect::Append(kind) => {
                    let logged = if notify {
                        self.record(id, kind, now).map(drop)
                    } else {
                        self.append(id, kind, now, None).map(drop)
                    };
                    if let Err(error) = logged {
                        report(id, &error);
                        stepped.unrecorded.get_or_insert(error);
                    }
                }
                Effect::KeepWhole { approval, input } => {
                    approvals::keep_whole(self, id, approval, &input);
                }
                Effect::Timer { at } => stepped.timers.push(at),
            }
        }
        if let (Some(agent), Some(running)) = (agent, self.agents.get_mut(&id)) {
            running.machine = agent;
        }
        Ok(stepped)
    }

    /// Hand session `id`'s agent a command; false if it is gone or its queue is full.
    fn tell(&self, id: SessionId, command: Command) -> bool {
        self.agents
            .get(&id)
            .is_some_and(|running| running.commands.try_send(command).is_ok())
    }

    /// Log an event; [`Core::commit`] makes it durable and then sends it to every caught-up
    /// connection and shows it to the notifier, later in this executor turn (the committer
    /// task is woken), or now if [`DAEMON_COMMIT_MAX_EVENTS`] wait. Its effect on the session's
    /// metadata and state is immediate.
    pub fn record(
        &mut self,
        id: SessionId,
        kind: EventKind,
        at: u64,
    ) -> Result<Event, SessionError> {
        let before = self.sessions.info(&id).map(|info| info.status);
        let event = self.append(id, kind, at, Some(before.unwrap_or(SessionStatus::Idle)))?;
        if self.uncommitted.len() >= DAEMON_COMMIT_MAX_EVENTS {
            self.commit();
        }
        Ok(event)
    }

    /// Log an event to be sent by the next commit (`notify`: see [`Uncommitted`]).
    fn append(
        &mut self,
        id: SessionId,
        kind: EventKind,
        at: u64,
        notify: Option<SessionStatus>,
    ) -> Result<Event, SessionError> {
        // A log suspended by a failed write is tried again first; its `Error` event (how many
        // events were not kept) goes before this one.
        if let Some(healed) = self.sessions.heal(id, at)? {
            log::info(&format!(
                "session {id}: writing its history again ({})",
                match &healed.kind {
                    EventKind::Error { message } => message.as_str(),
                    _ => "",
                }
            ));
            self.uncommitted.push(Uncommitted {
                event: healed,
                notify: None,
            });
        }
        let event = self.sessions.record(id, kind, at)?;
        self.uncommitted.push(Uncommitted {
            event: event.clone(),
            notify,
        });
        let _ = self.commit_wake.0.try_send(());
        Ok(event)
    }

    /// Group commit: make every event logged so far durable (one fsync per session with new
    /// events), then — and only then — send each to every caught-up connection (a connection
    /// whose queue is full falls back to replay from its cursor, so nothing is lost and the
    /// session never waits) and show it to the notifier. Events of a session whose log failed
    /// are never sent: they may not be on disk.
    pub fn commit(&mut self) {
        // Marking an ask delivered logs one more event: a second round commits those.
        while !self.uncommitted.is_empty() {
            for error in self.sessions.sync() {
                log::error(&error.to_string());
            }
            for Uncommitted { event, notify } in std::mem::take(&mut self.uncommitted) {
                if event.seq > self.sessions.durable_seq(&event.session) {
                    continue;
                }
                let delivered = self.link.broadcast(&event);
                if delivered && let EventKind::ApprovalRequested(request) = &event.kind {
                    self.mark_delivered(event.session, request.approval);
                }
                if let Some(before) = notify {
                    self.notify_event(&event, before);
                }
            }
        }
    }

    /// Show a logged event to the notifier, and send what it decides.
    fn notify_event(&mut self, event: &Event, before: SessionStatus) {
        if !Notifier::wants(&event.kind) {
            return;
        }
        let subscribers = self.state.subscribers();
        let title = self
            .sessions
            .info(&event.session)
            .map(|info| info.title.clone())
            .unwrap_or_default();
        let context = Context {
            title: &title,
            before,
            approval_expiry_secs: self
                .state
                .auto_deny_after_minutes
                .filter(|minutes| *minutes > 0)
                .map(|minutes| u64::from(minutes) * 60),
        };
        let pushes = self
            .notifier
            .event(event, context, &subscribers, os::unix_now());
        for push in pushes {
            self.send_push(push);
        }
        // What waits needs the timer.
        if self.notifier.next_due().is_some() {
            let _ = self.push_wake.0.try_send(());
        }
    }

    /// Encrypt a push for its device and queue it for the relay; false if it could not be
    /// (the device has no keys now, the link is down or its queue full).
    pub fn send_push(&mut self, push: notify::Push) -> bool {
        let device = push.device;
        let Some(keys) = self.state.push_keys(&device) else {
            return false;
        };
        let sealed = webpush::parse_key(&keys.p256dh).and_then(|key| {
            let plaintext = serde_json::to_vec(&push.notice).unwrap_or_default();
            webpush::encrypt(&plaintext, &key, &keys.auth, &mut os::rng())
        });
        let body = match sealed {
            Ok(body) => body,
            Err(error) => {
                let peer = format!("device {device}");
                self.warnings
                    .warn(&peer, &format!("push to {peer} not sent: {error}"));
                return false;
            }
        };
        let frame = Frame::Push(frame::Push {
            device,
            urgency: push.urgency,
            topic: push.topic,
            ttl_secs: push.ttl_secs,
            body,
        });
        let queued = self.link.send_frame(frame);
        if !queued {
            let peer = format!("device {device}");
            self.warnings.warn(
                &peer,
                &format!("push to {peer} dropped: the relay link is down or its queue is full"),
            );
        }
        queued
    }

    /// Send what the notifier lets go now.
    pub fn flush_pushes(&mut self) {
        let subscribers = self.state.subscribers();
        for push in self.notifier.flush(&subscribers, os::unix_now()) {
            self.send_push(push);
        }
    }

    /// A connection of an online device was sent an approval request: its state moves from
    /// requested to delivered.
    pub fn mark_delivered(&mut self, id: SessionId, approval: u64) {
        // Sent by the commit, like every event; not something to notify about.
        let _ = self.step_as(id, Input::Delivered(approval), os::unix_now(), false);
    }

    /// Create a session and log its first event (sent by the next commit).
    pub fn create_session(
        &mut self,
        id: SessionId,
        started: EventKind,
        at: u64,
    ) -> Result<Event, SessionError> {
        let event = self.sessions.create(id, started, at)?;
        self.uncommitted.push(Uncommitted {
            event: event.clone(),
            notify: None,
        });
        let _ = self.commit_wake.0.try_send(());
        Ok(event)
    }

    /// The relay says `device` came online, or which of its connections ended, or that it went
    /// offline: drop the channels and subscriptions that ended with them, at once.
    pub fn device_presence(&mut self, presence: &DevicePresence) {
        if !self.state.is_paired(&presence.device) {
            return; // another device of the account: it has no channel here
        }
        self.link.device_presence(presence);
        // An app on screen counts only while its channel is there.
        let link = &self.link;
        self.notifier.retain_channels(|route| link.is_open(route));
    }

    /// The relay names the devices that may reach this machine: forget every paired device it
    /// does not name (an owner revoked it, or it revoked itself), with its channels,
    /// subscriptions and push keys, and save. Forgetting on the relay's word only lowers what this machine
    /// accepts; a relay could refuse to route that device anyway. Returns those forgotten.
    pub fn allowed_devices(&mut self, allowed: &[Fingerprint]) -> Vec<Fingerprint> {
        let gone: Vec<Fingerprint> = self
            .state
            .device_identities()
            .iter()
            .map(|identity| identity.fingerprint())
            .filter(|device| !allowed.contains(device))
            .collect();
        if gone.is_empty() {
            return gone;
        }
        for device in &gone {
            self.link.revoked(device);
            self.state.forget_device(device);
            self.notifier.forget_device(device);
        }
        let saved = self.state.save(&self.home);
        for device in &gone {
            log::info(&format!(
                "device {device} was revoked on the relay: this machine forgot it and refuses it \
                 from now on"
            ));
        }
        if let Err(error) = saved {
            log::error(&format!("could not save the forgotten devices: {error}"));
        }
        gone
    }

    /// Drop subscriptions whose channel is gone (pushed out by newer ones, or broken).
    pub fn prune_routes(&mut self) {
        self.link.prune_routes();
        let link = &self.link;
        self.notifier.retain_channels(|route| link.is_open(route));
    }

    /// The relay link went up (what waited for it goes now) or down (news waits).
    pub fn relay_link(&mut self, up: bool) {
        self.notifier.link(up);
        if up {
            let _ = self.push_wake.0.try_send(());
        }
    }

    /// Keep `device` as paired (replacing an older record of its key), and save.
    pub fn pair_device(&mut self, device: &PublicIdentity) -> Result<(), HomeError> {
        self.state.add_device(device, os::unix_now());
        self.state.save(&self.home)
    }

    /// `device` unpaired itself: forget its record and push keys, and save. `Ok(false)` if it
    /// was not paired here.
    pub fn device_left(&mut self, device: &Fingerprint) -> Result<bool, HomeError> {
        let record = self
            .state
            .devices
            .iter()
            .position(|d| d.identity().map(|i| i.fingerprint()) == Some(*device));
        let Some(index) = record else {
            return Ok(false);
        };
        self.state.devices.remove(index);
        self.notifier.forget_device(device);
        self.state.save(&self.home).map(|()| true)
    }

    /// This machine left its account: forget every paired device, and save.
    pub fn forget_devices(&mut self) -> Result<(), HomeError> {
        self.state.devices.clear();
        self.state.save(&self.home)
    }
}

/// Run the daemon in this process until `stop` resolves or a control `stop` arrives.
pub fn run_foreground(home: Home, relay: Option<String>) -> Result<(), DaemonError> {
    let _lock = lock::acquire(&home)?;
    let (replays, replay_requests) = smol::channel::unbounded();
    let mut core = Core::load(home, replays)?;
    if let Some(relay) = relay {
        core.state.relay = Some(relay);
        core.state.save(&core.home)?;
    }
    if core.state.relay.is_none() {
        return Err(DaemonError::NoRelay);
    }
    core.close_orphans()?;
    log::info(&format!(
        "daemon {} on {} ({}) started, relay {}",
        env!("CARGO_PKG_VERSION"),
        core.hostname,
        core.identity.public().fingerprint(),
        core.state.relay.as_deref().unwrap_or("?")
    ));
    let core = Rc::new(RefCell::new(core));
    let executor = Rc::new(LocalExecutor::new());
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let listener = control::bind(&core.borrow().home)?;
    executor
        .spawn(control::serve(
            core.clone(),
            executor.clone(),
            listener,
            stop_tx.clone(),
        ))
        .detach();
    executor
        .spawn(link::run(core.clone(), executor.clone()))
        .detach();
    executor.spawn(push_timer(core.clone())).detach();
    executor.spawn(committer(core.clone())).detach();
    executor
        .spawn(link::replay::replayer(
            core.clone(),
            executor.clone(),
            replay_requests,
        ))
        .detach();
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(|error| DaemonError::Io("cannot watch for SIGTERM", error))?;
    executor
        .spawn(async move {
            use smol::stream::StreamExt;
            let mut signals = signals;
            if signals.next().await.is_some() {
                let _ = stop_tx.send(()).await;
            }
        })
        .detach();
    smol::block_on(executor.run(async {
        let _ = stop_rx.recv().await;
    }));
    shutdown(&core);
    Ok(())
}

/// Log a session's failure to record an event, unless it repeats one already logged (a
/// suspended log refuses every event of a streaming agent: one line said why).
pub fn report(id: SessionId, error: &SessionError) {
    if !error.is_repeat() {
        log::error(&format!("session {id}: {error}"));
    }
}

/// Commit what was logged ([`Core::commit`]) once per executor turn: woken by the first event
/// logged after a commit, it runs after the tasks that were ready then, so everything they
/// logged shares one fsync per session.
async fn committer(core: Shared) {
    let wake = core.borrow().commit_wake.1.clone();
    while wake.recv().await.is_ok() {
        core.borrow_mut().commit();
    }
}

/// Send what the notifier held back (over a device's rate, or while the relay link was down)
/// when its time comes, and whenever something may have changed it.
async fn push_timer(core: Shared) {
    loop {
        let (due, wake) = {
            let core = core.borrow();
            (core.notifier.next_due(), core.push_wake.1.clone())
        };
        let timer = async {
            match due {
                // At least a second: the notifier counts whole seconds.
                Some(at) => {
                    let wait = at.saturating_sub(os::unix_now()).max(1);
                    Timer::after(std::time::Duration::from_secs(wait)).await;
                }
                None => smol::future::pending::<()>().await,
            }
        };
        smol::future::or(timer, async {
            let _ = wake.recv().await;
        })
        .await;
        core.borrow_mut().flush_pushes();
    }
}

/// Stop every session's processes and log why.
fn shutdown(core: &Shared) {
    let mut core = core.borrow_mut();
    let ids: Vec<SessionId> = core.agents.keys().copied().collect();
    for id in ids {
        if let Some(running) = core.agents.remove(&id) {
            let _ = process::signal_group(running.group, rustix::process::Signal::TERM);
        }
        let _ = core.step(id, Input::Shutdown, os::unix_now());
    }
    core.commit();
    log::info("daemon stopped");
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalKind, ApprovalRequest, PushKeys, PushKinds, request_hash};
    use muxagent_proto::frame::PushUrgency;
    use muxagent_proto::push::{Notice, NoticeKind};
    use p256::elliptic_curve::Generate;
    use p256::elliptic_curve::sec1::ToSec1Point;

    use super::*;
    use crate::daemon::state::PushSettings;

    const SESSION: SessionId = SessionId([7; 16]);

    #[test]
    fn a_logged_ask_goes_out_encrypted_for_the_device_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path().to_path_buf()).expect("home");
        let (replays, _) = smol::channel::unbounded();
        let mut core = Core::load(home, replays).expect("core");
        let mut rng = os::rng();
        let phone = Identity::generate(&mut rng).public();
        core.state.add_device(&phone, 0);
        let subscription = p256::SecretKey::generate_from_rng(&mut rng);
        let keys = PushKeys {
            p256dh: subscription
                .public_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
            auth: [3; 16],
            kinds: PushKinds::ALL,
        };
        core.state
            .device_mut(&phone.fingerprint())
            .expect("paired")
            .push = Some(PushSettings::new(&keys));
        let (outgoing, queue) = smol::channel::bounded(16);
        core.link.attach(outgoing);
        core.notifier.link(true);

        let started = EventKind::Started {
            runtime: "claude".try_into().expect("name"),
            args: Vec::new(),
            cwd: "/".into(),
            title: "tidy up".into(),
            device: phone.fingerprint(),
        };
        core.create_session(SESSION, started, 0).expect("session");
        let input = r#"{"command":"git clean -fdx"}"#;
        let request = ApprovalRequest {
            approval: 1,
            kind: ApprovalKind::Tool,
            agent_request: "req-1".into(),
            tool: "Bash".into(),
            input: input.into(),
            request_hash: request_hash(&SESSION, "req-1", "Bash", input),
        };
        core.record(SESSION, EventKind::ApprovalRequested(request), 0)
            .expect("ask");
        core.commit();

        let pushes: Vec<frame::Push> = std::iter::from_fn(|| queue.try_recv().ok())
            .filter_map(|out| match out {
                Out::Frame(Frame::Push(push)) => Some(push),
                _ => None,
            })
            .collect();
        assert_eq!(pushes.len(), 1);
        let push = &pushes[0];
        assert_eq!(push.device, phone.fingerprint());
        assert_eq!(push.urgency, PushUrgency::High);
        let key = webpush::topic_key(&core.identity.to_secret_bytes()[..]);
        assert_eq!(push.topic, Some(webpush::topic(&key, &SESSION)));
        let plaintext = webpush::tests::decrypt(&push.body, &subscription, &keys.auth)
            .expect("the device reads it");
        let notice: Notice = serde_json::from_slice(&plaintext).expect("a notice");
        assert_eq!(notice.kind, NoticeKind::Approval);
        assert_eq!(notice.title, "tidy up");
        assert_eq!(notice.text, "Bash: git clean -fdx");
        assert_eq!(notice.approval.expect("fits").input, input);
    }

    /// Events logged in one turn share one fsync, and none reaches a device before the fsync
    /// that covers it returned.
    #[test]
    fn events_reach_devices_only_after_the_fsync_that_covers_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path().to_path_buf()).expect("home");
        let (replays, _) = smol::channel::unbounded();
        let mut core = Core::load(home, replays).expect("core");
        let phone = Identity::generate(&mut os::rng()).public();
        core.state.add_device(&phone, 0);
        let (outgoing, queue) = smol::channel::bounded(64);
        core.link.attach(outgoing);
        let route = Route {
            device: phone.fingerprint(),
            connection: muxagent_proto::noise::ConnectionId([1; 8]),
        };
        core.link.subscribe_live(route);
        let started = EventKind::Started {
            runtime: "claude".try_into().expect("name"),
            args: Vec::new(),
            cwd: "/".into(),
            title: "chatty".into(),
            device: phone.fingerprint(),
        };
        core.create_session(SESSION, started, 0).expect("session");
        for n in 0..20 {
            let text = format!("token {n} ");
            core.record(SESSION, EventKind::TextDelta { text }, 0)
                .expect("delta");
        }
        assert!(queue.is_empty(), "nothing is sent before it is durable");
        assert_eq!(core.sessions.durable_seq(&SESSION), 0);
        let syncs = core.sessions.sync_count(&SESSION);

        core.commit();
        assert_eq!(core.sessions.sync_count(&SESSION), syncs + 1, "one fsync");
        let durable = core.sessions.durable_seq(&SESSION);
        let sent: Vec<u64> = std::iter::from_fn(|| queue.try_recv().ok())
            .filter_map(|out| match out {
                Out::ToDevice(to, MachineMessage::Event(event)) if to == route => Some(event.seq),
                _ => None,
            })
            .collect();
        assert_eq!(sent, (1..=21).collect::<Vec<u64>>());
        assert!(sent.iter().all(|seq| *seq <= durable));
        // A commit with nothing new neither syncs nor sends.
        core.commit();
        assert_eq!(core.sessions.sync_count(&SESSION), syncs + 1);
        assert!(queue.is_empty());
    }
}
