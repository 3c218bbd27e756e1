//! The `acp` and `gemini` runtimes: any Agent Client Protocol (v1) agent, with the daemon as
//! the ACP client. The JSON-RPC conversation (framing, request ids, routing answers, answering
//! requests nobody serves with "method not found") is the `agent-client-protocol` crate's; this
//! module chooses what to send and turns what the agent says into [`Report`]s.
//!
//! How the conversation goes:
//! - `initialize` (protocol 1, no `fs` and no `terminal` capability: the agent reads and writes
//!   files and runs commands itself — Gemini cannot create files through a client's `fs`), then
//!   `session/new`, or `session/load` for [`Spec::resume`] (a new session, with an error event,
//!   when the agent cannot load it); then `session/set_mode` for [`Spec::mode`]. Prompts wait
//!   for all of that, and for one another: `session/prompt` stays open until its turn ends, and
//!   its answer carries the stop reason (and Gemini's token counts for the turn).
//! - `session/request_permission` becomes an [`Ask`] named by the agent's JSON-RPC request id;
//!   the answer picks the agent's option of the matching kind. ACP has no deny message: a
//!   denial is the agent's `reject_once` option and the message stays in the daemon's log.
//! - An interrupt is `session/cancel` plus the `cancelled` outcome for every pending ask (the
//!   spec leaves that to the client, and Gemini waits for ever otherwise); the runtime itself
//!   withdraws those asks.
//! - A resumed session's history replay is not logged again (the log has it). The spec puts
//!   the replay before the `session/load` answer, but Gemini sends most of it after; so after
//!   the load answer the runtime sends one extension request (`_muxagent/barrier`, which an
//!   agent answers with "method not found") and takes everything before that answer as replay.
//!   Gemini CLI 0.61.0 writes its whole replay before it reads another request (checked with
//!   the real CLI and a three-turn history).
//! - Updates become text deltas, thinking, tool started / updated / finished (an edit's old
//!   and new text as a unified diff); the rest (plans, command and mode lists, usage, images …)
//!   is opaque, as `{"method","params"}` JSON. `user_message_chunk` is dropped: the daemon logs
//!   prompts itself. Gemini answers `session/set_mode` with an `agent_message_chunk`
//!   `[MODE_UPDATE] <mode>`, which is opaque too, not answer text.
//!
//! Everything the agent sends reaches one loop that owns the state, in the agent's order,
//! through one bounded queue ([`Inbound`]): the crate's handlers and answer callbacks only
//! forward. Lines that are not JSON objects never reach the crate (it would answer them with
//! parse errors): they become opaque events; lines over [`AGENT_LINE_MAX_LEN`] are skipped with
//! an error event. Known limit: between reading a line and dispatching it the crate queues
//! without a bound, so when the daemon falls behind (its report queue full), what the agent
//! writes meanwhile waits in memory rather than in the pipe.

use std::collections::VecDeque;
use std::path::PathBuf;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::{self, schema};
use agent_client_protocol::{
    Agent, Client, Handled, JsonRpcMessage, Lines, RequestCancellation, UntypedMessage,
};
use muxagent_proto::app::{ApprovalKind, Decision, EventKind, RuntimeName, Usage};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::asks::OpenAsks;
use super::lines::{Line, LineReader};
use super::preview::{self, NO_FILE, text_at};
use super::stderr::beside_stderr;
use super::{AgentIo, Ask, Command, LocalFuture, Report, Runtime, RuntimeError, Spec, program};
use crate::limits::{AGENT_COMMAND_QUEUE, AGENT_LINE_MAX_LEN, AGENT_REPORT_QUEUE};

/// Gemini CLI's approval modes (`session/new` lists them as `modes.availableModes`).
const GEMINI_MODES: [&str; 4] = ["default", "autoEdit", "yolo", "plan"];

/// The extension request whose answer marks the end of a `session/load` replay.
const BARRIER_METHOD: &str = "_muxagent/barrier";

/// Any ACP agent.
pub enum AcpRuntime {
    /// `--runtime acp -- CMD ARGS`.
    Custom,
    /// `gemini --acp`.
    Gemini,
}

impl Runtime for AcpRuntime {
    fn name(&self) -> &'static str {
        match self {
            AcpRuntime::Custom => "acp",
            AcpRuntime::Gemini => "gemini",
        }
    }

    /// `acp`: `args` is the agent's whole command line. `gemini`: `gemini --acp ARGS`.
    fn command_line(&self, spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        match self {
            AcpRuntime::Custom if spec.args.is_empty() => Err(
                "the acp runtime needs the agent's command line, e.g. `--runtime acp -- goose acp`"
                    .into(),
            ),
            AcpRuntime::Custom => Ok(spec.args.clone()),
            AcpRuntime::Gemini => {
                let mut line = vec![program("gemini", "gemini"), "--acp".into()];
                line.extend(spec.args.iter().cloned());
                Ok(line)
            }
        }
    }

    /// Gemini's modes. Other agents name their modes as they like and only say which in their
    /// `session/new` answer, after the daemon needs the list: none are offered for them.
    fn modes(&self) -> &'static [&'static str] {
        match self {
            AcpRuntime::Custom => &[],
            AcpRuntime::Gemini => &GEMINI_MODES,
        }
    }

    fn program(&self) -> Option<String> {
        match self {
            AcpRuntime::Custom => None,
            AcpRuntime::Gemini => Some(program("gemini", "gemini")),
        }
    }

    fn run(
        self: Box<Self>,
        spec: Spec,
        io: AgentIo,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>> {
        let source = self.name();
        Box::pin(async move {
            let AgentIo {
                stdin,
                stdout,
                stderr,
                ..
            } = io;
            let conversation = converse(source, spec, stdout, stdin, commands, reports.clone());
            beside_stderr(conversation, stderr, reports).await
        })
    }
}

/// What the agent sent, in the order it sent it: the crate's handlers and response callbacks
/// (which run in its dispatch order) and the line reader put these in one queue.
enum Inbound {
    /// `session/update`'s params.
    Update(Value),
    /// `session/request_permission`.
    Permission {
        id: String,
        params: Value,
        responder: Box<v1::Responder<Value>>,
    },
    /// Any other notification.
    Notification { method: String, params: Value },
    /// A request the client does not serve (`fs/*`, `terminal/*` …): the crate answers it with
    /// "method not found"; it is logged.
    Unsupported {
        id: String,
        method: String,
        params: Value,
    },
    /// The answer to one of our requests.
    Response(Sent, Result<Value, agent_client_protocol::Error>),
    /// A line that is not a JSON object.
    NotJson(String),
    /// A line over the length limit, skipped; its length.
    TooLong(usize),
}

/// Which of our requests an answer is for.
enum Sent {
    Initialize,
    NewSession,
    LoadSession(String),
    Barrier,
    SetMode(String),
    Prompt,
}

/// Where the conversation is; prompts are sent only when it is `Ready`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Initializing,
    Opening,
    Settling,
    SettingMode,
    Ready,
}

/// A permission request waiting for its answer.
struct PendingAsk {
    /// `(optionId, kind)` of each option the agent offered.
    options: Vec<(String, String)>,
    responder: v1::Responder<Value>,
    cancellation: RequestCancellation,
}

/// Talk ACP over `reader`/`writer` (the agent's stdout and stdin) until the agent's output ends.
async fn converse<R, W>(
    source: &'static str,
    spec: Spec,
    reader: R,
    writer: W,
    commands: Receiver<Command>,
    reports: Sender<Report>,
) -> Result<(), RuntimeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (inbound, queue) = smol::channel::bounded(AGENT_REPORT_QUEUE);
    let transport = transport(reader, writer, inbound.clone());
    let for_requests = inbound.clone();
    let for_notifications = inbound.clone();
    let result = Client
        .v1()
        .name("muxagent")
        .on_receive_request(
            async move |request: UntypedMessage, responder: v1::Responder<Value>, _cx| {
                let id = responder.id().to_string();
                if request.method() == schema::CLIENT_METHOD_NAMES.session_request_permission {
                    let params = request.params().clone();
                    let item = Inbound::Permission {
                        id,
                        params,
                        responder: Box::new(responder),
                    };
                    let _ = for_requests.send(item).await;
                    return Ok(Handled::Yes);
                }
                let item = Inbound::Unsupported {
                    id,
                    method: request.method().to_owned(),
                    params: request.params().clone(),
                };
                let _ = for_requests.send(item).await;
                Ok(Handled::No {
                    message: (request, responder),
                    retry: false,
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: UntypedMessage, _cx| {
                let (method, params) = notification.into_parts();
                let item = if method == schema::CLIENT_METHOD_NAMES.session_update {
                    Inbound::Update(params)
                } else {
                    Inbound::Notification { method, params }
                };
                let _ = for_notifications.send(item).await;
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_with(transport, async |cx: v1::ConnectionTo<Agent>| {
            let conversation = Conversation::new(source, spec, cx, inbound, reports);
            Ok(conversation.run(queue, commands).await)
        })
        .await;
    match result {
        Ok(result) => result,
        Err(error) => Err(RuntimeError::Protocol(error.to_string())),
    }
}

/// The crate's line transport over the agent's pipes. Incoming lines are cut at
/// [`AGENT_LINE_MAX_LEN`]; those that are not JSON objects go to `inbound` instead of the crate.
fn transport<R, W>(
    reader: R,
    writer: W,
    inbound: Sender<Inbound>,
) -> Lines<
    impl futures::Sink<String, Error = std::io::Error> + Send + 'static,
    impl futures::Stream<Item = std::io::Result<String>> + Send + 'static,
>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let lines = LineReader::new(reader, AGENT_LINE_MAX_LEN);
    let incoming = smol::stream::unfold((lines, inbound), |(mut lines, inbound)| async move {
        loop {
            let aside = match lines.next().await {
                Ok(Some(Line::Text(text))) if is_json_object(&text) => {
                    return Some((Ok(text), (lines, inbound)));
                }
                Ok(Some(Line::Text(text))) if text.trim().is_empty() => continue,
                Ok(Some(Line::Text(text))) => Inbound::NotJson(text),
                Ok(Some(Line::TooLong(length))) => Inbound::TooLong(length),
                Ok(None) => return None,
                Err(error) => return Some((Err(error), (lines, inbound))),
            };
            let _ = inbound.send(aside).await;
        }
    });
    let outgoing = futures::sink::unfold(writer, |mut writer, line: String| async move {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        writer.write_all(&bytes).await?;
        writer.flush().await?;
        Ok::<_, std::io::Error>(writer)
    });
    Lines::new(outgoing, incoming)
}

fn is_json_object(line: &str) -> bool {
    line.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok()
}

/// The client's side of one ACP connection.
struct Conversation {
    source: &'static str,
    cx: v1::ConnectionTo<Agent>,
    /// For response callbacks.
    inbound: Sender<Inbound>,
    reports: Sender<Report>,
    /// Reports waiting to be sent.
    out: Vec<Report>,
    cwd: PathBuf,
    resume: Option<String>,
    /// The mode to switch to once the session is open.
    mode: Option<String>,
    phase: Phase,
    session: Option<String>,
    /// Updates are history being replayed by `session/load`.
    replaying: bool,
    prompting: bool,
    queued: VecDeque<String>,
    asks: OpenAsks<PendingAsk>,
}

enum Next {
    Inbound(Option<Inbound>),
    Command(Option<Command>),
    Closed,
}

impl Conversation {
    fn new(
        source: &'static str,
        spec: Spec,
        cx: v1::ConnectionTo<Agent>,
        inbound: Sender<Inbound>,
        reports: Sender<Report>,
    ) -> Self {
        Conversation {
            source,
            cx,
            inbound,
            reports,
            out: Vec::new(),
            cwd: spec.cwd,
            resume: spec.resume,
            mode: spec.mode,
            phase: Phase::Initializing,
            session: None,
            replaying: false,
            prompting: false,
            queued: VecDeque::new(),
            asks: OpenAsks::default(),
        }
    }

    async fn run(
        mut self,
        queue: Receiver<Inbound>,
        commands: Receiver<Command>,
    ) -> Result<(), RuntimeError> {
        let result = self.talk(&queue, &commands).await;
        if result.is_ok() {
            while let Ok(item) = queue.try_recv() {
                if self.on_inbound(item).is_err() {
                    break;
                }
            }
        }
        // The conversation is over: the agent's asks go with it.
        for (agent_request, _) in self.asks.take_all() {
            self.out.push(Report::Withdrawn { agent_request });
        }
        self.flush().await;
        result
    }

    /// Until the agent's output ends (`Ok`) or its handshake fails.
    async fn talk(
        &mut self,
        queue: &Receiver<Inbound>,
        commands: &Receiver<Command>,
    ) -> Result<(), RuntimeError> {
        // The default capabilities: no `fs`, no `terminal`.
        let capabilities = schema::ClientCapabilities::default();
        let initialize = schema::InitializeRequest::new(ProtocolVersion::V1)
            .client_capabilities(capabilities)
            .client_info(schema::Implementation::new(
                "muxagent",
                env!("CARGO_PKG_VERSION"),
            ));
        self.request(&initialize, Sent::Initialize)?;
        let mut commands_open = true;
        loop {
            self.flush().await;
            let inbound = async { Next::Inbound(queue.recv().await.ok()) };
            let command = async {
                if commands_open {
                    Next::Command(commands.recv().await.ok())
                } else {
                    std::future::pending().await
                }
            };
            let closed = async {
                self.cx.incoming_closed().await;
                Next::Closed
            };
            // Inbound first: what the agent said before its output ended still counts.
            match smol::future::or(smol::future::or(inbound, command), closed).await {
                Next::Inbound(Some(item)) => self.on_inbound(item)?,
                Next::Inbound(None) | Next::Closed => return Ok(()),
                Next::Command(Some(command)) => self.on_command(command)?,
                Next::Command(None) => commands_open = false,
            }
        }
    }

    async fn flush(&mut self) {
        for report in std::mem::take(&mut self.out) {
            if self.reports.send(report).await.is_err() {
                break; // the daemon dropped the session; the agent is being stopped
            }
        }
    }

    fn event(&mut self, kind: EventKind) {
        self.out.push(Report::Event(kind));
    }

    fn error(&mut self, message: String) {
        self.event(EventKind::Error { message });
    }

    fn source_name(&self) -> RuntimeName {
        RuntimeName::try_from(self.source).unwrap_or_default()
    }

    fn opaque(&mut self, raw: String) {
        let source = self.source_name();
        self.event(EventKind::Opaque { source, raw });
    }

    /// Send `request`; its answer comes back through the queue as [`Inbound::Response`].
    fn request(&self, request: &impl JsonRpcMessage, sent: Sent) -> Result<(), RuntimeError> {
        let message = request.to_untyped_message().map_err(sdk_error)?;
        self.send(message, sent)
    }

    fn send(&self, message: UntypedMessage, sent: Sent) -> Result<(), RuntimeError> {
        let inbound = self.inbound.clone();
        self.cx
            .prepare_request(message)
            .on_receiving_result(move |result| async move {
                let _ = inbound.send(Inbound::Response(sent, result)).await;
                Ok(())
            })
            .map_err(sdk_error)
    }

    fn on_command(&mut self, command: Command) -> Result<(), RuntimeError> {
        match command {
            Command::Prompt(text) => {
                if self.queued.len() >= AGENT_COMMAND_QUEUE {
                    self.error(format!(
                        "{AGENT_COMMAND_QUEUE} prompts are already waiting for the agent; this one was dropped"
                    ));
                } else {
                    self.queued.push_back(text);
                }
                self.next_prompt()
            }
            Command::Answer {
                agent_request,
                decision,
            } => {
                self.answer(&agent_request, &decision);
                Ok(())
            }
            Command::Interrupt => self.interrupt(),
            Command::SetMode(mode) => match (&self.session, self.phase) {
                (Some(session), Phase::Ready) => {
                    let request = schema::SetSessionModeRequest::new(session.clone(), mode.clone());
                    self.request(&request, Sent::SetMode(mode))
                }
                _ => {
                    self.mode = Some(mode);
                    Ok(())
                }
            },
        }
    }

    fn next_prompt(&mut self) -> Result<(), RuntimeError> {
        if self.phase != Phase::Ready || self.prompting {
            return Ok(());
        }
        let (Some(session), Some(text)) = (&self.session, self.queued.pop_front()) else {
            return Ok(());
        };
        let request = schema::PromptRequest::new(session.clone(), vec![text.into()]);
        self.prompting = true;
        self.request(&request, Sent::Prompt)
    }

    fn interrupt(&mut self) -> Result<(), RuntimeError> {
        if let (Some(session), true) = (&self.session, self.prompting) {
            let cancel = schema::CancelNotification::new(session.clone());
            self.cx.send_notification(cancel).map_err(sdk_error)?;
        }
        for (agent_request, ask) in self.asks.take_all() {
            self.withdraw(agent_request, ask);
        }
        Ok(())
    }

    /// Answer `ask` with the `cancelled` outcome and withdraw it.
    fn withdraw(&mut self, agent_request: String, ask: PendingAsk) {
        let outcome = schema::RequestPermissionOutcome::Cancelled;
        self.respond(ask.responder, outcome);
        self.out.push(Report::Withdrawn { agent_request });
    }

    fn respond(
        &mut self,
        responder: v1::Responder<Value>,
        outcome: schema::RequestPermissionOutcome,
    ) {
        let response = schema::RequestPermissionResponse::new(outcome);
        if let Err(error) = responder
            .cast::<schema::RequestPermissionResponse>()
            .respond(response)
        {
            self.error(format!(
                "cannot answer the agent's permission request: {error}"
            ));
        }
    }

    fn answer(&mut self, agent_request: &str, decision: &Decision) {
        let Some(ask) = self.asks.remove(agent_request) else {
            self.error(format!(
                "the agent has no pending permission request {agent_request}"
            ));
            return;
        };
        // ACP has no deny message: the daemon's log keeps it.
        let kinds: &[&str] = match decision {
            Decision::AllowOnce => &["allow_once"],
            Decision::AllowAlways => &["allow_always", "allow_once"],
            Decision::Deny { .. } => &["reject_once"],
        };
        let chosen = kinds.iter().find_map(|kind| {
            ask.options
                .iter()
                .find(|(_, offered)| offered == kind)
                .map(|(option, _)| option.clone())
        });
        match (chosen, decision) {
            (Some(option), _) => {
                let selected = schema::SelectedPermissionOutcome::new(option);
                let outcome = schema::RequestPermissionOutcome::Selected(selected);
                self.respond(ask.responder, outcome);
                self.out.push(Report::Applied {
                    agent_request: agent_request.to_string(),
                });
            }
            // No way to refuse but to cancel the tool call, which refuses it too.
            (None, Decision::Deny { .. }) => {
                self.respond(ask.responder, schema::RequestPermissionOutcome::Cancelled);
                self.out.push(Report::Applied {
                    agent_request: agent_request.to_string(),
                });
            }
            (None, _) => {
                self.error(format!(
                    "the agent offered no {} option for permission request {agent_request}; it was cancelled",
                    kinds[0]
                ));
                self.withdraw(agent_request.to_string(), ask);
            }
        }
    }

    fn on_inbound(&mut self, item: Inbound) -> Result<(), RuntimeError> {
        match item {
            Inbound::Update(params) => self.on_update(params),
            Inbound::Permission {
                id,
                params,
                responder,
            } => return self.on_permission(id, &params, *responder),
            Inbound::Notification { method, params } => {
                if method == "$/cancel_request" {
                    // The crate marked the request cancelled; the agent still wants an answer.
                    let cancelled = self
                        .asks
                        .take_where(|_, ask| ask.cancellation.is_cancelled());
                    for (agent_request, ask) in cancelled {
                        self.withdraw(agent_request, ask);
                    }
                } else {
                    self.opaque(json!({"method": method, "params": params}).to_string());
                }
            }
            Inbound::Unsupported { id, method, params } => {
                let raw = json!({"id": id, "method": method, "params": params});
                self.opaque(raw.to_string());
            }
            Inbound::Response(sent, result) => return self.on_response(sent, result),
            Inbound::NotJson(line) => self.opaque(line),
            Inbound::TooLong(length) => self.error(format!(
                "the agent printed a {length}-byte line, over the {AGENT_LINE_MAX_LEN}-byte limit; it was skipped"
            )),
        }
        Ok(())
    }

    fn on_response(
        &mut self,
        sent: Sent,
        result: Result<Value, agent_client_protocol::Error>,
    ) -> Result<(), RuntimeError> {
        match (sent, result) {
            (Sent::Initialize, Ok(response)) => self.open(&response),
            (Sent::Initialize, Err(error)) => Err(RuntimeError::Protocol(format!(
                "the agent refused `initialize`: {error}"
            ))),
            (Sent::NewSession, Ok(response)) => {
                let Some(id) = response.get("sessionId").and_then(Value::as_str) else {
                    return Err(RuntimeError::Protocol(
                        "`session/new` answered without a sessionId".into(),
                    ));
                };
                self.opened(id.to_owned())
            }
            (Sent::NewSession, Err(error)) => Err(RuntimeError::Protocol(format!(
                "the agent refused `session/new`: {error}"
            ))),
            (Sent::LoadSession(id), Ok(_)) => {
                self.session = Some(id.clone());
                self.out.push(Report::AgentSession(id));
                self.phase = Phase::Settling;
                let barrier = UntypedMessage::new(BARRIER_METHOD, json!({})).map_err(sdk_error)?;
                self.send(barrier, Sent::Barrier)
            }
            (Sent::LoadSession(id), Err(error)) => {
                self.error(format!(
                    "cannot resume the agent's session {id}: {error}; starting a new session"
                ));
                self.new_session()
            }
            // Any answer will do: it comes after the whole replay.
            (Sent::Barrier, _) => {
                self.replaying = false;
                self.set_start_mode()
            }
            (Sent::SetMode(mode), result) => {
                if let Err(error) = result {
                    self.error(format!("the agent refused mode `{mode}`: {error}"));
                }
                if self.phase == Phase::SettingMode {
                    self.phase = Phase::Ready;
                }
                self.next_prompt()
            }
            (Sent::Prompt, result) => {
                self.prompting = false;
                match result {
                    Ok(response) => {
                        if let Some(usage) = turn_usage(&response) {
                            self.out.push(Report::TurnUsage(usage));
                        }
                        let reason = response.get("stopReason").and_then(Value::as_str);
                        self.event(EventKind::TurnFinished {
                            reason: reason.unwrap_or("unknown").to_owned(),
                        });
                    }
                    Err(error) if agent_client_protocol::is_incoming_transport_closed(&error) => {}
                    Err(error) => {
                        self.error(format!("the prompt failed: {error}"));
                        self.event(EventKind::TurnFinished {
                            reason: "error".into(),
                        });
                    }
                }
                self.next_prompt()
            }
        }
    }

    /// The agent is initialized: open the session.
    fn open(&mut self, initialized: &Value) -> Result<(), RuntimeError> {
        self.phase = Phase::Opening;
        let Some(id) = self.resume.take() else {
            return self.new_session();
        };
        let can_load = initialized
            .pointer("/agentCapabilities/loadSession")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !can_load {
            self.error(format!(
                "the agent cannot load sessions, so session {id} cannot be resumed; starting a new session"
            ));
            return self.new_session();
        }
        self.replaying = true;
        let request = schema::LoadSessionRequest::new(id.clone(), self.cwd.clone());
        self.request(&request, Sent::LoadSession(id))
    }

    fn new_session(&mut self) -> Result<(), RuntimeError> {
        self.replaying = false;
        let request = schema::NewSessionRequest::new(self.cwd.clone());
        self.request(&request, Sent::NewSession)
    }

    fn opened(&mut self, id: String) -> Result<(), RuntimeError> {
        self.session = Some(id.clone());
        self.out.push(Report::AgentSession(id));
        self.set_start_mode()
    }

    /// Switch to the mode asked for before the session was open, if any; then take prompts.
    fn set_start_mode(&mut self) -> Result<(), RuntimeError> {
        match (self.mode.take(), &self.session) {
            (Some(mode), Some(session)) => {
                self.phase = Phase::SettingMode;
                let request = schema::SetSessionModeRequest::new(session.clone(), mode.clone());
                self.request(&request, Sent::SetMode(mode))
            }
            _ => {
                self.phase = Phase::Ready;
                self.next_prompt()
            }
        }
    }

    fn on_permission(
        &mut self,
        id: String,
        params: &Value,
        responder: v1::Responder<Value>,
    ) -> Result<(), RuntimeError> {
        let options: Vec<(String, String)> = params
            .get("options")
            .and_then(Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(|option| {
                        let id = option.get("optionId")?.as_str()?;
                        let kind = option.get("kind")?.as_str()?;
                        Some((id.to_owned(), kind.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tool_call = params.get("toolCall").filter(|call| call.is_object());
        let Some(tool_call) = tool_call.filter(|_| !options.is_empty()) else {
            self.error(format!(
                "the agent's permission request {id} has no tool call or no options; it was refused"
            ));
            let invalid = agent_client_protocol::Error::invalid_params();
            return responder.respond_with_error(invalid).map_err(sdk_error);
        };
        let cancellation = responder.cancellation();
        let ask = PendingAsk {
            options,
            responder,
            cancellation,
        };
        if let Err(refused) = self.asks.insert(id.clone(), ask) {
            self.error(format!(
                "the agent's permission request {id} was cancelled: {}",
                refused.reason
            ));
            self.respond(
                refused.ask.responder,
                schema::RequestPermissionOutcome::Cancelled,
            );
            return Ok(());
        }
        self.out.push(Report::Ask(ask_of(id, tool_call)));
        Ok(())
    }

    fn on_update(&mut self, params: Value) {
        let update = params.get("update").unwrap_or(&Value::Null);
        let kind = update.get("sessionUpdate").and_then(Value::as_str);
        let text = update
            .get("content")
            .filter(|content| content.get("type").and_then(Value::as_str) == Some("text"))
            .and_then(|content| content.get("text"))
            .and_then(Value::as_str);
        let tool_call = update.get("toolCallId").and_then(Value::as_str);
        let status = update.get("status").and_then(Value::as_str);
        let finished = matches!(status, Some("completed" | "failed"));
        let event = match (kind, text, tool_call) {
            // The daemon logs prompts itself; agents echo them only in history replay.
            (Some("user_message_chunk"), ..) => return,
            (
                Some(
                    "agent_message_chunk"
                    | "agent_thought_chunk"
                    | "tool_call"
                    | "tool_call_update"
                    | "plan",
                ),
                ..,
            ) if self.replaying => return,
            // Gemini's answer to `session/set_mode` is this chunk, not a mode update.
            (Some("agent_message_chunk"), Some(text), _) if !text.starts_with("[MODE_UPDATE] ") => {
                EventKind::TextDelta { text: text.into() }
            }
            (Some("agent_thought_chunk"), Some(text), _) => {
                EventKind::Thinking { text: text.into() }
            }
            (Some("tool_call"), _, Some(tool_call)) => {
                let input = match update.get("rawInput") {
                    Some(input) => input.to_string(),
                    None => update.to_string(),
                };
                self.event(EventKind::ToolStarted {
                    tool_call: tool_call.into(),
                    name: tool_name(update),
                    input,
                });
                if !finished {
                    return;
                }
                tool_finished(tool_call, status == Some("completed"), update)
            }
            (Some("tool_call_update"), _, Some(tool_call)) if finished => {
                tool_finished(tool_call, status == Some("completed"), update)
            }
            (Some("tool_call_update"), _, Some(tool_call)) => EventKind::ToolUpdated {
                tool_call: tool_call.into(),
                detail: update.to_string(),
            },
            (Some("tool_call" | "tool_call_update"), _, None) => {
                self.error("the agent reported a tool call without a toolCallId".into());
                self.opaque(update_line(&params));
                return;
            }
            // Other content (images …), plans (a to-do list, not an approval), mode and command
            // lists, usage, notices …: understood or not, not modelled.
            _ => {
                self.opaque(update_line(&params));
                return;
            }
        };
        self.event(event);
    }
}

/// An update as opaque text: the notification without its JSON-RPC envelope.
fn update_line(params: &Value) -> String {
    json!({"method": "session/update", "params": params}).to_string()
}

fn sdk_error(error: agent_client_protocol::Error) -> RuntimeError {
    RuntimeError::Protocol(error.to_string())
}

/// The tool's name for an ask or a started tool: the call's `name` where the agent gives one,
/// else its `kind` (`execute`, `edit` …, the closest ACP has to a tool name; the human-readable
/// `title`, such as the command line, is in the input), else the title.
/// The ask for a permission request: its input is the whole tool call (title, kind, raw input,
/// locations: all the agent says it will do), serialized in the agent's key order.
fn ask_of(agent_request: String, tool_call: &Value) -> Ask {
    Ask {
        agent_request,
        kind: ApprovalKind::Tool,
        tool: tool_name(tool_call),
        input: tool_call.to_string(),
        plan: None,
    }
}

fn tool_name(tool_call: &Value) -> String {
    text_at(tool_call, "/name")
        .filter(|name| !name.is_empty())
        .or(text_at(tool_call, "/kind").filter(|kind| *kind != "other"))
        .or(text_at(tool_call, "/title"))
        .unwrap_or("tool")
        .to_owned()
}

/// A finished tool call: the text of its `content` as the output (else its `rawOutput`), its
/// `diff` items as one unified diff.
fn tool_finished(tool_call: &str, ok: bool, update: &Value) -> EventKind {
    let mut texts = Vec::new();
    let mut diffs = String::new();
    let items = update.get("content").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        let field = |name: &str| text_at(item, name);
        match field("/type") {
            Some("content") => {
                let block = item.get("content").unwrap_or(&Value::Null);
                if text_at(block, "/type") == Some("text")
                    && let Some(text) = text_at(block, "/text")
                {
                    texts.push(text);
                }
            }
            Some("diff") => {
                if let (Some(path), Some(new)) = (field("/path"), field("/newText")) {
                    diffs.push_str(&unified_diff(path, field("/oldText"), new));
                }
            }
            _ => {}
        }
    }
    let mut output = texts.join("\n");
    if output.is_empty() {
        output = match update.get("rawOutput") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
    }
    EventKind::ToolFinished {
        tool_call: tool_call.into(),
        ok,
        output,
        diff: (!diffs.is_empty()).then_some(diffs),
    }
}

/// `diff -u` of an ACP diff: the old text (none for a new file) against the new one.
fn unified_diff(path: &str, old: Option<&str>, new: &str) -> String {
    let old_name = if old.is_some() { path } else { NO_FILE };
    preview::unified(old_name, path, old.unwrap_or(""), new)
}

/// The tokens of a finished turn: the spec's (unstable) `usage`, or Gemini's
/// `_meta.quota.token_count`. Both count this turn only. No ACP agent reports dollars per turn.
fn turn_usage(response: &Value) -> Option<Usage> {
    let count = |value: &Value, key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let usage = if let Some(usage) = response.get("usage").filter(|usage| usage.is_object()) {
        Usage {
            input_tokens: count(usage, "inputTokens"),
            output_tokens: count(usage, "outputTokens"),
            cached_tokens: count(usage, "cachedReadTokens"),
            cost_usd_micros: None,
        }
    } else {
        let tokens = response.pointer("/_meta/quota/token_count")?;
        Usage {
            input_tokens: count(tokens, "input_tokens"),
            output_tokens: count(tokens, "output_tokens"),
            cached_tokens: 0,
            cost_usd_micros: None,
        }
    };
    (usage.input_tokens + usage.output_tokens + usage.cached_tokens > 0).then_some(usage)
}

#[cfg(test)]
mod tests {
    //! The conversation runs in-process over socket pairs against a fake agent that replays
    //! `agents/fixtures/gemini/*.jsonl`: it prints the recorded `out` lines (with the ids of
    //! our requests put in) and checks each line the runtime writes against the recorded `in`
    //! line. Commands are sent where the recording shows their effect.

    use std::collections::HashMap;
    use std::os::unix::net::UnixStream;

    use smol::Async;

    use super::*;

    const CWD: &str = "/work/project";

    #[derive(Clone)]
    enum Record {
        /// The agent prints this line.
        Out(String),
        /// The runtime must write a line like this one.
        In(Value),
        /// A new agent process starts here.
        Restart,
        /// Hand-made scenarios: wait for the ask with this id.
        Asked(&'static str),
        /// Hand-made scenarios: send this command.
        Do(Command),
    }

    fn fixture(scenario: &str) -> Vec<Record> {
        let path = format!(
            "{}/agents/fixtures/gemini/{scenario}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        text.lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).expect("record");
                let body = record["line"].as_str().expect("line");
                let body = body
                    .replace("{{CWD}}", CWD)
                    .replace("{{HOME}}", "/home/user")
                    .replace("{{ROOT}}", "/root");
                match record["dir"].as_str() {
                    Some("out") => Record::Out(body),
                    Some("in") => Record::In(serde_json::from_str(&body).expect("in line")),
                    _ => Record::Restart,
                }
            })
            .collect()
    }

    /// How the test drives what the recording shows as the client's own doing.
    #[derive(Clone, Copy, PartialEq)]
    enum ModeBy {
        Spec,
        Command,
    }

    /// The fake agent and the test's side of the runtime's channels.
    struct Script {
        from_client: LineReader<Async<UnixStream>>,
        to_client: Option<Async<UnixStream>>,
        commands: Sender<Command>,
        reports: Receiver<Report>,
        seen: Vec<Report>,
        /// Recorded id of each of our requests → the id the runtime chose.
        ids: HashMap<String, Value>,
        /// Recorded requests the runtime never sends (the recorder's probes).
        skipped: Vec<String>,
        /// optionId → kind of the agent's permission requests.
        option_kinds: HashMap<String, String>,
        /// `None`: hand-made scenario, commands are records of their own.
        mode_by: Option<ModeBy>,
    }

    impl Script {
        async fn print(&mut self, line: &str) {
            let mut message: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let mut line = line.to_owned();
            if message.get("method").is_none()
                && let Some(id) = message.get("id").map(Value::to_string)
            {
                if self.skipped.contains(&id) {
                    return;
                }
                message["id"] = self.ids.get(&id).expect("the runtime's request").clone();
                line = message.to_string();
            }
            if message["method"] == "session/request_permission" {
                for option in message["params"]["options"].as_array().expect("options") {
                    let id = option["optionId"].as_str().expect("optionId");
                    let kind = option["kind"].as_str().expect("kind");
                    self.option_kinds.insert(id.into(), kind.into());
                }
            }
            let out = self.to_client.as_mut().expect("open");
            out.write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write");
        }

        /// The runtime's next line, answering the replay barrier as Gemini does.
        async fn read(&mut self) -> Value {
            loop {
                let line = match self.from_client.next().await.expect("read") {
                    Some(Line::Text(line)) => line,
                    other => panic!("the runtime wrote {other:?}"),
                };
                let message: Value = serde_json::from_str(&line).expect("JSON from the runtime");
                assert_eq!(message["jsonrpc"], "2.0", "{line}");
                if message["method"] != BARRIER_METHOD {
                    return message;
                }
                let answer = json!({"jsonrpc": "2.0", "id": message["id"],
                    "error": {"code": -32601, "message": "\"Method not found\": _muxagent/barrier"}});
                let out = self.to_client.as_mut().expect("open");
                out.write_all(format!("{answer}\n").as_bytes())
                    .await
                    .expect("write");
            }
        }

        async fn wait_for(&mut self, wanted: impl Fn(&Report) -> bool) {
            if self.seen.iter().any(&wanted) {
                return;
            }
            loop {
                let report = self.reports.recv().await.expect("report");
                let found = wanted(&report);
                self.seen.push(report);
                if found {
                    return;
                }
            }
        }

        async fn command(&mut self, command: Command) {
            self.commands.send(command).await.expect("command");
        }

        /// Do what leads the runtime to write `expected`, then check what it wrote.
        async fn expect(&mut self, expected: &Value) {
            if let Some(mode_by) = self.mode_by
                && !self.prepare(expected, mode_by).await
            {
                return;
            }
            self.check(expected).await;
        }

        /// Send the command the recorded line is the effect of. False: the runtime does not
        /// write such a line.
        async fn prepare(&mut self, expected: &Value, mode_by: ModeBy) -> bool {
            let method = expected.get("method").and_then(Value::as_str);
            match method {
                // The recorder's probes of Gemini; the runtime sends no such thing.
                Some("no/such/method" | "no/such/notification") => {
                    if let Some(id) = expected.get("id") {
                        self.skipped.push(id.to_string());
                    }
                    return false;
                }
                Some("session/prompt") => {
                    let text = expected["params"]["prompt"][0]["text"]
                        .as_str()
                        .expect("text");
                    self.command(Command::Prompt(text.into())).await;
                }
                Some("session/set_mode") if mode_by == ModeBy::Command => {
                    self.wait_for(|report| matches!(report, Report::AgentSession(_)))
                        .await;
                    let mode = expected["params"]["modeId"].as_str().expect("modeId");
                    self.command(Command::SetMode(mode.into())).await;
                }
                Some("session/cancel") => {
                    self.wait_for(|report| matches!(report, Report::Ask(_)))
                        .await;
                    self.command(Command::Interrupt).await;
                }
                None if expected["result"]["outcome"]["outcome"] == "selected" => {
                    let id = expected["id"].to_string();
                    let option = expected["result"]["outcome"]["optionId"]
                        .as_str()
                        .expect("id");
                    let decision = match self.option_kinds[option].as_str() {
                        "allow_once" => Decision::AllowOnce,
                        "allow_always" => Decision::AllowAlways,
                        _ => Decision::Deny {
                            message: "not now".into(),
                        },
                    };
                    let asked = id.clone();
                    self.wait_for(
                        |report| matches!(report, Report::Ask(ask) if ask.agent_request == asked),
                    )
                    .await;
                    self.command(Command::Answer {
                        agent_request: id,
                        decision,
                    })
                    .await;
                }
                _ => {}
            }
            true
        }

        async fn check(&mut self, expected: &Value) {
            let method = expected.get("method").and_then(Value::as_str);
            let actual = self.read().await;
            assert_eq!(actual.get("method"), expected.get("method"), "{actual}");
            match method {
                Some("initialize") => {
                    let params = &actual["params"];
                    assert_eq!(params["protocolVersion"], 1);
                    // Neither `fs` nor `terminal`: the agent does its own files and commands.
                    let capabilities = &params["clientCapabilities"];
                    assert_eq!(capabilities["fs"]["readTextFile"], false, "{actual}");
                    assert_eq!(capabilities["fs"]["writeTextFile"], false, "{actual}");
                    assert_eq!(capabilities["terminal"], false, "{actual}");
                }
                Some(_) => assert_eq!(actual["params"], expected["params"], "{actual}"),
                None => {
                    // Our answer to the agent's request: its own id, the recorded outcome.
                    assert_eq!(actual["id"], expected["id"], "{actual}");
                    assert_eq!(actual["result"], expected["result"], "{actual}");
                    assert_eq!(
                        actual["error"]["code"], expected["error"]["code"],
                        "{actual}"
                    );
                }
            }
            if let (Some(recorded), Some(id)) = (expected.get("id"), actual.get("id"))
                && method.is_some()
            {
                self.ids.insert(recorded.to_string(), id.clone());
            }
        }
    }

    /// Replay `records` against the runtime, restarting it (with `resume` set to the agent
    /// session it reported) at each restart record. The reports of each process.
    fn replay(records: Vec<Record>, mut spec: Spec, mode_by: Option<ModeBy>) -> Vec<Vec<Report>> {
        let segments: Vec<Vec<Record>> = records
            .split(|record| matches!(record, Record::Restart))
            .map(<[Record]>::to_vec)
            .collect();
        let mut processes = Vec::new();
        for segment in segments {
            let seen = smol::block_on(smol::future::or(
                run_segment(segment, spec.clone(), mode_by),
                async {
                    smol::Timer::after(std::time::Duration::from_secs(20)).await;
                    panic!("the conversation got stuck");
                },
            ));
            spec.resume = seen.iter().find_map(|report| match report {
                Report::AgentSession(id) => Some(id.clone()),
                _ => None,
            });
            processes.push(seen);
        }
        processes
    }

    async fn run_segment(records: Vec<Record>, spec: Spec, mode_by: Option<ModeBy>) -> Vec<Report> {
        let (client_in, agent_out) = UnixStream::pair().expect("pair");
        let (agent_in, client_out) = UnixStream::pair().expect("pair");
        let (commands, command_queue) = smol::channel::unbounded();
        let (report_sender, reports) = smol::channel::unbounded();
        let conversation = converse(
            "gemini",
            spec,
            Async::new(client_in).expect("async"),
            Async::new(client_out).expect("async"),
            command_queue,
            report_sender,
        );
        let mut script = Script {
            from_client: LineReader::new(Async::new(agent_in).expect("async"), 1 << 20),
            to_client: Some(Async::new(agent_out).expect("async")),
            commands,
            reports,
            seen: Vec::new(),
            ids: HashMap::new(),
            skipped: Vec::new(),
            option_kinds: HashMap::new(),
            mode_by,
        };
        let play = async {
            for record in &records {
                match record {
                    Record::Out(line) => script.print(line).await,
                    Record::In(expected) => script.expect(expected).await,
                    Record::Restart => unreachable!("split off"),
                    Record::Asked(id) => {
                        script
                            .wait_for(|report| matches!(report, Report::Ask(ask) if ask.agent_request == *id))
                            .await;
                    }
                    Record::Do(command) => script.command(command.clone()).await,
                }
            }
            // The agent exits: its output ends.
            script.to_client = None;
        };
        let (result, ()) = smol::future::zip(conversation, play).await;
        // Nothing more was written: the runtime's output ended with the conversation.
        assert_eq!(script.from_client.next().await.expect("read"), None);
        while let Ok(report) = script.reports.try_recv() {
            script.seen.push(report);
        }
        // As the daemon logs it.
        if let Err(error) = result {
            let message = format!("runtime: {error}");
            script
                .seen
                .push(Report::Event(EventKind::Error { message }));
        }
        script.seen
    }

    fn gemini(scenario: &str) -> Vec<Vec<Report>> {
        let spec = Spec {
            cwd: CWD.into(),
            ..Spec::default()
        };
        replay(fixture(scenario), spec, Some(ModeBy::Spec))
    }

    fn delta(text: &str) -> String {
        format!("delta {}", text.chars().take(40).collect::<String>())
    }

    /// One line per report, for comparing whole conversations.
    fn brief(reports: &[Report]) -> Vec<String> {
        reports
            .iter()
            .map(|report| match report {
                Report::AgentSession(id) => format!("session {id}"),
                Report::Ask(ask) => format!("ask {} {}", ask.agent_request, ask.tool),
                Report::Applied { agent_request } => format!("applied {agent_request}"),
                Report::Withdrawn { agent_request } => format!("withdrawn {agent_request}"),
                Report::TurnUsage(usage) => {
                    assert_eq!((usage.cached_tokens, usage.cost_usd_micros), (0, None));
                    format!("usage {}+{}", usage.input_tokens, usage.output_tokens)
                }
                Report::Event(kind) => match kind {
                    EventKind::TextDelta { text } => {
                        format!("delta {}", text.chars().take(40).collect::<String>())
                    }
                    EventKind::Thinking { text } => format!("thinking {text}"),
                    EventKind::ToolStarted {
                        tool_call, name, ..
                    } => format!("started {tool_call} {name}"),
                    EventKind::ToolUpdated { tool_call, .. } => format!("updated {tool_call}"),
                    EventKind::ToolFinished {
                        tool_call,
                        ok,
                        diff,
                        ..
                    } => format!("finished {tool_call} {ok} diff={}", diff.is_some()),
                    EventKind::TurnFinished { reason } => format!("turn {reason}"),
                    EventKind::Error { message } => format!("error {message}"),
                    EventKind::Opaque { source, raw } => {
                        assert_eq!(source.as_str(), "gemini");
                        let raw: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
                        let kind = raw["params"]["update"]["sessionUpdate"]
                            .as_str()
                            .or(raw["method"].as_str())
                            .unwrap_or("not JSON");
                        format!("opaque {kind}")
                    }
                    other => panic!("the runtime reported {other:?}"),
                },
            })
            .collect()
    }

    const SHELL_RESULT: &str = r#"delta the tool returned: {"output": "<untruste"#;

    #[test]
    fn approve() {
        let processes = gemini("approve");
        let call = "run_shell_command__run_shell_command_1795517004165_0";
        assert_eq!(
            brief(&processes[0]),
            [
                "session 2484bbce-568a-472e-8fee-b5a9c0014491",
                "opaque available_commands_update",
                "ask 0 execute",
                "applied 0",
                &format!("finished {call} true diff=false"),
                "delta MOCK-FINAL: ",
                SHELL_RESULT,
                "usage 445+55",
                "turn end_turn",
            ]
        );
        // The ask's input is the agent's toolCall, as it wrote it.
        let Report::Ask(ask) = &processes[0][2] else {
            panic!("not an ask")
        };
        let recorded = fixture("approve")
            .into_iter()
            .find_map(|record| match record {
                Record::Out(line) if line.contains("request_permission") => Some(line),
                _ => None,
            })
            .expect("the ask");
        assert!(
            ask.input
                .starts_with(&format!(r#"{{"toolCallId":"{call}""#))
        );
        assert!(recorded.contains(&format!(r#""toolCall":{}}}}}"#, ask.input)));
        assert_eq!((ask.kind, &ask.plan), (ApprovalKind::Tool, &None));
    }

    #[test]
    fn deny_refuses_with_the_reject_once_option() {
        let processes = gemini("deny");
        assert_eq!(
            brief(&processes[0]),
            [
                "session 38c6ac0d-672c-4b3c-ad4b-7b177b157d73".to_string(),
                "opaque available_commands_update".into(),
                "ask 0 execute".into(),
                "applied 0".into(),
                "delta MOCK-FINAL: ".into(),
                delta(r#"the tool returned: {"error": "Tool \"run_shell_command\""#),
                "usage 431+47".into(),
                "turn end_turn".into(),
            ]
        );
    }

    #[test]
    fn allow_always_picks_the_allow_always_option() {
        let processes = gemini("allow_always");
        let (first, second) = (
            "run_shell_command__run_shell_command_1795517017464_0",
            "run_shell_command__run_shell_command_1795517017675_0",
        );
        assert_eq!(
            brief(&processes[0]),
            [
                "session 3faa6485-7237-4ba2-91a8-7fcf18bac897",
                "opaque available_commands_update",
                "ask 0 execute",
                "applied 0",
                &format!("finished {first} true diff=false"),
                "delta MOCK-FINAL: ",
                SHELL_RESULT,
                "usage 451+55",
                "turn end_turn",
                // The same command again: no ask this time.
                &format!("started {second} execute"),
                &format!("finished {second} true diff=false"),
                "delta MOCK-FINAL: ",
                SHELL_RESULT,
                "usage 808+55",
                "turn end_turn",
            ]
        );
    }

    #[test]
    fn interrupt_cancels_the_turn_and_withdraws_the_ask() {
        // Gemini waits for the answer to its ask even after `session/cancel`: the runtime
        // answers `cancelled` right away (the recording shows the answer 3 s later).
        let processes = gemini("interrupt_unanswered");
        assert_eq!(
            brief(&processes[0]),
            [
                "session 939e06f9-27b0-4e2b-98e1-7602c918612a",
                "opaque available_commands_update",
                "ask 0 execute",
                "withdrawn 0",
                "turn cancelled",
            ]
        );
        let processes = gemini("interrupt");
        assert_eq!(
            brief(&processes[0]),
            [
                "session 47dd5561-f266-4746-9a6e-4c23efe82cd3",
                "opaque available_commands_update",
                "ask 0 execute",
                "withdrawn 0",
                "turn cancelled",
                // The process takes the next prompt.
                "delta MOCK: ",
                "delta hello from the mock model.",
                "usage 234+8",
                "turn end_turn",
            ]
        );
    }

    #[test]
    fn set_mode_from_the_spec_or_a_command() {
        let expected = [
            "session 47070c64-7dbd-4a88-a6d0-e5219a3608b3",
            "opaque available_commands_update",
            // Gemini's "[MODE_UPDATE] yolo" chunk is no answer text.
            "opaque agent_message_chunk",
            "started run_shell_command__run_shell_command_1795517025129_0 execute",
            "finished run_shell_command__run_shell_command_1795517025129_0 true diff=false",
            "delta MOCK-FINAL: ",
            SHELL_RESULT,
            "usage 443+54",
            "turn end_turn",
        ];
        let spec = Spec {
            cwd: CWD.into(),
            mode: Some("yolo".into()),
            ..Spec::default()
        };
        let processes = replay(fixture("set_mode"), spec, Some(ModeBy::Spec));
        assert_eq!(brief(&processes[0]), expected);
        let spec = Spec {
            cwd: CWD.into(),
            ..Spec::default()
        };
        let processes = replay(fixture("set_mode"), spec, Some(ModeBy::Command));
        assert_eq!(brief(&processes[0]), expected);
    }

    #[test]
    fn resume_loads_the_session_without_logging_its_history_again() {
        let processes = gemini("resume");
        let session = "session 36bdb23d-e3e9-40b9-a18c-372cb4d71cfd";
        let turn = |usage: &'static str| {
            [
                "opaque available_commands_update",
                "delta MOCK: ",
                "delta hello from the mock model.",
                usage,
                "turn end_turn",
            ]
        };
        assert_eq!(brief(&processes[0])[0], session);
        assert_eq!(brief(&processes[0])[1..], turn("usage 155+8"));
        // The second process: `session/load` (checked against the recording), then the replay,
        // part of it after the load's answer, is left out.
        assert_eq!(brief(&processes[1])[0], session);
        assert_eq!(brief(&processes[1])[1..], turn("usage 192+8"));
    }

    #[test]
    fn write_reports_the_edit_as_a_unified_diff() {
        let processes = gemini("write");
        let call = "write_file__write_file_1795517020022_0";
        assert_eq!(
            brief(&processes[0]),
            [
                "session f7a4180c-7fe2-47c7-8853-3a0a775a3e90".to_string(),
                "opaque available_commands_update".into(),
                "ask 0 edit".into(),
                "applied 0".into(),
                format!("finished {call} true diff=true"),
                "delta MOCK-FINAL: ".into(),
                delta("the tool returned: {\"output\": \"Successfully created"),
                "usage 451+65".into(),
                "turn end_turn".into(),
            ]
        );
        let Report::Event(EventKind::ToolFinished { diff, output, .. }) = &processes[0][4] else {
            panic!("not a finished tool")
        };
        assert_eq!(output, "");
        let path = format!("{CWD}/notes.txt");
        assert_eq!(
            diff.as_deref(),
            Some(
                format!("--- {path}\n+++ {path}\n@@ -0,0 +1 @@\n+hello from write_file\n").as_str()
            )
        );
    }

    #[test]
    fn unknown_and_unsupported_messages_are_kept_as_opaque_events() {
        let session = "db89490c-8c45-458f-bb43-407d248336cb";
        let extra = [
            "this is not JSON".to_string(),
            json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session,
                "update": {"sessionUpdate": "brand_new_kind", "x": 1}}})
            .to_string(),
            json!({"jsonrpc": "2.0", "method": "no/such/notification", "params": {"y": 2}})
                .to_string(),
            json!({"jsonrpc": "2.0", "id": "fs-1", "method": "fs/read_text_file",
                "params": {"sessionId": session, "path": "/etc/hostname"}})
            .to_string(),
        ];
        let mut records: Vec<Record> = Vec::new();
        for record in fixture("unknown") {
            let prompt = matches!(&record, Record::In(line) if line["method"] == "session/prompt");
            records.push(record);
            if prompt {
                records.extend(extra.iter().cloned().map(Record::Out));
                // The client answers what it does not serve with "method not found".
                records.push(Record::In(json!({"jsonrpc": "2.0", "id": "fs-1",
                    "error": {"code": -32601}})));
                let update = |update: Value| {
                    let params = json!({"sessionId": session, "update": update});
                    Record::Out(
                        json!({"jsonrpc": "2.0", "method": "session/update", "params": params})
                            .to_string(),
                    )
                };
                records.push(update(json!({"sessionUpdate": "agent_thought_chunk",
                    "content": {"type": "text", "text": "hmm"}})));
                records.push(update(json!({"sessionUpdate": "plan", "entries": []})));
                records.push(update(json!({"sessionUpdate": "agent_message_chunk",
                    "content": {"type": "image", "data": "", "mimeType": "image/png"}})));
                records.push(update(
                    json!({"sessionUpdate": "tool_call", "toolCallId": "c1",
                    "title": "cat /etc/hostname", "name": "bash", "kind": "execute",
                    "status": "pending", "rawInput": {"command": "cat /etc/hostname"}}),
                ));
                records.push(update(json!({"sessionUpdate": "tool_call_update",
                    "toolCallId": "c1", "status": "in_progress"})));
                records.push(update(json!({"sessionUpdate": "tool_call_update",
                    "toolCallId": "c1", "status": "failed", "rawOutput": {"exit": 1},
                    "content": [{"type": "content", "content": {"type": "text", "text": "denied"}}]})));
            }
        }
        let spec = Spec {
            cwd: CWD.into(),
            ..Spec::default()
        };
        let processes = replay(records, spec, Some(ModeBy::Spec));
        assert_eq!(
            brief(&processes[0]),
            [
                format!("session {session}"),
                "opaque not JSON".into(),
                "opaque brand_new_kind".into(),
                "opaque no/such/notification".into(),
                "opaque fs/read_text_file".into(),
                "thinking hmm".into(),
                "opaque plan".into(),
                "opaque agent_message_chunk".into(),
                "started c1 bash".into(),
                "updated c1".into(),
                "finished c1 false diff=false".into(),
                "opaque available_commands_update".into(),
                "delta MOCK: ".into(),
                "delta hello from the mock model.".into(),
                "usage 152+8".into(),
                "turn end_turn".into(),
            ]
        );
        let events: Vec<&EventKind> = processes[0]
            .iter()
            .filter_map(|report| match report {
                Report::Event(kind) => Some(kind),
                _ => None,
            })
            .collect();
        assert!(matches!(events[0], EventKind::Opaque { raw, .. } if raw == "this is not JSON"));
        assert!(matches!(events[7], EventKind::ToolStarted { input, .. }
            if input == r#"{"command":"cat /etc/hostname"}"#));
        assert!(matches!(events[9], EventKind::ToolFinished { output, .. } if output == "denied"));
    }

    #[test]
    fn asks_keep_the_approval_contract() {
        let ask = |tool_call: Value| ask_of("7".into(), &tool_call);
        let base = json!({"toolCallId": "t1", "title": "rm -rf build", "kind": "delete",
            "rawInput": {"path": "build", "recursive": true}});
        let mut changed = Vec::new();
        for (pointer, value) in [
            ("/title", json!("rm -rf /")),
            ("/kind", json!("execute")),
            ("/rawInput/path", json!("/")),
            ("/rawInput/recursive", json!(false)),
        ] {
            let mut tool_call = base.clone();
            if let Some(field) = tool_call.pointer_mut(pointer) {
                *field = value;
            }
            changed.push(ask(tool_call));
        }
        let mut added = base.clone();
        added["locations"] = json!([{"path": "/etc"}]);
        changed.push(ask(added));
        // The agent's key order is kept (serde_json's `preserve_order`).
        let reordered = json!({"title": "rm -rf build", "toolCallId": "t1", "kind": "delete",
            "rawInput": {"path": "build", "recursive": true}});
        changed.push(ask(reordered));
        super::super::contract::check(&ask(base.clone()), &ask(base), &changed);
    }

    /// A hand-made agent for what the recordings do not show.
    #[test]
    fn answers_without_a_matching_option_cancelled_requests_and_failed_prompts() {
        let out = |line: Value| Record::Out(line.to_string());
        let ask = |id: u64, options: Value| {
            out(
                json!({"jsonrpc": "2.0", "id": id, "method": "session/request_permission",
                "params": {"sessionId": "s1", "options": options,
                    "toolCall": {"toolCallId": format!("t{id}"), "title": "rm -rf build", "kind": "delete"}}}),
            )
        };
        let answer = |id: u64, result: Value| {
            Record::In(json!({"jsonrpc": "2.0", "id": id, "result": result}))
        };
        let cancelled = json!({"outcome": {"outcome": "cancelled"}});
        let always = json!([{"optionId": "a", "name": "Always", "kind": "allow_always"},
            {"optionId": "r", "name": "Never", "kind": "reject_always"}]);
        let prompt = |id: u64, text: &str| {
            Record::In(
                json!({"jsonrpc": "2.0", "id": id, "method": "session/prompt",
                "params": {"sessionId": "s1", "prompt": [{"type": "text", "text": text}]}}),
            )
        };
        let records = vec![
            // Prompts wait for the session, and for one another.
            Record::Do(Command::Prompt("go".into())),
            Record::Do(Command::Prompt("again".into())),
            Record::In(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"})),
            out(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1}})),
            Record::In(json!({"jsonrpc": "2.0", "id": 2, "method": "session/new",
                "params": {"cwd": CWD, "mcpServers": []}})),
            out(json!({"jsonrpc": "2.0", "id": 2, "result": {"sessionId": "s1"}})),
            prompt(3, "go"),
            // No allow_once to allow once with: cancelled, withdrawn.
            ask(7, always.clone()),
            Record::Asked("7"),
            Record::Do(Command::Answer {
                agent_request: "7".into(),
                decision: Decision::AllowOnce,
            }),
            answer(7, cancelled.clone()),
            // No reject_once to deny with: cancelling the call refuses it too.
            ask(8, always),
            Record::Asked("8"),
            Record::Do(Command::Answer {
                agent_request: "8".into(),
                decision: Decision::Deny {
                    message: "no".into(),
                },
            }),
            answer(8, cancelled.clone()),
            Record::Do(Command::Answer {
                agent_request: "99".into(),
                decision: Decision::AllowOnce,
            }),
            // The agent cancels its own request: it still gets its answer.
            ask(
                9,
                json!([{"optionId": "o", "name": "Once", "kind": "allow_once"}]),
            ),
            Record::Asked("9"),
            out(
                json!({"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": 9}}),
            ),
            answer(9, cancelled),
            // A request without options is refused.
            ask(10, json!([])),
            Record::In(json!({"jsonrpc": "2.0", "id": 10, "error": {"code": -32602}})),
            Record::Out(
                json!({"jsonrpc": "2.0", "id": 3,
                "error": {"code": -32603, "message": "the model is down"}})
                .to_string(),
            ),
            prompt(4, "again"),
            // The agent exits in the middle of the turn.
        ];
        let spec = Spec {
            cwd: CWD.into(),
            ..Spec::default()
        };
        let processes = replay(records, spec, None);
        assert_eq!(
            brief(&processes[0]),
            [
                "session s1",
                "ask 7 delete",
                "error the agent offered no allow_once option for permission request 7; it was cancelled",
                "withdrawn 7",
                "ask 8 delete",
                "applied 8",
                "error the agent has no pending permission request 99",
                "ask 9 delete",
                "withdrawn 9",
                "error the agent's permission request 10 has no tool call or no options; it was refused",
                "error the prompt failed: the model is down",
                "turn error",
            ]
        );
    }

    #[test]
    fn command_lines_names_and_modes() {
        let spec = |args: &[&str]| Spec {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            ..Spec::default()
        };
        let custom = AcpRuntime::Custom;
        assert_eq!(custom.name(), "acp");
        assert!(
            custom
                .command_line(&spec(&[]), "hi")
                .unwrap_err()
                .contains("goose acp")
        );
        assert_eq!(
            custom.command_line(&spec(&["goose", "acp"]), "hi").unwrap(),
            ["goose", "acp"]
        );
        assert_eq!((custom.modes(), custom.program()), (&[][..], None));
        let gemini = AcpRuntime::Gemini;
        assert_eq!(gemini.name(), "gemini");
        let line = gemini.command_line(&spec(&["-m", "flash"]), "hi").unwrap();
        assert_eq!(line[1..], ["--acp", "-m", "flash"]);
        assert_eq!(Some(line[0].clone()), gemini.program());
        assert_eq!(gemini.modes(), ["default", "autoEdit", "yolo", "plan"]);
    }

    #[test]
    fn a_session_that_cannot_be_resumed_is_replaced_and_a_refused_one_ends_the_conversation() {
        let out = |line: Value| Record::Out(line.to_string());
        let initialize = Record::In(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"}));
        let new_session = Record::In(json!({"jsonrpc": "2.0", "id": 3, "method": "session/new",
            "params": {"cwd": CWD, "mcpServers": []}}));
        let refused = out(json!({"jsonrpc": "2.0", "id": 3,
            "error": {"code": -32000, "message": "Authentication required"}}));
        let spec = Spec {
            cwd: CWD.into(),
            resume: Some("old".into()),
            ..Spec::default()
        };
        let records = vec![
            initialize.clone(),
            out(json!({"jsonrpc": "2.0", "id": 1,
                "result": {"protocolVersion": 1, "agentCapabilities": {"loadSession": true}}})),
            Record::In(json!({"jsonrpc": "2.0", "id": 2, "method": "session/load",
                "params": {"sessionId": "old", "cwd": CWD, "mcpServers": []}})),
            out(json!({"jsonrpc": "2.0", "id": 2,
                "error": {"code": -32603, "message": "No previous sessions found"}})),
            new_session.clone(),
            refused.clone(),
        ];
        let processes = replay(records, spec.clone(), None);
        assert_eq!(
            brief(&processes[0]),
            [
                "error cannot resume the agent's session old: No previous sessions found; starting a new session",
                "error runtime: the agent broke its protocol: the agent refused `session/new`: Authentication required",
            ]
        );
        // An agent without `loadSession` is not asked to load.
        let records = vec![
            initialize,
            out(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1}})),
            new_session,
            refused,
        ];
        let processes = replay(records, spec, None);
        assert_eq!(
            brief(&processes[0])[0],
            "error the agent cannot load sessions, so session old cannot be resumed; starting a new session"
        );
    }
}
