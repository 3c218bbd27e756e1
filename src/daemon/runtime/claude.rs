//! The `claude` runtime (being written).

use smol::channel::{Receiver, Sender};

use super::{AgentIo, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};

/// Claude Code.
pub struct ClaudeRuntime;

impl Runtime for ClaudeRuntime {
    fn name(&self) -> &'static str {
        "claude"
    }
    fn command_line(&self, _spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        Err("the claude runtime is not written yet".into())
    }
    fn modes(&self) -> &'static [&'static str] {
        &[]
    }
    fn run(
        self: Box<Self>,
        _spec: Spec,
        _io: AgentIo,
        _commands: Receiver<Command>,
        _reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
}
