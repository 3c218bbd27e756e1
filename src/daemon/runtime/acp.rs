//! The `acp` and `gemini` runtimes (being written).

use smol::channel::{Receiver, Sender};

use super::{AgentIo, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};

/// Any ACP agent.
pub enum AcpRuntime {
    /// `--runtime acp -- CMD ARGS`.
    Custom,
    /// `gemini --acp`.
    Gemini,
}

impl Runtime for AcpRuntime {
    fn name(&self) -> &'static str {
        "acp"
    }
    fn command_line(&self, _spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        Err("the acp runtime is not written yet".into())
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
