//! The machine's sessions and their history: one append-only log per session under
//! `$MUXAGENT_HOME/sessions/<id>/`, holding every [`Event`] in order. A session's metadata
//! ([`SessionInfo`]) is a fold of its events, rebuilt from the log on start, so the log is the
//! only truth and survives daemon restarts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use muxagent_proto::app::{
    ApprovalId, ApprovalRequest, ApprovalState, Event, EventKind, SessionId, SessionInfo,
    SessionStatus, Usage,
};
use muxagent_store::{Log, Options};

use muxagent_proto::limits::REPLAY_PAGE_EVENTS;

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
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Unknown(id) => write!(f, "no session {id}"),
            SessionError::Store { session, source } => {
                write!(f, "session {session}'s history: {source}")
            }
            SessionError::Io(source) => write!(f, "cannot list the sessions folder: {source}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// An approval that is not closed yet (not applied, withdrawn or expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenApproval {
    /// What was asked.
    pub request: ApprovalRequest,
    /// Requested, Delivered or Decided.
    pub state: ApprovalState,
}

/// What the log says about a session beyond its [`SessionInfo`]: what a daemon needs to answer
/// approvals and to resume the agent.
#[derive(Clone, Debug, Default)]
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
}

/// Every session of this machine.
pub struct Sessions {
    dir: PathBuf,
    sessions: BTreeMap<SessionId, Session>,
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

/// Apply one event to a session's metadata and state.
fn fold(info: &mut SessionInfo, state: &mut SessionState, event: &Event) {
    info.last_seq = event.seq;
    info.updated_at = event.at;
    match &event.kind {
        EventKind::Started {
            runtime,
            args,
            cwd,
            title,
            ..
        } => {
            info.runtime = runtime.clone();
            info.cwd = cwd.clone();
            info.title = title.clone();
            info.created_at = event.at;
            info.status = SessionStatus::Running;
            state.args = args.clone();
        }
        EventKind::Status(status) => info.status = *status,
        EventKind::Usage(usage) => info.usage = *usage,
        EventKind::ApprovalRequested(request) => {
            state.last_approval = state.last_approval.max(request.approval);
            state.approvals.insert(
                request.approval,
                OpenApproval {
                    request: request.clone(),
                    state: ApprovalState::Requested,
                },
            );
        }
        EventKind::ApprovalResolved { approval, .. } => {
            if let Some(open) = state.approvals.get_mut(approval) {
                open.state = ApprovalState::Decided;
            }
        }
        EventKind::ApprovalState {
            approval,
            state: new_state,
        } => match new_state {
            ApprovalState::Applied | ApprovalState::Withdrawn | ApprovalState::Expired => {
                state.approvals.remove(approval);
            }
            ApprovalState::Requested | ApprovalState::Delivered | ApprovalState::Decided => {
                if let Some(open) = state.approvals.get_mut(approval) {
                    open.state = *new_state;
                }
            }
        },
        EventKind::AgentSession { id } => state.agent_session = Some(id.clone()),
        _ => {}
    }
    info.pending_approvals = state
        .approvals
        .values()
        .filter(|open| open.state != ApprovalState::Decided)
        .count() as u32;
}

impl Sessions {
    /// Open every session log under `dir`. Returns the sessions and one line per log whose tail
    /// had to be repaired.
    pub fn open(dir: &Path) -> Result<(Self, Vec<String>), SessionError> {
        crate::home::create_private_dir(dir)
            .map_err(|error| SessionError::Io(std::io::Error::other(error.to_string())))?;
        let mut sessions = BTreeMap::new();
        let mut repaired = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(SessionError::Io)? {
            let entry = entry.map_err(SessionError::Io)?;
            let Some(id) = entry.file_name().to_str().and_then(parse_id) else {
                continue;
            };
            let store = |source| SessionError::Store {
                session: id,
                source,
            };
            let (mut log, report) =
                Log::<Event>::open(entry.path(), Options::default()).map_err(store)?;
            if !report.is_clean() {
                repaired.push(format!("session {id}: {report}"));
            }
            let mut info = empty_info(id);
            let mut state = SessionState::default();
            for item in log.iter().map_err(store)? {
                let (_, event) = item.map_err(store)?;
                fold(&mut info, &mut state, &event);
            }
            sessions.insert(id, Session { info, state, log });
        }
        Ok((
            Self {
                dir: dir.to_path_buf(),
                sessions,
            },
            repaired,
        ))
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
            Log::open(self.dir.join(format!("{id:#}")), Options::default()).map_err(store)?;
        self.sessions.insert(
            id,
            Session {
                info: empty_info(id),
                state: SessionState::default(),
                log,
            },
        );
        self.record(id, started, at)
    }

    /// Append an event to a session and make it durable; returns it with its seq.
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
        let event = Event {
            session: id,
            seq: session.log.next_seq() + 1,
            at,
            kind,
        };
        session.log.append(&event).map_err(store)?;
        session.log.sync().map_err(store)?;
        fold(&mut session.info, &mut session.state, &event);
        Ok(event)
    }

    /// Up to one page of `id`'s events with seq above `after_seq`, oldest first. Events
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
        // Event seq n is log record n - 1.
        let from = after_seq.max(session.log.first_seq());
        if from >= session.log.next_seq() {
            return Ok(Vec::new());
        }
        let mut page = Vec::new();
        for item in session
            .log
            .iter_from(from)
            .map_err(store)?
            .take(REPLAY_PAGE_EVENTS)
        {
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
