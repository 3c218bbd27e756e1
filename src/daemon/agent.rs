//! Running sessions: start an agent under its runtime, hand it what devices ask (prompts,
//! interrupts, modes, stops), and log what it reports. The session's status is derived here
//! from what happens (a prompt → running, an ask → waiting, a finished turn → idle), so every
//! runtime reports the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use muxagent_proto::app::{
    AppErrorCode, ApprovalId, EventKind, SessionId, SessionStatus, StartSession, Usage,
};
use muxagent_proto::identity::Fingerprint;
use rand_core::Rng;
use rustix::process::{Pid, Signal};
use smol::channel::Sender;
use smol::{LocalExecutor, Timer};

use super::process::{self, signal_group};
use super::runtime::{self, Command, Report, Runtime, Spec};
use super::{Shared, approvals};
use crate::limits::{AGENT_COMMAND_QUEUE, AGENT_REPORT_QUEUE, EVENT_FIELD_MAX_LEN, STOP_GRACE_MS};
use crate::os;

/// A device request that was refused: the code and a message for the person.
pub type Refusal = (AppErrorCode, String);

/// A session whose agent process runs.
pub struct Running {
    /// The agent's process group.
    pub group: Pid,
    /// Commands for its runtime.
    pub commands: Sender<Command>,
    /// The modes its runtime accepts.
    pub modes: &'static [&'static str],
    /// A prompt was sent and its turn has not finished: where a session goes when its last
    /// approval closes (running, or idle when the turn ended while the approval waited).
    pub turn_open: bool,
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
    let runtime = runtime::by_name(start.runtime.as_str()).ok_or_else(|| {
        (
            AppErrorCode::UnknownRuntime,
            format!(
                "there is no runtime `{}` (there are: {})",
                start.runtime,
                runtime::NAMES.join(", ")
            ),
        )
    })?;
    let cwd = PathBuf::from(&start.cwd);
    if !cwd.is_dir() {
        return Err((
            AppErrorCode::BadRequest,
            format!("{} is not a directory on this machine", start.cwd),
        ));
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
        .map_err(|message| (AppErrorCode::BadRequest, message))?;
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
        .map_err(|error| (AppErrorCode::Internal, error.to_string()))?;
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
    let known = if runtime.modes().is_empty() {
        format!("{} sessions have no permission modes", runtime.name())
    } else {
        format!("{} knows: {}", runtime.name(), runtime.modes().join(", "))
    };
    Err((
        AppErrorCode::BadRequest,
        format!("unknown permission mode `{mode}`; {known}"),
    ))
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
    let now = os::unix_now();
    let (io, child) = match process::spawn(argv, &spec.cwd) {
        Ok(started) => started,
        Err(error) => {
            let program = argv.first().map(String::as_str).unwrap_or("");
            let mut c = core.borrow_mut();
            let message = if error.kind() == std::io::ErrorKind::NotFound {
                format!("cannot start {program}: it is not installed on this machine (not on PATH)")
            } else {
                format!("cannot start {program}: {error}")
            };
            let _ = c.record(id, EventKind::Error { message }, now);
            let _ = c.record(id, EventKind::Status(SessionStatus::Error), now);
            return;
        }
    };
    let (commands, command_queue) = smol::channel::bounded(AGENT_COMMAND_QUEUE);
    let (report_sender, report_queue) = smol::channel::bounded(AGENT_REPORT_QUEUE);
    {
        let mut c = core.borrow_mut();
        c.agents.insert(
            id,
            Running {
                group: io.group,
                commands: commands.clone(),
                modes: runtime.modes(),
                turn_open: prompt.is_some() || runtime.name() == "command",
                whole_inputs: BTreeMap::new(),
            },
        );
        set_status(&mut c, id, SessionStatus::Running, now);
    }
    if let Some(prompt) = prompt {
        // The queue is empty: this cannot fail.
        let _ = commands.try_send(Command::Prompt(prompt.clone()));
        record(core, id, EventKind::Prompt { text: prompt });
    }
    let conversation = runtime.run(spec, io, command_queue, report_sender);
    let consume = {
        let core = core.clone();
        let executor = executor.clone();
        async move {
            while let Ok(report) = report_queue.recv().await {
                on_report(&core, &executor, id, report);
            }
        }
    };
    let core = core.clone();
    executor
        .spawn(async move {
            let (result, ()) = smol::future::zip(conversation, consume).await;
            if let Err(error) = result {
                record(
                    &core,
                    id,
                    EventKind::Error {
                        message: error.to_string(),
                    },
                );
            }
            // The runtime is done with the agent; make sure nothing of it lingers.
            let group = core.borrow().agents.get(&id).map(|running| running.group);
            let mut child = child;
            let status = child.status().await;
            if let Some(group) = group {
                let _ = signal_group(group, Signal::KILL);
            }
            finish(&core, id, status);
        })
        .detach();
}

/// The agent's process ended: close its approvals and log how it ended.
fn finish(core: &Shared, id: SessionId, status: std::io::Result<std::process::ExitStatus>) {
    let mut c = core.borrow_mut();
    c.agents.remove(&id);
    let stopped = c.stopping.remove(&id);
    let now = os::unix_now();
    approvals::withdraw_all(&mut c, id, now);
    let (code, signal) = match status {
        Ok(status) => process::exit_parts(status),
        Err(_) => (None, None),
    };
    let final_status = if stopped {
        SessionStatus::Stopped
    } else if code == Some(0) {
        SessionStatus::Done
    } else {
        SessionStatus::Error
    };
    for kind in [
        EventKind::Exited { code, signal },
        EventKind::Status(final_status),
    ] {
        if let Err(error) = c.record(id, kind, now) {
            super::report(id, &error);
        }
    }
}

/// Log one report of session `id`'s runtime.
fn on_report(core: &Shared, executor: &Rc<LocalExecutor<'static>>, id: SessionId, report: Report) {
    let now = os::unix_now();
    match report {
        Report::Event(kind) => {
            let turn_over = matches!(kind, EventKind::TurnFinished { .. });
            record(core, id, fit(kind));
            if turn_over {
                let mut c = core.borrow_mut();
                if let Some(running) = c.agents.get_mut(&id) {
                    running.turn_open = false;
                }
                let waiting = c
                    .sessions
                    .info(&id)
                    .is_some_and(|info| info.pending_approvals > 0);
                if !waiting {
                    set_status(&mut c, id, SessionStatus::Idle, now);
                }
            }
        }
        Report::Ask(ask) => approvals::ask(core, executor, id, ask),
        Report::Withdrawn { agent_request } => approvals::close(
            &mut core.borrow_mut(),
            id,
            &agent_request,
            approvals::Close::Withdrawn,
        ),
        Report::Applied { agent_request } => approvals::close(
            &mut core.borrow_mut(),
            id,
            &agent_request,
            approvals::Close::Applied,
        ),
        Report::TurnUsage(delta) => {
            let mut c = core.borrow_mut();
            let Some(total) = c
                .sessions
                .info(&id)
                .map(|info| add_usage(info.usage, delta))
            else {
                return;
            };
            if let Err(error) = c.record(id, EventKind::Usage(total), now) {
                super::report(id, &error);
            }
        }
        Report::AgentSession(agent_session) => {
            let known = core
                .borrow()
                .sessions
                .state(&id)
                .and_then(|state| state.agent_session.clone());
            if known.as_deref() != Some(agent_session.as_str()) {
                record(core, id, EventKind::AgentSession { id: agent_session });
            }
        }
    }
}

fn add_usage(total: Usage, delta: Usage) -> Usage {
    Usage {
        input_tokens: total.input_tokens.saturating_add(delta.input_tokens),
        output_tokens: total.output_tokens.saturating_add(delta.output_tokens),
        cached_tokens: total.cached_tokens.saturating_add(delta.cached_tokens),
        cost_usd_micros: match (total.cost_usd_micros, delta.cost_usd_micros) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        },
    }
}

/// Log an event of a session (errors go to the daemon's log: the session goes on).
pub fn record(core: &Shared, id: SessionId, kind: EventKind) {
    if let Err(error) = core.borrow_mut().record(id, kind, os::unix_now()) {
        super::report(id, &error);
    }
}

/// Log a status change, if it is one.
pub fn set_status(core: &mut super::Core, id: SessionId, status: SessionStatus, now: u64) {
    if core
        .sessions
        .info(&id)
        .is_some_and(|info| info.status != status)
        && let Err(error) = core.record(id, EventKind::Status(status), now)
    {
        super::report(id, &error);
    }
}

/// Cut every text field of `kind` to [`EVENT_FIELD_MAX_LEN`], saying how much was left out, so
/// the event fits one channel message.
pub fn fit(kind: EventKind) -> EventKind {
    fn cut(text: &mut String) {
        if text.len() <= EVENT_FIELD_MAX_LEN {
            return;
        }
        let mut end = EVENT_FIELD_MAX_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let left_out = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("\n… ({left_out} more bytes not shown)"));
    }
    let mut kind = kind;
    match &mut kind {
        EventKind::Text { text }
        | EventKind::TextDelta { text }
        | EventKind::Thinking { text }
        | EventKind::Output { text, .. }
        | EventKind::TurnFinished { reason: text }
        | EventKind::Error { message: text }
        | EventKind::Opaque { raw: text, .. }
        | EventKind::Prompt { text }
        | EventKind::AgentSession { id: text } => cut(text),
        EventKind::ToolStarted {
            tool_call,
            name,
            input,
        } => {
            cut(tool_call);
            cut(name);
            cut(input);
        }
        EventKind::ToolUpdated { tool_call, detail } => {
            cut(tool_call);
            cut(detail);
        }
        EventKind::ToolFinished {
            tool_call,
            output,
            diff,
            ..
        } => {
            cut(tool_call);
            cut(output);
            if let Some(diff) = diff {
                cut(diff);
            }
        }
        EventKind::PlanProposed { plan, .. } => cut(plan),
        _ => {}
    }
    kind
}

/// Send a prompt: to the running agent, or to a new process that resumes the agent's
/// conversation when the session's process is gone.
pub fn prompt(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    session: SessionId,
    text: String,
) -> Result<(), Refusal> {
    let now = os::unix_now();
    let running = core
        .borrow()
        .agents
        .get(&session)
        .map(|r| r.commands.clone());
    if let Some(commands) = running {
        commands
            .try_send(Command::Prompt(text.clone()))
            .map_err(|_| busy())?;
        let mut c = core.borrow_mut();
        if let Some(running) = c.agents.get_mut(&session) {
            running.turn_open = true;
        }
        c.record(session, EventKind::Prompt { text }, now)
            .map_err(|error| (AppErrorCode::Internal, error.to_string()))?;
        set_status(&mut c, session, SessionStatus::Running, now);
        return Ok(());
    }
    let (info, state) = {
        let c = core.borrow();
        let Some(info) = c.sessions.info(&session).cloned() else {
            return Err(unknown(session));
        };
        (
            info,
            c.sessions.state(&session).cloned().unwrap_or_default(),
        )
    };
    let runtime =
        runtime::by_name(info.runtime.as_str()).filter(|runtime| runtime.name() != "command");
    let (Some(runtime), Some(agent_session)) = (runtime, state.agent_session) else {
        return Err((
            AppErrorCode::InvalidState,
            format!("session {session} is not running and cannot be resumed"),
        ));
    };
    let spec = Spec {
        cwd: PathBuf::from(&info.cwd),
        args: state.args,
        mode: None,
        resume: Some(agent_session),
    };
    let argv = runtime
        .command_line(&spec, &text)
        .map_err(|message| (AppErrorCode::BadRequest, message))?;
    launch(core, executor, session, runtime, spec, &argv, Some(text));
    Ok(())
}

/// Interrupt the agent's current turn.
pub fn interrupt(core: &Shared, session: SessionId) -> Result<(), Refusal> {
    let c = core.borrow();
    let running = c
        .agents
        .get(&session)
        .ok_or_else(|| not_running(&c, session))?;
    running
        .commands
        .try_send(Command::Interrupt)
        .map_err(|_| busy())
}

/// Change the agent's permission mode.
pub fn set_mode(core: &Shared, session: SessionId, mode: &str) -> Result<(), Refusal> {
    let c = core.borrow();
    let running = c
        .agents
        .get(&session)
        .ok_or_else(|| not_running(&c, session))?;
    if !running.modes.contains(&mode) {
        let known = if running.modes.is_empty() {
            "this session's runtime has no permission modes".to_string()
        } else {
            format!("it knows: {}", running.modes.join(", "))
        };
        return Err((
            AppErrorCode::BadRequest,
            format!("unknown permission mode `{mode}`; {known}"),
        ));
    }
    running
        .commands
        .try_send(Command::SetMode(mode.to_string()))
        .map_err(|_| busy())
}

/// Stop a session: SIGTERM to its process group, SIGKILL after [`STOP_GRACE_MS`].
pub fn stop(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    session: SessionId,
) -> Result<(), Refusal> {
    let mut c = core.borrow_mut();
    let group = c
        .agents
        .get(&session)
        .map(|running| running.group)
        .ok_or_else(|| not_running(&c, session))?;
    signal_group(group, Signal::TERM)
        .map_err(|error| (AppErrorCode::Internal, error.to_string()))?;
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

fn busy() -> Refusal {
    (
        AppErrorCode::InvalidState,
        "the agent has too many commands waiting; try again in a moment".into(),
    )
}

fn unknown(session: SessionId) -> Refusal {
    (
        AppErrorCode::UnknownSession,
        format!("no session {session}"),
    )
}

/// Why a session cannot take a command: it does not exist, or it is not running.
pub fn not_running(core: &super::Core, session: SessionId) -> Refusal {
    match core.sessions.info(&session) {
        None => unknown(session),
        Some(_) => (
            AppErrorCode::InvalidState,
            format!("session {session} is not running"),
        ),
    }
}
