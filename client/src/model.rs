//! The device's picture of its machines, folded from the [controller](crate::controller)'s
//! [`Note`]s: each machine's presence and channel, its sessions (metadata kept current by their
//! events), each session's [`History`] and its newest events, and the decisions this device is
//! sending. The web app renders it and keeps it in IndexedDB; [`Changes`] says what to render
//! again and what to store.
//!
//! Bounded: at most [`MAX_MACHINES`](crate::limits::MAX_MACHINES) machines (the book's cap),
//! [`MAX_SESSIONS_PER_MACHINE`] sessions each and [`CACHED_EVENTS_PER_SESSION`] events per
//! session (the newest; older ones stay on the machine and come back on demand).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use muxagent_proto::app::{
    ApprovalId, ApprovalRequest, Event, EventKind, RuntimeName, SessionId, SessionInfo,
    SessionStatus, Usage,
};
use muxagent_proto::identity::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::book::{self, Book};
use crate::controller::{Answer, Channel, ClientError, Connection, Note};
use crate::decide;
use crate::history::History;
use crate::limits::{
    CACHED_EVENTS_PER_SESSION, MAX_INPUT_FETCHES, MAX_SESSIONS_PER_MACHINE, MAX_WHOLE_INPUTS,
};

/// An approval, named across machines.
pub type ApprovalKey = (Fingerprint, SessionId, ApprovalId);

/// One session as the device knows it. Everything but `events` is stored as the session's
/// record; the events are stored one by one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The machine's metadata, kept current by the events since.
    pub info: SessionInfo,
    /// The fold of every event received.
    pub history: History,
    /// The newest permission mode this device set or started it with.
    pub mode: Option<String>,
    /// The oldest cached event is the session's first on the machine.
    pub complete: bool,
    /// The newest events, ascending, at most [`CACHED_EVENTS_PER_SESSION`].
    #[serde(skip)]
    pub events: VecDeque<Event>,
}

impl Session {
    fn new(id: SessionId) -> Self {
        Self {
            info: SessionInfo {
                id,
                runtime: RuntimeName::new(),
                cwd: String::new(),
                title: String::new(),
                status: SessionStatus::Running,
                created_at: 0,
                updated_at: 0,
                usage: Usage::default(),
                pending_approvals: 0,
                last_seq: 0,
            },
            history: History::default(),
            mode: None,
            complete: false,
            events: VecDeque::new(),
        }
    }

    /// The cached range: `(first, last)` seq, `(0, 0)` when nothing is cached.
    pub fn held(&self) -> (u64, u64) {
        match (self.events.front(), self.events.back()) {
            (Some(first), Some(last)) => (first.seq, last.seq),
            _ => (0, 0),
        }
    }

    /// A newer event: the metadata follows it, the history folds it, the cache keeps it.
    fn take(&mut self, event: &Event) {
        let info = &mut self.info;
        info.last_seq = info.last_seq.max(event.seq);
        info.updated_at = info.updated_at.max(event.at);
        match &event.kind {
            EventKind::Started {
                runtime,
                cwd,
                title,
                ..
            } => {
                info.runtime = runtime.clone();
                info.cwd = cwd.clone();
                info.title = title.clone();
                if info.created_at == 0 {
                    info.created_at = event.at;
                }
            }
            EventKind::Usage(usage) => info.usage = *usage,
            _ => {}
        }
        self.history.apply(event);
        if let Some(status) = self.history.status {
            self.info.status = status;
        }
        self.info.pending_approvals = self.history.pending().count() as u32;
        if self.events.len() as u64 >= CACHED_EVENTS_PER_SESSION {
            self.events.pop_front();
            self.complete = false;
        }
        self.events.push_back(event.clone());
    }

    /// An older event (fetched backwards): it fills in the history's gaps. The cache keeps only
    /// the newest events, so it is not cached (a later "load older" fetches it again).
    fn take_older(&mut self, event: &Event) {
        self.history.backfill(event);
        self.info.pending_approvals = self.history.pending().count() as u32;
    }
}

/// One paired machine as the device knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// The book's record (hostname at pairing, keys, relay, when).
    pub record: book::Machine,
    /// Its hostname: as it gave it in the pairing (the book's record), or since over its
    /// end-to-end channel (its session list). Never the relay's word.
    pub hostname: String,
    /// The hostname the relay's presence gives it, when that differs from `hostname`: the
    /// relay's claim, shown as such (a relay could name a machine after another).
    pub relay_hostname: Option<String>,
    /// Connected to the relay now.
    pub online: bool,
    /// The channel to it.
    pub channel: Channel,
    /// Its sessions.
    pub sessions: BTreeMap<SessionId, Session>,
}

impl Machine {
    fn new(record: book::Machine) -> Self {
        Self {
            hostname: record.hostname.clone(),
            relay_hostname: None,
            record,
            online: false,
            channel: Channel::Closed,
            sessions: BTreeMap::new(),
        }
    }

    /// Approvals waiting in all its sessions.
    pub fn pending_approvals(&self) -> u32 {
        self.sessions
            .values()
            .map(|session| session.info.pending_approvals)
            .sum()
    }

    fn session(&mut self, id: SessionId) -> Option<&mut Session> {
        if !self.sessions.contains_key(&id) && self.sessions.len() >= MAX_SESSIONS_PER_MACHINE {
            return None;
        }
        Some(self.sessions.entry(id).or_insert_with(|| Session::new(id)))
    }
}

/// What one batch of notes changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Something shown changed: render again.
    pub view: bool,
    /// The book changed (a machine paired or removed): store it.
    pub book: bool,
    /// Sessions whose record changed: store them.
    pub sessions: BTreeSet<(Fingerprint, SessionId)>,
    /// New events in arrival order, `true` for older ones: show them to who follows the
    /// session and store those still in the cache.
    pub events: Vec<(Fingerprint, Event, bool)>,
    /// Sessions whose cached events were dropped ([`Note::Reset`]): delete their stored ones.
    pub reset: Vec<(Fingerprint, SessionId)>,
    /// Machines forgotten: delete everything stored of them.
    pub removed: Vec<Fingerprint>,
}

/// The device's picture of everything.
#[derive(Clone, Debug)]
pub struct Model {
    /// The relay connection.
    pub connection: Connection,
    /// The paired machines.
    pub machines: BTreeMap<Fingerprint, Machine>,
    /// Decisions sent and not answered yet, by request number.
    deciding: BTreeMap<u32, ApprovalKey>,
    /// Decisions a machine refused, with its reason (until the approval is no longer pending).
    refused: BTreeMap<ApprovalKey, String>,
    /// Whole inputs of pending approvals whose events carry them cut: being fetched, fetched
    /// (checked against the request's hash), or why not. At most [`MAX_WHOLE_INPUTS`].
    inputs: BTreeMap<ApprovalKey, WholeInput>,
    /// Input fetches under way, by request number.
    fetching: BTreeMap<u32, ApprovalKey>,
}

/// Where the whole input of an approval whose event carries it cut is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WholeInput {
    /// Being fetched: `have` of `total` bytes (`total` 0 until the first page).
    Loading {
        /// Bytes so far.
        have: u64,
        /// The whole length.
        total: u64,
    },
    /// Fetched: the request with its whole input (its hash checked).
    Whole(ApprovalRequest),
    /// Not fetched (too long for a device, the machine's pages did not join up or did not
    /// give the hash): it can only be denied.
    Failed(String),
}

impl Model {
    /// The machines of `book`, nothing known of them yet.
    pub fn new(book: &Book) -> Self {
        let machines = book
            .machines
            .iter()
            .filter_map(|record| {
                let fingerprint = record.identity()?.fingerprint();
                Some((fingerprint, Machine::new(record.clone())))
            })
            .collect();
        Self {
            connection: Connection::Connecting,
            machines,
            deciding: BTreeMap::new(),
            refused: BTreeMap::new(),
            inputs: BTreeMap::new(),
            fetching: BTreeMap::new(),
        }
    }

    /// The book, as it should be stored.
    pub fn book(&self) -> Book {
        let mut machines: Vec<book::Machine> = self
            .machines
            .values()
            .map(|machine| machine.record.clone())
            .collect();
        machines.sort_by_key(|record| record.paired_at);
        Book { machines }
    }

    /// Put back a session from the cache (before any note).
    pub fn restore(&mut self, machine: &Fingerprint, session: Session) {
        if let Some(known) = self.machines.get_mut(machine)
            && let Some(slot) = known.session(session.info.id)
        {
            *slot = session;
        }
    }

    /// Put back a cached event of a restored session (ascending, before any note).
    pub fn restore_event(&mut self, machine: &Fingerprint, event: Event) {
        if let Some(session) = self
            .machines
            .get_mut(machine)
            .and_then(|known| known.sessions.get_mut(&event.session))
            && session
                .events
                .back()
                .is_none_or(|last| last.seq < event.seq)
        {
            if session.events.len() as u64 >= CACHED_EVENTS_PER_SESSION {
                session.events.pop_front();
            }
            session.events.push_back(event);
        }
    }

    /// The session, if known.
    pub fn session(&self, machine: &Fingerprint, session: &SessionId) -> Option<&Session> {
        self.machines.get(machine)?.sessions.get(session)
    }

    /// A decision was sent as `request` for `approval`.
    pub fn deciding(&mut self, request: u32, approval: ApprovalKey) {
        self.refused.remove(&approval);
        self.deciding.insert(request, approval);
    }

    /// Whether this device sent a decision the machine has not answered yet.
    pub fn is_sending(&self, approval: &ApprovalKey) -> bool {
        self.deciding.values().any(|key| key == approval)
    }

    /// Why the machine refused this device's decision, if it did.
    pub fn refusal(&self, approval: &ApprovalKey) -> Option<&str> {
        self.refused.get(approval).map(String::as_str)
    }

    /// Where the whole input of `approval` is, if its event carries it cut and a fetch began.
    pub fn whole_input(&self, approval: &ApprovalKey) -> Option<&WholeInput> {
        self.inputs.get(approval)
    }

    /// Pending approvals on machines with a live channel whose input came cut and is not
    /// fetched or being fetched: what to [`fetch`](crate::controller::Controller::fetch_input)
    /// now (then say so with [`Model::fetching_input`]). Forgets the inputs of approvals no
    /// longer pending first; none while [`MAX_WHOLE_INPUTS`] are held or [`MAX_INPUT_FETCHES`]
    /// are being fetched.
    pub fn inputs_to_fetch(&mut self) -> Vec<ApprovalKey> {
        let machines = &self.machines;
        let pending = |(machine, session, number): &ApprovalKey| {
            machines
                .get(machine)
                .and_then(|known| known.sessions.get(session))
                .and_then(|known| known.history.approvals.get(number))
                .is_some_and(|approval| approval.pending())
        };
        self.inputs.retain(|key, _| pending(key));
        self.fetching.retain(|_, key| pending(key));
        let mut wanted = Vec::new();
        // At most as many at once as the controller fetches, so none is refused as busy.
        let loading = self
            .inputs
            .values()
            .filter(|input| matches!(input, WholeInput::Loading { .. }))
            .count();
        for (machine, known) in &self.machines {
            if known.channel != Channel::Live {
                continue;
            }
            for (session, held) in &known.sessions {
                for request in held.history.pending() {
                    let key = (*machine, *session, request.approval);
                    if self.inputs.len() + wanted.len() >= MAX_WHOLE_INPUTS
                        || loading + wanted.len() >= MAX_INPUT_FETCHES
                    {
                        return wanted;
                    }
                    if !self.inputs.contains_key(&key)
                        && decide::digest(*session, request).is_none()
                    {
                        wanted.push(key);
                    }
                }
            }
        }
        wanted
    }

    /// A fetch of the whole input of `approval` began as `request` (or could not: `Err`).
    pub fn fetching_input(&mut self, approval: ApprovalKey, request: Result<u32, String>) {
        match request {
            Ok(request) => {
                self.fetching.insert(request, approval);
                let loading = WholeInput::Loading { have: 0, total: 0 };
                self.inputs.entry(approval).or_insert(loading);
            }
            Err(error) => {
                self.inputs.insert(approval, WholeInput::Failed(error));
            }
        }
    }

    fn input_answered(&mut self, request: u32, result: &Result<Answer, ClientError>) -> bool {
        let Some(key) = self.fetching.remove(&request) else {
            return false;
        };
        let (machine, session, number) = key;
        let asked = self
            .session(&machine, &session)
            .and_then(|known| known.history.approvals.get(&number))
            .and_then(|approval| approval.request.clone());
        let state = match (result, asked) {
            (Ok(Answer::Input { input, .. }), Some(asked)) => {
                match decide::whole(session, &asked, input.clone()) {
                    Ok(whole) => WholeInput::Whole(whole),
                    Err(error) => WholeInput::Failed(error.to_string()),
                }
            }
            // Lost on the way: fetched again once the channel is live.
            (Err(ClientError::Lost { .. } | ClientError::Offline { .. }), _) => {
                self.inputs.remove(&key);
                return true;
            }
            (Err(error), _) => WholeInput::Failed(error.to_string()),
            (Ok(_), _) => WholeInput::Failed("the machine answered something else".into()),
        };
        self.inputs.insert(key, state);
        true
    }

    /// Remember the mode a session was set to (the machine logs no event for it).
    pub fn set_mode(&mut self, machine: &Fingerprint, session: SessionId, mode: &str) -> bool {
        let Some(known) = self
            .machines
            .get_mut(machine)
            .and_then(|known| known.session(session))
        else {
            return false;
        };
        known.mode = Some(mode.into());
        true
    }

    /// Fold one note in.
    pub fn apply(&mut self, note: &Note, changes: &mut Changes) {
        match note {
            Note::Connection(connection) => {
                self.connection = connection.clone();
                changes.view = true;
            }
            Note::Presence {
                machine,
                hostname,
                online,
            } => {
                if let Some(known) = self.machines.get_mut(machine) {
                    known.relay_hostname = (*hostname != known.hostname).then(|| hostname.clone());
                    known.online = *online;
                    changes.view = true;
                }
            }
            Note::Channel { machine, channel } => {
                if let Some(known) = self.machines.get_mut(machine) {
                    known.channel = *channel;
                    changes.view = true;
                }
            }
            Note::Sessions { machine, list } => {
                let Some(known) = self.machines.get_mut(machine) else {
                    return;
                };
                known.hostname = list.hostname.to_string();
                if known.relay_hostname.as_deref() == Some(known.hostname.as_str()) {
                    known.relay_hostname = None;
                }
                for info in &list.sessions {
                    let Some(session) = known.session(info.id) else {
                        break;
                    };
                    // The list is the machine's word as of now; what the history folded
                    // since the cached events stays.
                    let pending = info.pending_approvals;
                    session.info = info.clone();
                    session.info.pending_approvals = pending;
                    changes.sessions.insert((*machine, info.id));
                }
                changes.view = true;
            }
            Note::Event {
                machine,
                event,
                older,
            } => {
                let Some(session) = self
                    .machines
                    .get_mut(machine)
                    .and_then(|known| known.session(event.session))
                else {
                    return;
                };
                if *older {
                    session.take_older(event);
                } else {
                    session.take(event);
                }
                let key = (*machine, event.session);
                // A decision that the session resolved is no longer refused.
                self.refused.retain(|(m, s, number), _| {
                    (*m, *s) != key
                        || session
                            .history
                            .approvals
                            .get(number)
                            .is_some_and(|approval| approval.pending())
                });
                changes.sessions.insert(key);
                changes.events.push((*machine, event.clone(), *older));
                changes.view = true;
            }
            Note::Reset { machine, session } => {
                if let Some(known) = self
                    .machines
                    .get_mut(machine)
                    .and_then(|known| known.sessions.get_mut(session))
                {
                    known.events.clear();
                    known.complete = false;
                    changes.reset.push((*machine, *session));
                    changes.sessions.insert((*machine, *session));
                }
            }
            Note::InputProgress {
                request,
                have,
                total,
            } => {
                if let Some(key) = self.fetching.get(request) {
                    let loading = WholeInput::Loading {
                        have: *have,
                        total: *total,
                    };
                    self.inputs.insert(*key, loading);
                    changes.view = true;
                }
            }
            Note::Answer { request, result } => {
                if self.input_answered(*request, result) {
                    changes.view = true;
                }
                if let Some(approval) = self.deciding.remove(request) {
                    if let Err(error) = result {
                        self.refused.insert(approval, error.to_string());
                    }
                    changes.view = true;
                }
                if let Ok(Answer::Paired(record)) = result
                    && let Some(identity) = record.identity()
                {
                    let fingerprint = identity.fingerprint();
                    let machine = self
                        .machines
                        .entry(fingerprint)
                        .or_insert_with(|| Machine::new(record.clone()));
                    machine.record = record.clone();
                    changes.book = true;
                    changes.view = true;
                }
            }
            Note::Removed { machine } => {
                if self.machines.remove(machine).is_some() {
                    self.deciding.retain(|_, (m, _, _)| m != machine);
                    self.refused.retain(|(m, _, _), _| m != machine);
                    self.inputs.retain(|(m, _, _), _| m != machine);
                    self.fetching.retain(|_, (m, _, _)| m != machine);
                    changes.removed.push(*machine);
                    changes.book = true;
                    changes.view = true;
                }
            }
            Note::Pairing { .. } | Note::Push { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalKind, ApprovalRequest, SessionList};
    use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};

    use super::*;
    use crate::controller::ClientError;

    fn machine() -> (Fingerprint, Book) {
        let identity = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]).public();
        let record = book::Machine::new(&identity, "alpha", "https://r.example", 5);
        (
            identity.fingerprint(),
            Book {
                machines: vec![record],
            },
        )
    }

    const SESSION: SessionId = SessionId([1; 16]);

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            session: SESSION,
            seq,
            at: 1_000 + seq,
            kind,
        }
    }

    fn asked(number: u64) -> EventKind {
        EventKind::ApprovalRequested(ApprovalRequest {
            approval: number,
            kind: ApprovalKind::Tool,
            agent_request: "r".into(),
            tool: "Bash".into(),
            input: "{}".into(),
            request_hash: [0; 32],
        })
    }

    #[test]
    fn events_keep_the_session_current_and_the_cache_bounded() {
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        let started = EventKind::Started {
            runtime: "claude".try_into().unwrap(),
            args: vec![],
            cwd: "/w".into(),
            title: "fix".into(),
            device: Fingerprint([0; 32]),
        };
        for (seq, kind) in [
            (1, started),
            (2, asked(1)),
            (3, EventKind::Status(SessionStatus::WaitingApproval)),
        ] {
            let note = Note::Event {
                machine: alpha,
                event: event(seq, kind),
                older: false,
            };
            model.apply(&note, &mut changes);
        }
        let session = model.session(&alpha, &SESSION).unwrap();
        assert_eq!(session.info.title, "fix");
        assert_eq!(session.info.status, SessionStatus::WaitingApproval);
        assert_eq!(session.info.pending_approvals, 1);
        assert_eq!(session.info.last_seq, 3);
        assert_eq!(session.info.created_at, 1_001);
        assert_eq!(session.held(), (1, 3));
        assert_eq!(model.machines[&alpha].pending_approvals(), 1);
        assert!(changes.view && changes.sessions.contains(&(alpha, SESSION)));
        assert_eq!(changes.events.len(), 3);
        for seq in 4..CACHED_EVENTS_PER_SESSION + 50 {
            let note = Note::Event {
                machine: alpha,
                event: event(seq, EventKind::TextDelta { text: "x".into() }),
                older: false,
            };
            model.apply(&note, &mut changes);
        }
        let session = model.session(&alpha, &SESSION).unwrap();
        assert_eq!(session.events.len() as u64, CACHED_EVENTS_PER_SESSION);
        assert_eq!(session.held().1, CACHED_EVENTS_PER_SESSION + 49);
        assert_eq!(
            session.info.pending_approvals, 1,
            "the fold keeps what the cache dropped"
        );
    }

    #[test]
    fn decisions_are_sending_until_answered_and_refusals_say_why() {
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        model.apply(
            &Note::Event {
                machine: alpha,
                event: event(1, asked(1)),
                older: false,
            },
            &mut changes,
        );
        let key = (alpha, SESSION, 1);
        model.deciding(9, key);
        assert!(model.is_sending(&key));
        let refused = ClientError::Refused {
            hostname: "alpha".into(),
            code: muxagent_proto::app::AppErrorCode::UnknownApproval,
            message: "approval 1 is no longer pending".into(),
        };
        model.apply(
            &Note::Answer {
                request: 9,
                result: Err(refused),
            },
            &mut changes,
        );
        assert!(!model.is_sending(&key));
        assert_eq!(
            model.refusal(&key),
            Some("alpha: approval 1 is no longer pending")
        );
        model.apply(
            &Note::Event {
                machine: alpha,
                event: event(
                    2,
                    EventKind::ApprovalState {
                        approval: 1,
                        state: muxagent_proto::app::ApprovalState::Withdrawn,
                    },
                ),
                older: false,
            },
            &mut changes,
        );
        assert_eq!(model.refusal(&key), None, "resolved by the session");
    }

    #[test]
    fn lists_resets_pairing_and_removal() {
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        let mut info = Session::new(SESSION).info;
        info.title = "listed".into();
        info.last_seq = 40;
        model.apply(
            &Note::Sessions {
                machine: alpha,
                list: SessionList {
                    request: None,
                    hostname: "alpha-2".try_into().unwrap(),
                    sessions: vec![info],
                },
            },
            &mut changes,
        );
        assert_eq!(model.machines[&alpha].hostname, "alpha-2");
        assert_eq!(
            model.session(&alpha, &SESSION).unwrap().info.title,
            "listed"
        );
        model.restore_event(&alpha, event(39, EventKind::Prompt { text: "p".into() }));
        assert_eq!(model.session(&alpha, &SESSION).unwrap().held(), (39, 39));
        model.apply(
            &Note::Reset {
                machine: alpha,
                session: SESSION,
            },
            &mut changes,
        );
        assert_eq!(model.session(&alpha, &SESSION).unwrap().held(), (0, 0));
        assert_eq!(changes.reset, [(alpha, SESSION)]);
        // Pairing adds to the book; removal takes out.
        let other = Identity::from_secret_bytes(&[3; SECRET_BYTES_LEN]).public();
        let record = book::Machine::new(&other, "beta", "https://r.example", 9);
        model.apply(
            &Note::Answer {
                request: 1,
                result: Ok(Answer::Paired(record.clone())),
            },
            &mut changes,
        );
        assert!(changes.book);
        assert_eq!(model.book().machines.len(), 2);
        assert_eq!(model.book().machines[1], record);
        model.apply(&Note::Removed { machine: alpha }, &mut changes);
        assert_eq!(changes.removed, [alpha]);
        assert_eq!(model.book().machines, [record]);
    }

    #[test]
    fn older_events_fill_the_history_gaps_not_the_cache() {
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        for seq in [10, 11] {
            model.apply(
                &Note::Event {
                    machine: alpha,
                    event: event(seq, EventKind::Status(SessionStatus::Idle)),
                    older: false,
                },
                &mut changes,
            );
        }
        for (seq, kind) in [
            (8, asked(1)),
            (9, EventKind::Status(SessionStatus::Running)),
        ] {
            model.apply(
                &Note::Event {
                    machine: alpha,
                    event: event(seq, kind),
                    older: true,
                },
                &mut changes,
            );
        }
        let session = model.session(&alpha, &SESSION).unwrap();
        assert_eq!(session.held(), (10, 11));
        assert_eq!(
            session.info.status,
            SessionStatus::Idle,
            "older status ignored"
        );
        assert!(session.history.approvals.contains_key(&1));
    }

    #[test]
    fn a_cut_input_is_fetched_once_checked_against_its_hash_and_forgotten_when_decided() {
        use muxagent_proto::app::request_hash;
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        let whole = "x".repeat(100);
        let hash = request_hash(&SESSION, "r", "Write", &whole);
        let cut = |number: u64| {
            EventKind::ApprovalRequested(ApprovalRequest {
                approval: number,
                kind: ApprovalKind::Tool,
                agent_request: "r".into(),
                tool: "Write".into(),
                input: whole[..10].into(),
                request_hash: hash,
            })
        };
        let notes = [
            Note::Channel {
                machine: alpha,
                channel: Channel::Live,
            },
            Note::Event {
                machine: alpha,
                event: event(1, cut(1)),
                older: false,
            },
            Note::Event {
                machine: alpha,
                event: event(2, asked(2)),
                older: false,
            },
        ];
        for note in &notes {
            model.apply(note, &mut changes);
        }
        // The cut one is wanted (so is approval 2: its input does not give its hash either).
        let wanted = model.inputs_to_fetch();
        assert!(wanted.contains(&(alpha, SESSION, 1)));
        model.fetching_input((alpha, SESSION, 1), Ok(9));
        assert!(!model.inputs_to_fetch().contains(&(alpha, SESSION, 1)));
        let progress = Note::InputProgress {
            request: 9,
            have: 50,
            total: 100,
        };
        model.apply(&progress, &mut changes);
        assert_eq!(
            model.whole_input(&(alpha, SESSION, 1)),
            Some(&WholeInput::Loading {
                have: 50,
                total: 100
            })
        );
        // Another input than the hash covers is not taken.
        model.fetching_input((alpha, SESSION, 1), Ok(10));
        let other = Note::Answer {
            request: 10,
            result: Ok(Answer::Input {
                session: SESSION,
                approval: 1,
                input: "y".repeat(100),
            }),
        };
        model.apply(&other, &mut changes);
        assert!(matches!(
            model.whole_input(&(alpha, SESSION, 1)),
            Some(WholeInput::Failed(_))
        ));
        let right = Note::Answer {
            request: 9,
            result: Ok(Answer::Input {
                session: SESSION,
                approval: 1,
                input: whole.clone(),
            }),
        };
        model.apply(&right, &mut changes);
        let Some(WholeInput::Whole(request)) = model.whole_input(&(alpha, SESSION, 1)) else {
            panic!("the whole input is kept");
        };
        assert_eq!(request.input, whole);
        // Decided: forgotten at the next look.
        let resolved = Note::Event {
            machine: alpha,
            event: event(
                3,
                EventKind::ApprovalState {
                    approval: 1,
                    state: muxagent_proto::app::ApprovalState::Withdrawn,
                },
            ),
            older: false,
        };
        model.apply(&resolved, &mut changes);
        let _ = model.inputs_to_fetch();
        assert_eq!(model.whole_input(&(alpha, SESSION, 1)), None);
    }

    #[test]
    fn the_relays_name_for_a_machine_is_shown_as_its_claim_never_as_the_name() {
        let (alpha, book) = machine();
        let mut model = Model::new(&book);
        let mut changes = Changes::default();
        let presence = |hostname: &str| Note::Presence {
            machine: alpha,
            hostname: hostname.into(),
            online: true,
        };
        // The relay names it after another machine: the paired name stays, the claim shows.
        model.apply(&presence("payroll-server"), &mut changes);
        let known = &model.machines[&alpha];
        assert_eq!(known.hostname, "alpha");
        assert_eq!(known.relay_hostname.as_deref(), Some("payroll-server"));
        // The same name as paired: nothing to say.
        model.apply(&presence("alpha"), &mut changes);
        assert_eq!(model.machines[&alpha].relay_hostname, None);
        // The machine's own word over its channel renames it; a relay agreeing is no claim.
        model.apply(&presence("alpha-2"), &mut changes);
        let list = Note::Sessions {
            machine: alpha,
            list: SessionList {
                request: None,
                hostname: "alpha-2".try_into().unwrap(),
                sessions: vec![],
            },
        };
        model.apply(&list, &mut changes);
        let known = &model.machines[&alpha];
        assert_eq!(known.hostname, "alpha-2");
        assert_eq!(known.relay_hostname, None);
    }
}
