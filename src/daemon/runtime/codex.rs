//! The `codex` runtime (being written).

use smol::channel::{Receiver, Sender};

use super::{AgentIo, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};

/// Codex.
pub struct CodexRuntime;

impl Runtime for CodexRuntime {
    fn name(&self) -> &'static str {
        "codex"
    }
    fn command_line(&self, _spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        Err("the codex runtime is not written yet".into())
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
