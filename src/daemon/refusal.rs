//! Why the machine refused what a device asked, as a type: each reason says in its `Display`
//! what the person reading it on the phone needs to know (and, where there is one, what to do),
//! and maps to the wire's [`AppErrorCode`] for programs only at the edge
//! ([`Refusal::code`], used where the answer is sent).

use std::fmt;

use muxagent_proto::app::{AppErrorCode, ApprovalId, SessionId};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::APPROVAL_INPUT_MAX_LEN;

use super::runtime;

/// A device request that was refused. Nothing was changed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No session has that id.
    UnknownSession(SessionId),
    /// No runtime has that name.
    UnknownRuntime(String),
    /// The working folder asked for is not a folder on this machine.
    NotADirectory(String),
    /// A permission mode the runtime does not know.
    UnknownMode {
        /// The mode asked for.
        mode: String,
        /// The runtime, when starting a session (named); `None`: a running session's.
        runtime: Option<&'static str>,
        /// The modes it knows.
        modes: &'static [&'static str],
    },
    /// The runtime cannot make a command line of the request (its message).
    BadCommandLine(String),
    /// The session's agent is not running.
    NotRunning(SessionId),
    /// The session's agent is gone and its conversation cannot be resumed.
    NotResumable(SessionId),
    /// The agent's command queue is full.
    Busy,
    /// The session never had that approval.
    NoSuchApproval {
        /// The session.
        session: SessionId,
        /// The approval asked for.
        approval: ApprovalId,
    },
    /// The approval was closed (decided and applied, withdrawn or expired).
    NoLongerPending {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
    },
    /// The approval is open but was decided already.
    AlreadyDecided {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
    },
    /// A page of the input was asked of an approval that is not open.
    ApprovalNotOpen {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
    },
    /// The decision's hash is not the approval's request hash.
    HashMismatch {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
    },
    /// The decision's signature does not verify.
    BadSignature,
    /// The decision is signed by one device and sent by another.
    WrongSigner {
        /// Who signed.
        signer: Fingerprint,
        /// Who sent it.
        sender: Fingerprint,
    },
    /// The decision's signer is not paired with this machine.
    SignerNotPaired(Fingerprint),
    /// The device asking is not paired with this machine.
    DeviceNotPaired(Fingerprint),
    /// The session's agent is gone, and with it every open approval.
    ApprovalsVoid(SessionId),
    /// The approval's input is longer than the daemon keeps whole.
    InputKeptCut {
        /// The session.
        session: SessionId,
        /// The approval.
        approval: ApprovalId,
    },
    /// A page of an input past its end.
    OffsetPastEnd {
        /// The offset asked for.
        offset: u64,
        /// The input's length in bytes.
        total: u64,
    },
    /// Push keys that are not a P-256 point (the parser's message).
    BadPushKeys(String),
    /// A test notification for a device without push keys.
    NoPushKeys,
    /// Too many notifications to the device in the last minute.
    PushRateLimited {
        /// When the next may go.
        retry_in_secs: u64,
    },
    /// The relay link could not take the notification.
    PushNotQueued,
    /// The saved state could not be written (the error).
    PushKeysNotSaved(String),
    /// This machine failed (its disk, a signal …): the error, for people.
    Internal(String),
}

impl Refusal {
    /// The code programs see on the wire.
    pub fn code(&self) -> AppErrorCode {
        match self {
            Refusal::UnknownSession(_) => AppErrorCode::UnknownSession,
            Refusal::UnknownRuntime(_) => AppErrorCode::UnknownRuntime,
            Refusal::NotADirectory(_)
            | Refusal::UnknownMode { .. }
            | Refusal::BadCommandLine(_)
            | Refusal::OffsetPastEnd { .. }
            | Refusal::BadPushKeys(_) => AppErrorCode::BadRequest,
            Refusal::NotRunning(_)
            | Refusal::NotResumable(_)
            | Refusal::Busy
            | Refusal::DeviceNotPaired(_)
            | Refusal::ApprovalsVoid(_)
            | Refusal::InputKeptCut { .. }
            | Refusal::NoPushKeys
            | Refusal::PushRateLimited { .. } => AppErrorCode::InvalidState,
            Refusal::NoSuchApproval { .. }
            | Refusal::NoLongerPending { .. }
            | Refusal::AlreadyDecided { .. }
            | Refusal::ApprovalNotOpen { .. } => AppErrorCode::UnknownApproval,
            Refusal::HashMismatch { .. } => AppErrorCode::HashMismatch,
            Refusal::BadSignature | Refusal::WrongSigner { .. } | Refusal::SignerNotPaired(_) => {
                AppErrorCode::BadSignature
            }
            Refusal::PushNotQueued | Refusal::PushKeysNotSaved(_) | Refusal::Internal(_) => {
                AppErrorCode::Internal
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownSession(session) => write!(f, "no session {session}"),
            Refusal::UnknownRuntime(name) => write!(
                f,
                "there is no runtime `{name}` (there are: {})",
                runtime::NAMES.join(", ")
            ),
            Refusal::NotADirectory(cwd) => write!(f, "{cwd} is not a directory on this machine"),
            Refusal::UnknownMode {
                mode,
                runtime,
                modes,
            } => {
                write!(f, "unknown permission mode `{mode}`; ")?;
                match (runtime, modes.is_empty()) {
                    (Some(runtime), true) => {
                        write!(f, "{runtime} sessions have no permission modes")
                    }
                    (Some(runtime), false) => write!(f, "{runtime} knows: {}", modes.join(", ")),
                    (None, true) => f.write_str("this session's runtime has no permission modes"),
                    (None, false) => write!(f, "it knows: {}", modes.join(", ")),
                }
            }
            Refusal::BadCommandLine(message) | Refusal::Internal(message) => f.write_str(message),
            Refusal::NotRunning(session) => write!(f, "session {session} is not running"),
            Refusal::NotResumable(session) => {
                write!(f, "session {session} is not running and cannot be resumed")
            }
            Refusal::Busy => {
                f.write_str("the agent has too many commands waiting; try again in a moment")
            }
            Refusal::NoSuchApproval { session, approval } => {
                write!(f, "session {session} has no approval {approval}")
            }
            Refusal::NoLongerPending { session, approval } => write!(
                f,
                "approval {approval} of session {session} is no longer pending (it was decided, \
                 withdrawn or expired)"
            ),
            Refusal::AlreadyDecided { session, approval } => write!(
                f,
                "approval {approval} of session {session} was already decided"
            ),
            Refusal::ApprovalNotOpen { session, approval } => {
                write!(f, "approval {approval} of session {session} is not open")
            }
            Refusal::HashMismatch { session, approval } => write!(
                f,
                "the decision is for another request than approval {approval} of session \
                 {session} (hash mismatch); nothing was changed"
            ),
            Refusal::BadSignature => {
                f.write_str("the decision's signature does not verify; nothing was changed")
            }
            Refusal::WrongSigner { signer, sender } => write!(
                f,
                "the decision is signed by device {signer}, not by {sender} which sent it"
            ),
            Refusal::SignerNotPaired(device) | Refusal::DeviceNotPaired(device) => {
                write!(f, "device {device} is not paired with this machine")
            }
            Refusal::ApprovalsVoid(session) => write!(
                f,
                "session {session} is not running; its approvals are void"
            ),
            Refusal::InputKeptCut { session, approval } => write!(
                f,
                "approval {approval} of session {session} has an input longer than this machine \
                 keeps for devices ({} KiB at most); it can only be denied",
                APPROVAL_INPUT_MAX_LEN / 1024
            ),
            Refusal::OffsetPastEnd { offset, total } => {
                write!(f, "offset {offset} is past the input's end ({total} bytes)")
            }
            Refusal::BadPushKeys(message) => f.write_str(message),
            Refusal::NoPushKeys => f.write_str(
                "this device has no push keys on this machine: turn notifications on first",
            ),
            Refusal::PushRateLimited { retry_in_secs } => write!(
                f,
                "this device had too many notifications from this machine in the last minute; \
                 try again in {retry_in_secs} s"
            ),
            Refusal::PushNotQueued => {
                f.write_str("this machine could not hand the notification to the relay; try again")
            }
            Refusal::PushKeysNotSaved(error) => {
                write!(f, "this machine could not save the push keys: {error}")
            }
        }
    }
}

impl std::error::Error for Refusal {}
