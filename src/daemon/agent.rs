//! Agent processes: start an agent under its runtime, feed its reports and what devices ask
//! (prompts, interrupts, modes) to the session's machine ([`super::session_machine`], which
//! decides what the session's status and approvals become), stop it, and tell the machine when
//! it ended. [`step`] is the asynchronous half of the machine's shell: it arms the timers the
//! machine asks for (`Core::step` runs the rest).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use muxagent_proto::app::{ApprovalId, EventKind, SessionId, StartSession};
use muxagent_proto::identity::Fingerprint;
use rand_core::Rng;
use rustix::process::{Pid, Signal};
use smol::channel::Sender;
use smol::{LocalExecutor, Timer};

use super::Shared;
use super::process::{self, signal_group};
use super::runtime::{self, Command, Report, Runtime, Spec};
use super::session_machine::{self, Input};
use super::sessions::SessionError;
use crate::limits::{AGENT_COMMAND_QUEUE, AGENT_REPORT_QUEUE, STOP_GRACE_MS};
use crate::os;

pub use super::refusal::Refusal;

/// A session whose agent process runs.
pub struct Running {
    /// The agent's process group.
    pub group: Pid,
    /// Commands for its runtime.
    pub commands: Sender<Command>,
    /// What the session's machine knows of it beyond the log (its modes, whether its turn is
    /// open, when its approvals expire), kept here between steps.
    pub machine: session_machine::Agent,
    /// The whole inputs of its open approvals whose events carry them cut, kept so a device
    /// can fetch them ([`approvals::input_page`]): at most [`DAEMON_WHOLE_INPUTS_MAX_LEN`]
    /// bytes, gone with the process (its approvals are void then).
    ///
    /// [`DAEMON_WHOLE_INPUTS_MAX_LEN`]: crate::limits::DAEMON_WHOLE_INPUTS_MAX_LEN
    pub whole_inputs: BTreeMap<ApprovalId, String>,
}

/// Start a session for `device`. Returns its id once the first event is logged; a program that
/// cannot be started still makes a session, which records why it failed.
pub fn start(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    device: Fingerprint,
    start: StartSession,
) -> Result<SessionId, Refusal> {
    let runtime = runtime::by_name(start.runtime.as_str())
        .ok_or_else(|| Refusal::UnknownRuntime(start.runtime.to_string()))?;
    let cwd = PathBuf::from(&start.cwd);
    if !cwd.is_dir() {
        return Err(Refusal::NotADirectory(start.cwd.clone()));
    }
    let mode = start.mode.as_ref().map(|mode| mode.to_string());
    if let Some(mode) = &mode {
        check_mode(runtime.as_ref(), mode)?;
    }
    let spec = Spec {
        cwd,
        args: start.args.clone(),
        mode,
        resume: None,
    };
    let argv = runtime
        .command_line(&spec, &start.prompt)
        .map_err(Refusal::BadCommandLine)?;
    let mut id = [0u8; 16];
    os::rng().fill_bytes(&mut id);
    let id = SessionId(id);
    let title = start
        .title
        .clone()
        .filter(|title| !title.trim().is_empty())
        .unwrap_or_else(|| default_title(runtime.name(), &argv, &start.prompt));
    let started = EventKind::Started {
        runtime: start.runtime.clone(),
        args: start.args.clone(),
        cwd: start.cwd.clone(),
        title,
        device,
    };
    let now = os::unix_now();
    core.borrow_mut()
        .create_session(id, started, now)
        .map_err(|error| Refusal::Internal(error.to_string()))?;
    let prompt = (runtime.name() != "command" && !start.prompt.is_empty()).then_some(start.prompt);
    launch(core, executor, id, runtime, spec, &argv, prompt);
    Ok(id)
}

fn default_title(runtime: &str, argv: &[String], prompt: &str) -> String {
    let source = if runtime == "command" || prompt.trim().is_empty() {
        argv.join(" ")
    } else {
        prompt
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("")
            .to_string()
    };
    source.trim().chars().take(80).collect()
}

fn check_mode(runtime: &dyn Runtime, mode: &str) -> Result<(), Refusal> {
    if runtime.modes().contains(&mode) {
        return Ok(());
    }
    Err(Refusal::UnknownMode {
        mode: mode.to_string(),
        runtime: Some(runtime.name()),
        modes: runtime.modes(),
    })
}

/// Start the agent process of session `id` and the tasks that serve it.
fn launch(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    id: SessionId,
    runtime: Box<dyn Runtime>,
    spec: Spec,
    argv: &[String],
    prompt: Option<String>,
) {
    let (io, child) = match process::spawn(argv, &spec.cwd) {
        Ok(started) => started,
        Err(error) => {
            let program = argv.first().map(String::as_str).unwrap_or("");
            let message = if error.kind() == std::io::ErrorKind::NotFound {
                format!("cannot start {program}: it is not installed on this machine (not on PATH)")
            } else {
                format!("cannot start {program}: {error}")
            };
            let _ = step(core, executor, id, Input::LaunchFailed(message));
            return;
        }
    };
    let (commands, command_queue) = smol::channel::bounded(AGENT_COMMAND_QUEUE);
    let (report_sender, report_queue) = smol::channel::bounded(AGENT_REPORT_QUEUE);
    core.borrow_mut().agents.insert(
        id,
        Running {
            group: io.group,
            commands,
            machine: session_machine::Agent::new(runtime.modes()),
            whole_inputs: BTreeMap::new(),
        },
    );
    let launched = Input::Launched {
        modes: runtime.modes(),
        prompt,
        turn_open: runtime.name() == "command",
    };
    let _ = step(core, executor, id, launched);
    let conversation = runtime.run(spec, io, command_queue, report_sender);
    let consume = {
        let core = core.clone();
        let executor = executor.clone();
        async move {
            while let Ok(report) = report_queue.recv().await {
                let _ = step(&core, &executor, id, Input::Report(report));
            }
        }
    };
    let core = core.clone();
    let tasks = executor.clone();
    executor
        .spawn(async move {
            let (result, ()) = smol::future::zip(conversation, consume).await;
            if let Err(error) = result {
                let message = error.to_string();
                let failed = Report::Event(EventKind::Error { message });
                let _ = step(&core, &tasks, id, Input::Report(failed));
            }
            // The runtime is done with the agent; make sure nothing of it lingers.
            let group = core.borrow().agents.get(&id).map(|running| running.group);
            let mut child = child;
            let status = child.status().await;
            if let Some(group) = group {
                let _ = signal_group(group, Signal::KILL);
            }
            finish(&core, &tasks, id, status);
        })
        .detach();
}

/// The agent's process ended: its machine closes its approvals and logs how it ended.
fn finish(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    id: SessionId,
    status: std::io::Result<std::process::ExitStatus>,
) {
    let stopped = {
        let mut c = core.borrow_mut();
        c.agents.remove(&id);
        c.stopping.remove(&id)
    };
    let (code, signal) = match status {
        Ok(status) => process::exit_parts(status),
        Err(_) => (None, None),
    };
    let exited = Input::Exited {
        code,
        signal,
        stopped,
    };
    let _ = step(core, executor, id, exited);
}

/// Feed `input` to session `id`'s machine and run its effects (`Core::step`), arming the
/// timers it asks for. Returns the first event that could not be logged (already reported).
pub fn step(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    id: SessionId,
    input: Input,
) -> Result<Option<SessionError>, Refusal> {
    let now = os::unix_now();
    let stepped = core.borrow_mut().step(id, input, now)?;
    for at in stepped.timers {
        let core = core.clone();
        let tick = executor.clone();
        executor
            .spawn(async move {
                // The timer never fires early, so the clock reads at least `at` then.
                Timer::after(Duration::from_secs(at.saturating_sub(now))).await;
                let _ = step(&core, &tick, id, Input::Tick);
            })
            .detach();
    }
    Ok(stepped.unrecorded)
}

/// Send a prompt: to the running agent, or to a new process that resumes the agent's
/// conversation when the session's process is gone.
pub fn prompt(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    session: SessionId,
    text: String,
) -> Result<(), Refusal> {
    if core.borrow().agents.contains_key(&session) {
        return match step(core, executor, session, Input::Prompt(text))? {
            Some(error) => Err(Refusal::Internal(error.to_string())),
            None => Ok(()),
        };
    }
    let (info, state) = {
        let c = core.borrow();
        let Some(info) = c.sessions.info(&session).cloned() else {
            return Err(Refusal::UnknownSession(session));
        };
        (
            info,
            c.sessions.state(&session).cloned().unwrap_or_default(),
        )
    };
    let runtime =
        runtime::by_name(info.runtime.as_str()).filter(|runtime| runtime.name() != "command");
    let (Some(runtime), Some(agent_session)) = (runtime, state.agent_session) else {
        return Err(Refusal::NotResumable(session));
    };
    let spec = Spec {
        cwd: PathBuf::from(&info.cwd),
        args: state.args,
        mode: None,
        resume: Some(agent_session),
    };
    let argv = runtime
        .command_line(&spec, &text)
        .map_err(Refusal::BadCommandLine)?;
    launch(core, executor, session, runtime, spec, &argv, Some(text));
    Ok(())
}

/// Interrupt the agent's current turn.
pub fn interrupt(core: &Shared, session: SessionId) -> Result<(), Refusal> {
    core.borrow_mut()
        .step(session, Input::Interrupt, os::unix_now())
        .map(drop)
}

/// Change the agent's permission mode.
pub fn set_mode(core: &Shared, session: SessionId, mode: &str) -> Result<(), Refusal> {
    let input = Input::SetMode(mode.to_string());
    core.borrow_mut()
        .step(session, input, os::unix_now())
        .map(drop)
}

/// Stop a session: SIGTERM to its process group, SIGKILL after [`STOP_GRACE_MS`].
pub fn stop(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    session: SessionId,
) -> Result<(), Refusal> {
    let mut c = core.borrow_mut();
    let group = match c.agents.get(&session) {
        Some(running) => running.group,
        None if c.sessions.info(&session).is_none() => {
            return Err(Refusal::UnknownSession(session));
        }
        None => return Err(Refusal::NotRunning(session)),
    };
    signal_group(group, Signal::TERM).map_err(|error| Refusal::Internal(error.to_string()))?;
    c.stopping.insert(session);
    let core = core.clone();
    executor
        .spawn(async move {
            Timer::after(Duration::from_millis(STOP_GRACE_MS)).await;
            if core.borrow().agents.contains_key(&session) {
                let _ = signal_group(group, Signal::KILL);
            }
        })
        .detach();
    Ok(())
}
