//! The machine's sessions and their history: one append-only log per session under
//! `$MUXAGENT_HOME/sessions/<id>/`, holding every [`Event`] in order. A session's metadata
//! ([`SessionInfo`]) is a fold of its events, rebuilt from the log on start, so the log is the
//! truth and survives daemon restarts.
//!
//! # Retention keeps the metadata
//!
//! A log is bounded ([`LOG_RETENTION_LEN`]): its oldest segments are deleted as output grows,
//! and with them the events that said what the session is (`Started`: runtime, cwd, title;
//! `AgentSession`: the id that resumes the agent). So before anything is deleted, the fold of
//! everything so far is written beside the log as a checkpoint (`checkpoint.json`, atomically),
//! and opening folds the log on top of it. Retention runs here, after the checkpoint, never in
//! the store on its own.
//!
//! # Group commit
//!
//! [`Sessions::record`] appends and folds, but does not fsync: [`Sessions::sync`] makes every
//! event appended so far durable with one fsync per session that has new events. The daemon
//! calls it once per executor turn and sends events to devices only after it returned
//! (`Core::commit`), so a chatty agent pays one fsync per batch, not per delta. Replay pages
//! ([`Sessions::page_after`]) hold durable events only.
//!
//! # A log that cannot be written
//!
//! When writing or syncing a session's log fails (the disk is full, say), the store poisons it:
//! what is on disk is unknown until it is opened again. The session is then *suspended*: its
//! events are refused ([`SessionError::Suspended`], which callers do not log again: the first
//! failure was logged) and none after the last durable one is ever sent. Every
//! [`DAEMON_LOG_RETRY_SECS`] an event that arrives tries [`Sessions::heal`]: it opens the log
//! again (which finds the real end and cuts a torn tail) and folds it, as a restart would, and
//! logs an `Error` event saying how many events were not kept and why, so devices see the gap
//! explained. The daemon never has to restart for it.
//!
//! # A damaged log
//!
//! A log that does not open or read (a flipped byte in the middle, a file from an incompatible
//! version) is set aside: that session is not loaded, [`Sessions::damaged`] names it and why, and
//! every other session works. Nothing is deleted; moving the damaged file away (or restoring it)
//! and restarting brings the session back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use muxagent_proto::app::{
    ApprovalId, ApprovalRequest, ApprovalState, Event, EventKind, SessionId, SessionInfo,
    SessionStatus, Usage,
};
use muxagent_store::limits::{LOG_RETENTION_LEN, LOG_SEGMENT_LEN};
use muxagent_store::{Log, Options};

use super::session_machine;
use serde::{Deserialize, Serialize};

use crate::limits::{DAEMON_LOG_RETRY_SECS, REPLAY_PAGE_EVENTS};

/// The checkpoint's file name inside a session's log folder (the store ignores other names).
const CHECKPOINT_FILE: &str = "checkpoint.json";

/// A session's log failed.
#[derive(Debug)]
pub enum SessionError {
    /// No session has that id.
    Unknown(SessionId),
    /// The session's log refused the operation.
    Store {
        /// The session.
        session: SessionId,
        /// The store's error.
        source: muxagent_store::Error,
    },
    /// The sessions folder could not be listed.
    Io(std::io::Error),
    /// The session's log failed earlier (said then) and is not written until it heals.
    Suspended {
        /// The session.
        session: SessionId,
        /// Why it failed.
        reason: String,
    },
}

impl SessionError {
    /// An event refused because the log failed earlier: that failure was already reported, so
    /// this one is not worth a line of its own (a streaming agent would write one per delta).
    pub fn is_repeat(&self) -> bool {
        matches!(self, SessionError::Suspended { .. })
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Unknown(id) => write!(f, "no session {id}"),
            SessionError::Store { session, source } => {
                write!(f, "session {session}'s history: {source}")
            }
            SessionError::Io(source) => write!(f, "cannot list the sessions folder: {source}"),
            SessionError::Suspended { session, reason } => write!(
                f,
                "session {session}'s history cannot be written ({reason}); its events are not \
                 kept until it can"
            ),
        }
    }
}

impl std::error::Error for SessionError {}

/// An approval that is not closed yet (not applied, withdrawn or expired).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenApproval {
    /// What was asked.
    pub request: ApprovalRequest,
    /// Requested, Delivered or Decided.
    pub state: ApprovalState,
}

/// What the log says about a session beyond its [`SessionInfo`]: what a daemon needs to answer
/// approvals and to resume the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The runtime's arguments as started.
    pub args: Vec<String>,
    /// Approvals not closed yet, by number.
    pub approvals: BTreeMap<ApprovalId, OpenApproval>,
    /// The highest approval number handed out.
    pub last_approval: ApprovalId,
    /// The agent's own session id, for resuming.
    pub agent_session: Option<String>,
}

struct Session {
    info: SessionInfo,
    state: SessionState,
    log: Log<Event>,
    /// Set when writing the log failed: see the module's "A log that cannot be written".
    broken: Option<Broken>,
}

/// Why a session's log is suspended, and since when.
struct Broken {
    /// The store's error, for people.
    reason: String,
    /// The time (unix seconds) of the next attempt to open the log again.
    retry_at: u64,
    /// Events refused since.
    refused: u64,
}

impl Broken {
    fn new(reason: String, at: u64) -> Self {
        Broken {
            reason,
            retry_at: at.saturating_add(DAEMON_LOG_RETRY_SECS),
            refused: 0,
        }
    }
}

/// Whether a store error left the log poisoned (an IO error while writing or syncing).
fn poisons(error: &muxagent_store::Error) -> bool {
    matches!(
        error,
        muxagent_store::Error::Io { .. } | muxagent_store::Error::Poisoned { .. }
    )
}

/// The `Error` event's text once a suspended log is written again.
fn not_kept_message(lost: u64, reason: &str) -> String {
    let events = if lost == 1 { "event" } else { "events" };
    format!(
        "{lost} {events} of this session were not kept: its history could not be written \
         ({reason}); it is written again now"
    )
}

/// The fold of a session's events up to `info.last_seq`, kept beside its log.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    info: SessionInfo,
    state: SessionState,
}

/// A session whose log could not be read, set aside.
#[derive(Clone, Debug)]
pub struct Damaged {
    /// The session.
    pub id: SessionId,
    /// What is wrong, for people (names the file and what to do).
    pub reason: String,
}

/// Every session of this machine.
pub struct Sessions {
    dir: PathBuf,
    options: Options,
    sessions: BTreeMap<SessionId, Session>,
    /// Sessions with events appended since their last [`Sessions::sync`].
    unsynced: BTreeSet<SessionId>,
    damaged: Vec<Damaged>,
}

/// How session logs rotate: [`LOG_SEGMENT_LEN`] segments, [`LOG_RETENTION_LEN`] kept (applied by
/// [`Sessions`] after a checkpoint, not by the store).
pub fn log_options() -> Options {
    Options {
        segment_len: LOG_SEGMENT_LEN,
        retention: Some(LOG_RETENTION_LEN),
    }
}

fn parse_id(name: &str) -> Option<SessionId> {
    let mut id = [0u8; 16];
    if name.len() != 32 {
        return None;
    }
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(SessionId(id))
}

fn empty_info(id: SessionId) -> SessionInfo {
    SessionInfo {
        id,
        runtime: Default::default(),
        cwd: String::new(),
        title: String::new(),
        status: SessionStatus::Idle,
        created_at: 0,
        updated_at: 0,
        usage: Usage::default(),
        pending_approvals: 0,
        last_seq: 0,
    }
}

/// Apply one event to a session's metadata and state: what a session is here, its life (status,
/// usage, approvals) by the session machine's [`fold`](super::session_machine::fold).
fn fold(info: &mut SessionInfo, state: &mut SessionState, event: &Event) {
    info.last_seq = event.seq;
    info.updated_at = event.at;
    if let EventKind::Started {
        runtime,
        cwd,
        title,
        ..
    } = &event.kind
    {
        info.runtime = runtime.clone();
        info.cwd = cwd.clone();
        info.title = title.clone();
        info.created_at = event.at;
    }
    session_machine::fold(&mut info.status, &mut info.usage, state, &event.kind);
    info.pending_approvals = session_machine::waiting(state) as u32;
}

impl Sessions {
    /// Open every session log under `dir`. Returns the sessions and one line per log that had
    /// to be repaired; logs that could not be read are set aside ([`Sessions::damaged`]).
    pub fn open(dir: &Path) -> Result<(Self, Vec<String>), SessionError> {
        Self::open_with(dir, log_options())
    }

    /// [`Sessions::open`] with other log sizes (`options.retention` is the budget this applies
    /// after each checkpoint; the store itself is opened without retention).
    pub fn open_with(dir: &Path, options: Options) -> Result<(Self, Vec<String>), SessionError> {
        crate::home::create_private_dir(dir)
            .map_err(|error| SessionError::Io(std::io::Error::other(error.to_string())))?;
        let mut sessions = Self {
            dir: dir.to_path_buf(),
            options,
            sessions: BTreeMap::new(),
            unsynced: BTreeSet::new(),
            damaged: Vec::new(),
        };
        let mut repaired = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(SessionError::Io)? {
            let entry = entry.map_err(SessionError::Io)?;
            let Some(id) = entry.file_name().to_str().and_then(parse_id) else {
                continue;
            };
            match sessions.load(id, &entry.path(), &mut repaired) {
                Ok(session) => {
                    sessions.sessions.insert(id, session);
                }
                Err(source) => sessions.damaged.push(Damaged {
                    id,
                    reason: source.to_string(),
                }),
            }
        }
        sessions.damaged.sort_by_key(|damaged| damaged.id);
        Ok((sessions, repaired))
    }

    /// Open one session's log and fold it on top of its checkpoint.
    fn load(
        &self,
        id: SessionId,
        path: &Path,
        repaired: &mut Vec<String>,
    ) -> Result<Session, muxagent_store::Error> {
        let (mut log, report) = Log::<Event>::open(path, self.store_options())?;
        if !report.is_clean() {
            repaired.push(format!("session {id}: {report}"));
        }
        let (mut info, mut state) = (empty_info(id), SessionState::default());
        match read_checkpoint(path) {
            Ok(Some(checkpoint)) if checkpoint.info.last_seq <= log.next_seq() => {
                (info, state) = (checkpoint.info, checkpoint.state);
            }
            Ok(Some(_)) => repaired.push(format!(
                "session {id}: its checkpoint is ahead of its log; rebuilt from the log alone"
            )),
            Ok(None) => {}
            Err(reason) => repaired.push(format!(
                "session {id}: its checkpoint is unreadable ({reason}); rebuilt from the log alone"
            )),
        }
        // Event seq n is log record n - 1: the checkpoint covers records below `last_seq`.
        let from = info.last_seq.max(log.first_seq());
        if from > info.last_seq {
            repaired.push(format!(
                "session {id}: events before seq {} were dropped by retention before checkpoints \
                 existed; its metadata may be incomplete",
                from + 1
            ));
        }
        for item in log.iter_from(from)? {
            let (_, event) = item?;
            fold(&mut info, &mut state, &event);
        }
        Ok(Session {
            info,
            state,
            log,
            broken: None,
        })
    }

    /// The store's options: no retention of its own (see [`Sessions::retain`]).
    fn store_options(&self) -> Options {
        Options {
            retention: None,
            ..self.options
        }
    }

    /// Sessions whose logs could not be read, set aside (not loaded).
    pub fn damaged(&self) -> &[Damaged] {
        &self.damaged
    }

    /// Create a session whose first event is `started`.
    pub fn create(
        &mut self,
        id: SessionId,
        started: EventKind,
        at: u64,
    ) -> Result<Event, SessionError> {
        let store = |source| SessionError::Store {
            session: id,
            source,
        };
        let (log, _) =
            Log::open(self.dir.join(format!("{id:#}")), self.store_options()).map_err(store)?;
        self.sessions.insert(
            id,
            Session {
                info: empty_info(id),
                state: SessionState::default(),
                log,
                broken: None,
            },
        );
        self.record(id, started, at)
    }

    /// Append an event to a session and fold it; returns it with its seq. It is durable only
    /// once a later [`Sessions::sync`] returned without an error for this session: nothing may
    /// send it to a device before that.
    pub fn record(
        &mut self,
        id: SessionId,
        kind: EventKind,
        at: u64,
    ) -> Result<Event, SessionError> {
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::Unknown(id))?;
        let store = |source| SessionError::Store {
            session: id,
            source,
        };
        if let Some(broken) = &mut session.broken {
            broken.refused += 1;
            return Err(SessionError::Suspended {
                session: id,
                reason: broken.reason.clone(),
            });
        }
        let event = Event {
            session: id,
            seq: session.log.next_seq() + 1,
            at,
            kind,
        };
        if let Err(error) = session.log.append(&event) {
            if poisons(&error) {
                // This event and whatever was appended but not synced are gone.
                let mut broken = Broken::new(error.to_string(), at);
                broken.refused = 1;
                session.broken = Some(broken);
                self.unsynced.remove(&id);
            }
            return Err(store(error));
        }
        self.unsynced.insert(id);
        fold(&mut session.info, &mut session.state, &event);
        if let Some(budget) = self.options.retention
            && session.log.disk_len() > budget
        {
            retain(session, budget).map_err(|source| match source {
                RetainError::Store(source) => store(source),
                RetainError::Checkpoint(error) => SessionError::Io(error),
            })?;
        }
        Ok(event)
    }

    /// Make every event appended so far durable: one fsync per session with new events (group
    /// commit). Returns the sessions whose log failed; their log is poisoned (every later
    /// append fails) and their events after [`Sessions::durable_seq`] must never be sent.
    pub fn sync(&mut self) -> Vec<SessionError> {
        let mut failed = Vec::new();
        for id in std::mem::take(&mut self.unsynced) {
            if let Some(session) = self.sessions.get_mut(&id)
                && let Err(source) = session.log.sync()
            {
                if poisons(&source) {
                    let now = crate::os::unix_now();
                    session.broken = Some(Broken::new(source.to_string(), now));
                }
                failed.push(SessionError::Store {
                    session: id,
                    source,
                });
            }
        }
        failed
    }

    /// Whether `id`'s log is suspended (see the module's "A log that cannot be written").
    pub fn is_suspended(&self, id: &SessionId) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|session| session.broken.is_some())
    }

    /// Try to write `id`'s suspended log again, at most once per [`DAEMON_LOG_RETRY_SECS`]
    /// (`at`: now, unix seconds): open it again and fold it as a restart would, then log an
    /// `Error` event saying how many events were not kept and why. Returns that event (to be
    /// committed and sent like any other), `Ok(None)` if the log was not suspended, or the
    /// error that refuses events meanwhile. Opening reads the whole log (at most
    /// [`LOG_RETENTION_LEN`] + [`LOG_SEGMENT_LEN`]), hence the pause between attempts.
    pub fn heal(&mut self, id: SessionId, at: u64) -> Result<Option<Event>, SessionError> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Ok(None);
        };
        let Some(broken) = &mut session.broken else {
            return Ok(None);
        };
        let suspended = |broken: &Broken| SessionError::Suspended {
            session: id,
            reason: broken.reason.clone(),
        };
        if at < broken.retry_at {
            return Err(suspended(broken));
        }
        broken.retry_at = at.saturating_add(DAEMON_LOG_RETRY_SECS);
        let old_next = session.log.next_seq();
        let path = self.dir.join(format!("{id:#}"));
        let mut repaired = Vec::new();
        let fresh = match self.load(id, &path, &mut repaired) {
            Ok(fresh) => fresh,
            Err(error) => {
                let session = self.sessions.get_mut(&id);
                if let Some(broken) = session.and_then(|s| s.broken.as_mut()) {
                    broken.reason = error.to_string();
                    return Err(suspended(broken));
                }
                return Err(SessionError::Store {
                    session: id,
                    source: error,
                });
            }
        };
        let Some(old) = self.sessions.insert(id, fresh) else {
            return Ok(None);
        };
        let Some(broken) = old.broken else {
            return Ok(None);
        };
        drop(old.log);
        let lost = broken
            .refused
            .saturating_add(old_next.saturating_sub(self.durable_seq(&id)));
        let message = not_kept_message(lost, &broken.reason);
        self.record(id, EventKind::Error { message }, at).map(Some)
    }

    /// The seq of `id`'s last durable event (0 if none, or no such session).
    pub fn durable_seq(&self, id: &SessionId) -> u64 {
        // Event seq n is log record n - 1: records below `durable_seq()` are seqs up to it.
        self.sessions
            .get(id)
            .map_or(0, |session| session.log.durable_seq())
    }

    /// How many fsyncs `id`'s log made since it was opened.
    #[cfg(test)]
    pub fn sync_count(&self, id: &SessionId) -> u64 {
        self.sessions
            .get(id)
            .map_or(0, |session| session.log.sync_count())
    }

    /// Up to one page of `id`'s durable events with seq above `after_seq`, oldest first. Events
    /// compacted away by retention are skipped: the page starts at the oldest one kept.
    pub fn page_after(
        &mut self,
        id: SessionId,
        after_seq: u64,
    ) -> Result<Vec<Event>, SessionError> {
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::Unknown(id))?;
        let store = |source| SessionError::Store {
            session: id,
            source,
        };
        if let Some(broken) = &session.broken {
            return Err(SessionError::Suspended {
                session: id,
                reason: broken.reason.clone(),
            });
        }
        // Event seq n is log record n - 1.
        let from = after_seq.max(session.log.first_seq());
        let durable = session.log.durable_seq();
        if from >= durable {
            return Ok(Vec::new());
        }
        let count = usize::try_from(durable - from)
            .map_or(REPLAY_PAGE_EVENTS, |count| count.min(REPLAY_PAGE_EVENTS));
        let mut page = Vec::new();
        for item in session.log.iter_from(from).map_err(store)?.take(count) {
            page.push(item.map_err(store)?.1);
        }
        Ok(page)
    }

    /// A session's metadata.
    pub fn info(&self, id: &SessionId) -> Option<&SessionInfo> {
        self.sessions.get(id).map(|session| &session.info)
    }

    /// What the log says about a session's approvals and agent.
    pub fn state(&self, id: &SessionId) -> Option<&SessionState> {
        self.sessions.get(id).map(|session| &session.state)
    }

    /// Every session's metadata, newest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self.sessions.values().map(|s| s.info.clone()).collect();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }

    /// Every session id.
    pub fn ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// The log folder of a session.
    #[cfg(test)]
    fn log_dir(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{id:#}"))
    }

    /// Sessions that were running when the daemon last stopped.
    pub fn unfinished(&self) -> Vec<SessionId> {
        self.sessions
            .values()
            .filter(|s| {
                matches!(
                    s.info.status,
                    SessionStatus::Running | SessionStatus::WaitingApproval | SessionStatus::Idle
                )
            })
            .map(|s| s.info.id)
            .collect()
    }
}

enum RetainError {
    Store(muxagent_store::Error),
    Checkpoint(std::io::Error),
}

/// Write the session's checkpoint (everything folded so far), then let the log drop its oldest
/// segments down to `budget`: what retention deletes is always covered by a durable checkpoint.
/// The log is synced first, so the checkpoint is never ahead of what the log holds after a crash.
fn retain(session: &mut Session, budget: u64) -> Result<(), RetainError> {
    session.log.sync().map_err(RetainError::Store)?;
    let checkpoint = Checkpoint {
        info: session.info.clone(),
        state: session.state.clone(),
    };
    let bytes = serde_json::to_vec(&checkpoint)
        .map_err(|error| RetainError::Checkpoint(std::io::Error::other(error)))?;
    crate::home::write_atomic(&session.log.dir().join(CHECKPOINT_FILE), &bytes, 0o600)
        .map_err(|error| RetainError::Checkpoint(std::io::Error::other(error.to_string())))?;
    session.log.retain(budget).map_err(RetainError::Store)?;
    Ok(())
}

/// The checkpoint beside a log, if there is one.
fn read_checkpoint(dir: &Path) -> Result<Option<Checkpoint>, String> {
    let bytes = match std::fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalKind, Stream};
    use muxagent_proto::identity::Fingerprint;

    use super::*;

    const ID: SessionId = SessionId([3; 16]);
    const OTHER: SessionId = SessionId([4; 16]);

    /// Small logs, so retention runs after a few hundred KiB.
    fn small() -> Options {
        Options {
            segment_len: 16 * 1024,
            retention: Some(64 * 1024),
        }
    }

    fn started(title: &str) -> EventKind {
        EventKind::Started {
            runtime: "claude".try_into().expect("name"),
            args: vec!["--model".into(), "opus".into()],
            cwd: "/work/project".into(),
            title: title.into(),
            device: Fingerprint([9; 32]),
        }
    }

    fn output(n: usize) -> EventKind {
        EventKind::Output {
            stream: Stream::Stdout,
            text: format!("{n:>1000}"),
        }
    }

    #[test]
    fn retention_never_drops_what_a_session_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sessions, _) = Sessions::open_with(dir.path(), small()).expect("open");
        sessions
            .create(ID, started("fix the build"), 100)
            .expect("create");
        sessions
            .record(
                ID,
                EventKind::AgentSession {
                    id: "agent-42".into(),
                },
                101,
            )
            .expect("record");
        let request = ApprovalRequest {
            approval: 1,
            kind: ApprovalKind::Tool,
            agent_request: "req-1".into(),
            tool: "Bash".into(),
            input: r#"{"command":"make"}"#.into(),
            request_hash: [7; 32],
        };
        sessions
            .record(ID, EventKind::ApprovalRequested(request.clone()), 102)
            .expect("record");
        // 500 KiB of output against a 64 KiB budget.
        for n in 0..500 {
            sessions.record(ID, output(n), 200).expect("record");
        }
        assert!(sessions.sync().is_empty());
        let before = sessions.info(&ID).expect("info").clone();
        let state = sessions.state(&ID).expect("state").clone();
        assert_eq!(before.title, "fix the build");
        let first = sessions.page_after(ID, 0).expect("page")[0].seq;
        assert!(
            first > 100,
            "the early events were dropped (first seq {first})"
        );
        drop(sessions);

        let (sessions, repaired) = Sessions::open_with(dir.path(), small()).expect("reopen");
        assert!(repaired.is_empty(), "{repaired:?}");
        let after = sessions.info(&ID).expect("info");
        assert_eq!(*after, before);
        assert_eq!(after.runtime.as_str(), "claude");
        assert_eq!(after.cwd, "/work/project");
        assert_eq!(after.created_at, 100);
        assert_eq!(after.last_seq, 503);
        let after_state = sessions.state(&ID).expect("state");
        assert_eq!(*after_state, state);
        assert_eq!(after_state.agent_session.as_deref(), Some("agent-42"));
        assert_eq!(after_state.args, ["--model", "opus"]);
        assert_eq!(after_state.approvals[&1].request, request);
        // And the disk stays bounded.
        let used: u64 = std::fs::read_dir(sessions.log_dir(&ID))
            .expect("dir")
            .map(|entry| entry.expect("entry").metadata().expect("meta").len())
            .sum();
        assert!(used < 64 * 1024 + 16 * 1024 + 8 * 1024, "{used}");
    }

    #[test]
    fn a_corrupt_log_is_set_aside_and_the_others_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sessions, _) = Sessions::open(dir.path()).expect("open");
        for id in [ID, OTHER] {
            sessions.create(id, started("t"), 1).expect("create");
            for n in 0..3 {
                sessions.record(id, output(n), 2).expect("record");
            }
        }
        assert!(sessions.sync().is_empty());
        let segment = sessions.log_dir(&ID).join("00000000000000000000.seg");
        drop(sessions);
        // One flipped byte in the first record, with valid records after it.
        let mut bytes = std::fs::read(&segment).expect("segment");
        bytes[40] ^= 0x01;
        std::fs::write(&segment, bytes).expect("write");

        let (sessions, _) = Sessions::open(dir.path()).expect("the others still open");
        assert_eq!(sessions.ids(), [OTHER]);
        let damaged = sessions.damaged();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].id, ID);
        assert!(
            damaged[0].reason.contains("corrupt"),
            "{}",
            damaged[0].reason
        );
        assert!(damaged[0].reason.contains("00000000000000000000.seg"));
        // Nothing was changed on disk.
        assert!(segment.exists());
    }

    #[test]
    fn events_are_durable_and_replayed_only_after_a_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sessions, _) = Sessions::open(dir.path()).expect("open");
        sessions.create(ID, started("t"), 1).expect("create");
        sessions.create(OTHER, started("u"), 1).expect("create");
        for n in 0..5 {
            sessions.record(ID, output(n), 2).expect("record");
        }
        assert_eq!(sessions.info(&ID).expect("info").last_seq, 6);
        assert_eq!(sessions.durable_seq(&ID), 0);
        assert!(sessions.page_after(ID, 0).expect("page").is_empty());

        assert!(sessions.sync().is_empty());
        assert_eq!(sessions.durable_seq(&ID), 6);
        assert_eq!(sessions.durable_seq(&OTHER), 1);
        let seqs: Vec<u64> = sessions
            .page_after(ID, 2)
            .expect("page")
            .iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        sessions.record(ID, output(5), 3).expect("record");
        assert!(sessions.page_after(ID, 6).expect("page").is_empty());
    }
}
