//! Agent runtimes: one interface over every kind of agent a session can run (DESIGN §6).
//!
//! The daemon starts the agent's process (in its own process group, see [`super::command`]),
//! hands its standard streams to a [`Runtime`], sends it [`Command`]s and receives [`Report`]s.
//! A runtime translates between the daemon's normalized vocabulary and one agent's protocol; it
//! never touches the session log, the relay or approvals' bookkeeping — the daemon owns those.
//!
//! - [`command`]: any shell command; output streamed, no approvals.
//! - [`claude`]: Claude Code's stream-json control protocol.
//! - [`codex`]: Codex's `app-server` JSON-RPC.
//! - [`acp`]: any Agent Client Protocol agent (`gemini --acp` and others).
//! - [`asks`]: the table of open asks every runtime keeps, capped.
//! - [`installed`]: which runtimes' programs are on `PATH` (a device's `ListRuntimes`).
//! - [`lines`]: the driver shared by the JSON-lines protocols (Claude, Codex), which are
//!   written sans-IO against [`LineProtocol`] and tested by feeding them recorded lines.
//! - [`preview`]: file changes as unified diffs (one format for every agent), text read out
//!   of an agent's JSON.
//! - [`stderr`]: the agent's standard error as output events, beside any runtime's
//!   conversation.
//!
//! Rules every runtime follows, because these CLIs change every week: an unknown message type,
//! an unknown field or an unparsable line becomes an [`EventKind::Opaque`] event (never an
//! error, never dropped); a missing field the runtime needs becomes an [`EventKind::Error`]
//! event and the session goes on.

pub mod acp;
pub mod asks;
pub mod claude;
pub mod codex;
pub mod command;
#[cfg(test)]
mod contract;
pub mod installed;
pub mod lines;
pub mod preview;
pub mod stderr;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use muxagent_proto::app::{ApprovalKind, Decision, EventKind, RuntimeName, Usage};
use smol::channel::{Receiver, Sender};

/// The agent process as a runtime sees it (made by [`super::process::spawn`]).
pub use super::process::AgentIo;

/// How a session is to be started.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The working directory.
    pub cwd: PathBuf,
    /// The runtime's arguments: the command line of `command` and `acp`, extra CLI arguments
    /// for the others.
    pub args: Vec<String>,
    /// The permission mode to start in, in the agent's own words.
    pub mode: Option<String>,
    /// The agent's own session id to resume (from an earlier [`Report::AgentSession`]).
    pub resume: Option<String>,
}

/// What the daemon asks of a running agent. Commands are not answered: what they cause
/// arrives as [`Report`]s, and a command the agent cannot take becomes an error event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A prompt from a device. An agent that is busy queues it or takes it as it can.
    Prompt(String),
    /// The answer to an [`Ask`], already verified by the daemon.
    Answer {
        /// [`Ask::agent_request`] of the ask.
        agent_request: String,
        /// What the person decided.
        decision: Decision,
    },
    /// Stop the current turn. Pending asks are withdrawn ([`Report::Withdrawn`]), by the agent
    /// or by the runtime itself when the agent's protocol leaves that to the client.
    Interrupt,
    /// Switch the permission mode (a name from [`Runtime::modes`]).
    SetMode(String),
}

/// An agent's request for permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The agent's own id for the request; [`Command::Answer`] names it.
    pub agent_request: String,
    /// A tool call, or a plan to accept.
    pub kind: ApprovalKind,
    /// The tool's name (`ExitPlanMode` for Claude's plans).
    pub tool: String,
    /// The exact input, as JSON text: what the approval hash binds ([`request_hash`] over
    /// the agent's request id, [`Ask::tool`] and this), what the person is shown in full, and
    /// what the device recomputes the hash from before it signs. One definition for every
    /// runtime: the JSON of everything the agent said it will run, in the agent's own key
    /// order, so that the same request always gives the same text and any change to what
    /// would run gives another (the contract test each runtime passes, `contract`). Claude:
    /// the input exactly as the CLI printed it (sent back as `updatedInput`); Codex: the
    /// request's command, cwd and reason, or its file changes; ACP: the whole tool call.
    ///
    /// [`request_hash`]: muxagent_proto::app::request_hash
    pub input: String,
    /// The plan's text, for [`ApprovalKind::Plan`].
    pub plan: Option<String>,
}

/// What a runtime tells the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// A normalized event to log as it is. Runtimes send text, deltas, thinking, tool
    /// started/updated/finished, turn finished, error and opaque events; the daemon owns
    /// `Started`, `Prompt`, `Status`, approvals, `Usage` and `Exited`.
    Event(EventKind),
    /// The agent asks for permission.
    Ask(Ask),
    /// The agent took an ask back (an interrupt, a cancelled turn).
    Withdrawn {
        /// [`Ask::agent_request`].
        agent_request: String,
    },
    /// The agent was given the answer to an ask.
    Applied {
        /// [`Ask::agent_request`].
        agent_request: String,
    },
    /// Tokens (and cost, when the agent reports one) of the work since the previous
    /// `TurnUsage`: a delta, so totals survive resumed processes. The daemon adds them up.
    TurnUsage(Usage),
    /// The agent's own session id: with [`Spec::resume`], a later process continues it.
    AgentSession(String),
}

/// A runtime failed in a way that ends the session's conversation with the agent.
#[derive(Debug)]
pub enum RuntimeError {
    /// Writing to or reading from the agent failed.
    Io(std::io::Error),
    /// The agent broke its protocol beyond what can be skipped (its handshake failed …).
    Protocol(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Io(error) => write!(f, "talking to the agent failed: {error}"),
            RuntimeError::Protocol(what) => write!(f, "the agent broke its protocol: {what}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<std::io::Error> for RuntimeError {
    fn from(error: std::io::Error) -> Self {
        RuntimeError::Io(error)
    }
}

/// A future on the daemon's single thread.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// One kind of agent.
pub trait Runtime {
    /// The name devices use (`claude`, `codex`, `acp`, `gemini`, `command`).
    fn name(&self) -> &'static str;

    /// The program and arguments to start for `spec`, after `prompt` (the first prompt; only
    /// `command` puts it on the command line, the others receive it as a [`Command::Prompt`]).
    fn command_line(&self, spec: &Spec, prompt: &str) -> Result<Vec<String>, String>;

    /// Permission modes `SetMode` accepts (empty: none).
    fn modes(&self) -> &'static [&'static str];

    /// The program the runtime starts, when it is a fixed one (`claude`, `codex`, `gemini`);
    /// the daemon reports whether it is installed.
    fn program(&self) -> Option<String> {
        None
    }

    /// Talk to the started agent until its output ends: take `commands`, send `reports`. Returns
    /// when the agent closed its standard output (it exited) or the protocol broke.
    fn run(
        self: Box<Self>,
        spec: Spec,
        io: AgentIo,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>>;
}

/// A message of `source`'s (a runtime name) the runtime does not map, kept whole (the module
/// rules above).
pub fn opaque(source: &str, raw: &str) -> EventKind {
    EventKind::Opaque {
        source: RuntimeName::try_from(source).unwrap_or_default(),
        raw: raw.into(),
    }
}

/// Every runtime name, in the order devices are shown them.
pub const NAMES: [&str; 5] = ["claude", "codex", "gemini", "acp", "command"];

/// The runtime called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Runtime>> {
    Some(match name {
        "command" => Box::new(command::CommandRuntime),
        "claude" => Box::new(claude::ClaudeRuntime),
        "codex" => Box::new(codex::CodexRuntime),
        "acp" => Box::new(acp::AcpRuntime::Custom),
        "gemini" => Box::new(acp::AcpRuntime::Gemini),
        _ => return None,
    })
}

/// The program to run for an agent CLI: `$MUXAGENT_<NAME>` when set (a path or a name on
/// `PATH`), else `default`. Lets a machine use a CLI outside `PATH`, and tests use fake agents.
pub fn program(name: &str, default: &str) -> String {
    let variable = format!("MUXAGENT_{}", name.to_ascii_uppercase());
    std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.into())
}
