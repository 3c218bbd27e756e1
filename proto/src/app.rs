//! Messages between a device and a machine, inside the end-to-end channel (DESIGN §5).
//!
//! Each message is an [`envelope`](crate::envelope) (`kind ‖ postcard body`) and is the plaintext
//! of one channel message, so it is at most [`MAX_APP_MESSAGE_LEN`]. The relay never sees them.
//!
//! Requests carry a `request` number chosen by the device; the machine answers with
//! [`Ack`] or [`AppError`] carrying it. A mutation only acknowledges: the state change itself
//! arrives as [`Event`]s, which are what the machine logs and what a reconnecting device replays
//! from its [`Cursor`]s.

use core::fmt;

use alloc::string::String;
use alloc::vec::Vec;
use blake2::{Blake2s256, Digest};
use serde::{Deserialize, Serialize};

use crate::envelope::{Body, wire_enum};
use crate::frame::Hostname;
use crate::identity::{
    Fingerprint, Identity, PublicIdentity, SignDomain, Signature, SignatureError,
};
use crate::limits::{
    APPROVAL_INPUT_MAX_LEN, INPUT_CHUNK_LEN, MAX_APP_MESSAGE_LEN, MAX_CURSORS, MAX_MODE_LEN,
    MAX_RUNTIME_NAME_LEN, PUSH_AUTH_LEN, PUSH_VAPID_KEY_LEN,
};

/// A session's id on its machine: 16 random bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl fmt::Display for SessionId {
    /// The first 8 hex digits; `{:#}` for all 32.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if f.alternate() {
            &self.0[..]
        } else {
            &self.0[..4]
        };
        for byte in shown {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// An approval request's number within its session.
pub type ApprovalId = u64;

/// A runtime name (`command`, `claude`, `codex`, `acp`, `gemini`, …).
pub type RuntimeName = heapless::String<MAX_RUNTIME_NAME_LEN>;

/// A permission mode name, as the runtime understands it (`default`, `plan`, `acceptEdits`, …).
pub type Mode = heapless::String<MAX_MODE_LEN>;

/// Where a device is in one session's event stream: it has every event up to `last_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The session.
    pub session: SessionId,
    /// The last event seq the device holds (0: none).
    pub last_seq: u64,
}

/// A session's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Waiting for a prompt.
    Idle,
    /// The agent is working.
    Running,
    /// The agent waits on an approval.
    WaitingApproval,
    /// Finished on its own.
    Done,
    /// Ended with an error.
    Error,
    /// Stopped by a device.
    Stopped,
}

/// What a machine tells devices about a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The id.
    pub id: SessionId,
    /// The runtime it runs on.
    pub runtime: RuntimeName,
    /// Its working directory on the machine.
    pub cwd: String,
    /// A title for people.
    pub title: String,
    /// Its state.
    pub status: SessionStatus,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last event.
    pub updated_at: u64,
    /// Tokens and cost so far.
    pub usage: Usage,
    /// Approvals waiting for a decision.
    pub pending_approvals: u32,
    /// The seq of the newest event.
    pub last_seq: u64,
}

/// Token counts (always) and cost (only when the agent reports one; never estimated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the agent's cache.
    pub cached_tokens: u64,
    /// Cost in millionths of a US dollar, as the agent reported it.
    pub cost_usd_micros: Option<u64>,
}

/// A runtime a machine offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Its name, for [`StartSession::runtime`].
    pub name: RuntimeName,
    /// Whether its program was found on the machine.
    pub available: bool,
    /// A version or why it is unavailable.
    pub detail: String,
}

/// Which output stream of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What an approval asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalKind {
    /// Run a tool (a command, an edit, a fetch …).
    Tool,
    /// Accept a plan and leave plan mode.
    Plan,
}

/// An agent's request for permission, as the machine presents it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Its number in the session.
    pub approval: ApprovalId,
    /// Tool or plan.
    pub kind: ApprovalKind,
    /// The agent's own id for the request.
    pub agent_request: String,
    /// The tool's name.
    pub tool: String,
    /// The tool's exact input (JSON as the agent sent it).
    pub input: String,
    /// [`request_hash`] of the above: what a decision must name.
    pub request_hash: [u8; 32],
}

/// The person's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Allow this one request.
    AllowOnce,
    /// Allow it and add a rule so the agent does not ask again for the same.
    AllowAlways,
    /// Refuse, with a message for the agent.
    Deny {
        /// Told to the agent.
        message: String,
    },
}

/// Where an approval is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalState {
    /// The agent asked.
    Requested,
    /// At least one device has received it.
    Delivered,
    /// A device decided; the agent is being answered.
    Decided,
    /// The agent received the answer.
    Applied,
    /// The agent took the request back (interrupt, cancel).
    Withdrawn,
    /// The machine's policy timed it out.
    Expired,
}

/// What happened in a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The session began: the first event of every session.
    Started {
        /// The runtime.
        runtime: RuntimeName,
        /// The runtime's arguments (the command line of a `command` session).
        args: Vec<String>,
        /// Working directory.
        cwd: String,
        /// Title.
        title: String,
        /// The device that started it.
        device: Fingerprint,
    },
    /// A prompt a device sent.
    Prompt {
        /// Its text.
        text: String,
    },
    /// A complete piece of the agent's answer.
    Text {
        /// The text.
        text: String,
    },
    /// A streamed fragment of the agent's answer.
    TextDelta {
        /// The fragment.
        text: String,
    },
    /// The agent's reasoning, where it shows it.
    Thinking {
        /// The text.
        text: String,
    },
    /// Output of a `command` session.
    Output {
        /// Which stream.
        stream: Stream,
        /// The bytes as UTF-8 (lossy).
        text: String,
    },
    /// A tool call began.
    ToolStarted {
        /// The agent's id for the call.
        tool_call: String,
        /// The tool.
        name: String,
        /// Its input (JSON).
        input: String,
    },
    /// A tool call reported progress.
    ToolUpdated {
        /// The agent's id for the call.
        tool_call: String,
        /// What changed.
        detail: String,
    },
    /// A tool call ended.
    ToolFinished {
        /// The agent's id for the call.
        tool_call: String,
        /// Whether it succeeded.
        ok: bool,
        /// Its output.
        output: String,
        /// A unified diff, where the agent reported one.
        diff: Option<String>,
    },
    /// The agent asks for permission.
    ApprovalRequested(ApprovalRequest),
    /// An approval changed state.
    ApprovalState {
        /// Which approval.
        approval: ApprovalId,
        /// Its new state.
        state: ApprovalState,
    },
    /// A device decided an approval.
    ApprovalResolved {
        /// Which approval.
        approval: ApprovalId,
        /// The decision.
        decision: Decision,
        /// The device that decided.
        device: Fingerprint,
    },
    /// The agent proposes a plan (its approval follows as an [`ApprovalKind::Plan`] request).
    PlanProposed {
        /// The approval that accepts it.
        approval: ApprovalId,
        /// The plan as the agent wrote it.
        plan: String,
    },
    /// Tokens and cost so far.
    Usage(Usage),
    /// The session changed state.
    Status(SessionStatus),
    /// The agent finished a turn.
    TurnFinished {
        /// Why, in the agent's words.
        reason: String,
    },
    /// Something went wrong.
    Error {
        /// What.
        message: String,
    },
    /// The agent's process ended.
    Exited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if it was killed.
        signal: Option<i32>,
    },
    /// An agent message muxagent does not understand, kept as it came.
    Opaque {
        /// Which runtime sent it.
        source: RuntimeName,
        /// The message (JSON).
        raw: String,
    },
    /// The agent's own id for this conversation: a later process resumes it (Claude's
    /// `session_id`, Codex's thread id, an ACP session id).
    AgentSession {
        /// The id, as the agent gave it.
        id: String,
    },
}

/// One event of a session, as logged by the machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The session.
    pub session: SessionId,
    /// Per-session, starting at 1, increasing by 1.
    pub seq: u64,
    /// Unix seconds on the machine.
    pub at: u64,
    /// What happened.
    pub kind: EventKind,
}
impl Body for Event {
    fn validate(&self) -> Result<(), &'static str> {
        if self.seq == 0 {
            return Err("event seq starts at 1");
        }
        Ok(())
    }
}

/// The hash that binds an approval decision to exactly what was asked:
/// BLAKE2s-256 over a domain label and length-prefixed session, agent request id, tool and input.
pub fn request_hash(session: &SessionId, agent_request: &str, tool: &str, input: &str) -> [u8; 32] {
    let mut hasher = Blake2s256::new();
    hasher.update(b"muxagent/v1/approval-request\0");
    hasher.update(session.0);
    for field in [agent_request, tool, input] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// A decision as a device signs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionBody {
    /// The session.
    pub session: SessionId,
    /// The approval.
    pub approval: ApprovalId,
    /// The [`ApprovalRequest::request_hash`] the device was shown.
    pub request_hash: [u8; 32],
    /// The answer.
    pub decision: Decision,
    /// Unix seconds on the device.
    pub decided_at: u64,
}

/// A decision with the deciding device's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDecision {
    /// What was decided.
    pub body: DecisionBody,
    /// The device.
    pub device: PublicIdentity,
    /// `device` over postcard(`body`) in [`SignDomain::ApprovalDecision`].
    pub signature: Signature,
}

impl SignedDecision {
    /// Sign `body` as `device`.
    pub fn sign(device: &Identity, body: DecisionBody) -> Self {
        let signature = device.sign(SignDomain::ApprovalDecision, &decision_bytes(&body));
        SignedDecision {
            body,
            device: device.public(),
            signature,
        }
    }

    /// Check the signature. The machine must also check that `device` is paired and that
    /// `body.request_hash` is the hash of the pending request.
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.device.verify(
            SignDomain::ApprovalDecision,
            &decision_bytes(&self.body),
            &self.signature,
        )
    }
}

fn decision_bytes(body: &DecisionBody) -> Vec<u8> {
    // Postcard is deterministic for this type; both sides re-encode the same fields.
    crate::envelope::encode(0, body)
}

macro_rules! request_body {
    ($($name:ident),* $(,)?) => { $( impl Body for $name {} )* };
}

/// Device → machine, first message on every channel: where the device is, per session. The
/// machine answers with a [`SessionList`], replays every event after each cursor in pages, then
/// sends [`ReplayComplete`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The device's cursors (sessions it does not list are not replayed).
    pub cursors: Vec<Cursor>,
}
impl Body for Hello {
    fn validate(&self) -> Result<(), &'static str> {
        if self.cursors.len() > MAX_CURSORS {
            return Err("too many cursors");
        }
        Ok(())
    }
}

/// Device → machine: which runtimes are there?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRuntimes {
    /// Request number.
    pub request: u32,
}

/// Device → machine: send the session list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSessions {
    /// Request number.
    pub request: u32,
}

/// Device → machine: start a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSession {
    /// Request number.
    pub request: u32,
    /// The runtime.
    pub runtime: RuntimeName,
    /// Arguments for the runtime (the command line of `command` and `acp`).
    pub args: Vec<String>,
    /// Working directory on the machine.
    pub cwd: String,
    /// The first prompt (may be empty for `command`).
    pub prompt: String,
    /// A title; the machine derives one when absent.
    pub title: Option<String>,
    /// The permission mode to start in.
    pub mode: Option<Mode>,
}
impl Body for StartSession {
    fn validate(&self) -> Result<(), &'static str> {
        if self.cwd.is_empty() {
            return Err("cwd is empty");
        }
        Ok(())
    }
}

/// Device → machine: send a prompt to a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPrompt {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
    /// The prompt.
    pub text: String,
}

/// Device → machine: interrupt the agent's current turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupt {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
}

/// Device → machine: end a session (kills its process group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
}

/// Device → machine: decide an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decide {
    /// Request number.
    pub request: u32,
    /// The signed decision.
    pub decision: SignedDecision,
}

/// Device → machine: change a session's permission mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMode {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
    /// The mode.
    pub mode: Mode,
}

/// Device → machine: replay a session's events after `after_seq` (for a session the device had
/// no cursor for, or to page through history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
    /// Replay events with seq above this.
    pub after_seq: u64,
}

/// Device → machine, on the pairing channel only: the relay registered the machine under the
/// device's account; the machine may now keep the device as paired and log in as a machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingComplete {}

/// Machine → device, on the pairing channel only: the machine's consent to join the device's
/// account, for the device's `RegisterMachine` entry (see
/// [`RegistryEntry::consent_message`](crate::frame::RegistryEntry::consent_message)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingConsent {
    /// The machine's hostname, as it will be registered.
    pub hostname: Hostname,
    /// The machine's signature in [`SignDomain::RegistryEntry`].
    pub consent: Signature,
}

/// What a device wants to be notified of by one machine: a set of [`PushKinds`] bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKinds(pub u8);

impl PushKinds {
    /// An approval was requested.
    pub const APPROVALS: u8 = 1;
    /// A session finished or failed.
    pub const ENDED: u8 = 2;
    /// A plan is ready for review.
    pub const PLANS: u8 = 4;
    /// Every kind.
    pub const ALL: PushKinds = PushKinds(Self::APPROVALS | Self::ENDED | Self::PLANS);

    /// Whether `kind` (one of the constants) is in the set.
    pub fn has(self, kind: u8) -> bool {
        self.0 & kind != 0
    }
}

/// A device's Web Push subscription keys (RFC 8291 §3): what a machine encrypts a push for.
/// The relay never sees them; it holds only the endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    /// The subscription's `p256dh` key: an uncompressed P-256 point,
    /// [`PUSH_VAPID_KEY_LEN`] bytes.
    pub p256dh: Vec<u8>,
    /// The subscription's `auth` secret, [`PUSH_AUTH_LEN`] bytes.
    pub auth: [u8; PUSH_AUTH_LEN],
    /// What to notify of.
    pub kinds: PushKinds,
}

/// Device → machine: notify this device by push (`Some`), or stop (`None`). The machine keeps
/// it across restarts, forgets it with the device, and answers [`Ack`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPush {
    /// Request number.
    pub request: u32,
    /// The subscription keys and kinds, or none to stop.
    pub push: Option<PushKeys>,
}
impl Body for SetPush {
    fn validate(&self) -> Result<(), &'static str> {
        match &self.push {
            Some(keys) if keys.p256dh.len() != PUSH_VAPID_KEY_LEN => {
                Err("a p256dh key is an uncompressed P-256 point")
            }
            _ => Ok(()),
        }
    }
}

/// Device → machine: send this device a test notification now, through the whole path (the
/// machine encrypts, the relay POSTs). Answered with [`Ack`] once handed to the relay, or an
/// [`AppError`] when the device has no push keys on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestPush {
    /// Request number.
    pub request: u32,
}

/// Device → machine: whether this channel's app is on screen now. While any channel of a
/// device is, the machine does not push to that device (the app already shows what a
/// notification would); a channel that closes stops counting. Sent by the web app on every
/// visibility change; a device that never sends it counts as not on screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetForeground {
    /// Whether the app is visible.
    pub visible: bool,
}
impl Body for SetForeground {}

/// Device → machine: send the bytes of an approval's whole input from `offset` on (the
/// approval's event carries it cut when it is longer than an event field). The machine answers
/// with an [`InputChunk`] of at most [`INPUT_CHUNK_LEN`] bytes, or an [`AppError`] when the
/// approval is not open or its input is not kept whole (longer than [`APPROVAL_INPUT_MAX_LEN`]).
/// A device asks for one page at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchInput {
    /// Request number.
    pub request: u32,
    /// The session.
    pub session: SessionId,
    /// The approval.
    pub approval: ApprovalId,
    /// Where in the input's bytes to start.
    pub offset: u64,
}
impl Body for FetchInput {
    fn validate(&self) -> Result<(), &'static str> {
        if self.offset > APPROVAL_INPUT_MAX_LEN as u64 {
            return Err("an input offset beyond the longest input a device fetches");
        }
        Ok(())
    }
}

/// Device → machine: forget this device (it was revoked or unpaired on the device's side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetDevice {
    /// Request number.
    pub request: u32,
}

request_body!(
    ListRuntimes,
    ListSessions,
    SendPrompt,
    Interrupt,
    Stop,
    Decide,
    SetMode,
    Replay,
    ForgetDevice,
    TestPush
);

/// Machine → device: the sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The request this answers; none when sent after [`Hello`].
    pub request: Option<u32>,
    /// The machine's hostname.
    pub hostname: Hostname,
    /// The sessions, newest first.
    pub sessions: Vec<SessionInfo>,
}

/// Machine → device: the runtimes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtimes {
    /// The request this answers.
    pub request: u32,
    /// The runtimes.
    pub runtimes: Vec<RuntimeInfo>,
}

/// Machine → device: a replay is done; the device now holds everything up to these cursors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayComplete {
    /// The [`Replay`] request this ends; none after [`Hello`].
    pub request: Option<u32>,
    /// The machine's newest seq for every replayed session.
    pub cursors: Vec<Cursor>,
}

/// Machine → device: a replay page ended and more history is waiting. The device asks for the
/// next page with a [`Hello`] carrying its cursors, so at most one page is in flight and a slow
/// device (or the relay's bounded queue) sets the pace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayMore {
    /// Where the page ended, per session.
    pub cursors: Vec<Cursor>,
}

impl Body for ReplayMore {}

/// Machine → device: a page of an approval's whole input, answering a [`FetchInput`]. The
/// bytes are the input's UTF-8 cut anywhere (a page may end inside a character): the device
/// joins the pages and reads the whole as UTF-8, then checks it against the request's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputChunk {
    /// The request this answers.
    pub request: u32,
    /// The session.
    pub session: SessionId,
    /// The approval.
    pub approval: ApprovalId,
    /// Where in the input these bytes start.
    pub offset: u64,
    /// The whole input's length in bytes.
    pub total: u64,
    /// The bytes (empty only at the end of the input).
    #[serde(with = "crate::byte_vec")]
    pub bytes: Vec<u8>,
}
impl Body for InputChunk {
    fn validate(&self) -> Result<(), &'static str> {
        if self.total > APPROVAL_INPUT_MAX_LEN as u64 {
            return Err("an input longer than a device fetches");
        }
        if self.bytes.len() > INPUT_CHUNK_LEN {
            return Err("an input page longer than a page");
        }
        match self.offset.checked_add(self.bytes.len() as u64) {
            Some(end) if end <= self.total => {}
            _ => return Err("an input page beyond the input's end"),
        }
        if self.bytes.is_empty() && self.offset != self.total {
            return Err("an empty input page before the input's end");
        }
        Ok(())
    }
}

/// Machine → device: a request was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The request.
    pub request: u32,
    /// The session it concerns (the new one for [`StartSession`]).
    pub session: Option<SessionId>,
}

/// Why a machine refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppErrorCode {
    /// No such session.
    UnknownSession,
    /// No such runtime, or its program is missing.
    UnknownRuntime,
    /// No such approval, or it is no longer pending.
    UnknownApproval,
    /// The decision's hash is not the request's.
    HashMismatch,
    /// The decision's signature does not verify, or the device is not paired.
    BadSignature,
    /// The session is not in a state that allows this.
    InvalidState,
    /// A field is invalid (a missing cwd …).
    BadRequest,
    /// The machine failed (its disk, a spawn error …).
    Internal,
}

/// Machine → device: a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    /// The request, when the error answers one.
    pub request: Option<u32>,
    /// For programs.
    pub code: AppErrorCode,
    /// For people.
    pub message: String,
}

request_body!(
    SessionList,
    Runtimes,
    ReplayComplete,
    Ack,
    AppError,
    PairingComplete,
    PairingConsent
);

wire_enum! {
    /// Every message a device sends to a machine.
    pub enum DeviceMessage (max_len = MAX_APP_MESSAGE_LEN) {
        /// See [`Hello`].
        1 => Hello(Hello),
        /// See [`ListRuntimes`].
        2 => ListRuntimes(ListRuntimes),
        /// See [`ListSessions`].
        3 => ListSessions(ListSessions),
        /// See [`StartSession`].
        4 => StartSession(StartSession),
        /// See [`SendPrompt`].
        5 => SendPrompt(SendPrompt),
        /// See [`Interrupt`].
        6 => Interrupt(Interrupt),
        /// See [`Stop`].
        7 => Stop(Stop),
        /// See [`Decide`].
        8 => Decide(Decide),
        /// See [`SetMode`].
        9 => SetMode(SetMode),
        /// See [`Replay`].
        10 => Replay(Replay),
        /// See [`ForgetDevice`].
        11 => ForgetDevice(ForgetDevice),
        /// See [`PairingComplete`].
        12 => PairingComplete(PairingComplete),
        /// See [`SetPush`].
        13 => SetPush(SetPush),
        /// See [`TestPush`].
        14 => TestPush(TestPush),
        /// See [`SetForeground`].
        15 => SetForeground(SetForeground),
        /// See [`FetchInput`].
        16 => FetchInput(FetchInput),
    }
}

wire_enum! {
    /// Every message a machine sends to a device.
    pub enum MachineMessage (max_len = MAX_APP_MESSAGE_LEN) {
        /// See [`SessionList`].
        1 => SessionList(SessionList),
        /// See [`Runtimes`].
        2 => Runtimes(Runtimes),
        /// See [`Event`].
        3 => Event(Event),
        /// See [`ReplayComplete`].
        4 => ReplayComplete(ReplayComplete),
        /// See [`Ack`].
        5 => Ack(Ack),
        /// See [`AppError`].
        6 => Error(AppError),
        /// See [`PairingConsent`].
        7 => PairingConsent(PairingConsent),
        /// See [`ReplayMore`].
        8 => ReplayMore(ReplayMore),
        /// See [`InputChunk`].
        9 => InputChunk(InputChunk),
    }
}
