//! The `codex` runtime: Codex's `codex app-server`, JSON-RPC 2.0 over standard streams, one
//! JSON object per line (the server leaves out the `"jsonrpc"` member; we send it, as the
//! recorded client did). Written sans-IO as a [`LineProtocol`]; [`lines::drive`] does the IO.
//! Protocol facts: `agents/README.md` "Codex"; exact types: `agents/fixtures/codex/schema/`.
//!
//! Session: `initialize` → notification `initialized` → `thread/start` (or `thread/resume` of
//! [`Spec::resume`]); the thread id is the agent session. Each prompt is one `turn/start`.
//! Prompts wait until the thread exists and, while a turn runs, until `turn/completed`: one
//! prompt is one turn, as the daemon logs it (`turn/steer` would fold a prompt into the running
//! turn, but it is untested).
//!
//! Modes are Codex's approval policies: `untrusted` (the default, as recorded: everything but
//! known-safe reads asks), `on-request` (the model asks when it wants to), `never`. The sandbox
//! is always `danger-full-access`, as recorded: the phone's approvals are the guard, and Codex's
//! sandboxes (bubblewrap) are untested here. So with `on-request` the model rarely asks and
//! with `never` it never does. `SetMode` takes effect from the next turn: `turn/start` carries
//! the new `approvalPolicy`, which Codex keeps for later turns (checked with the real CLI both
//! ways); the protocol has no other way to change it.
//!
//! Approvals are server requests; `agent_request` is the JSON-RPC id as text (`"0"`):
//! - `item/commandExecution/requestApproval` → tool `shell`, input `{"command","cwd"}` (plus
//!   `"reason"` when Codex gives one);
//! - `item/fileChange/requestApproval` → tool `apply_patch`, input `{"changes":[{path, kind,
//!   diff}]}` as the earlier `item/started` of the same item gave them (the request itself
//!   names only the item).
//!
//! Answers: allow once → `accept`, allow always → `acceptForSession`, deny → `decline`. Codex
//! has no field for a deny message: the model is only told "rejected by user"; the message
//! stays in the daemon's log. `serverRequest/resolved` of a request still unanswered is a
//! withdrawal (an interrupt: it comes after `turn/completed`); of an answered one, nothing.
//!
//! Text: `item/agentMessage/delta` → `TextDelta`; the completed `agentMessage` adds only what
//! the deltas did not say (a `Text` when nothing was streamed or the stream diverged), so the
//! transcript holds each message once. Token usage: `thread/tokenUsage/updated` carries the
//! thread's cumulative `total`; we report the difference to the previous one (no dollars:
//! Codex reports none). Updates for turns of an earlier process (the replay after
//! `thread/resume`) only move the baseline, so a resumed session is not counted twice.
//!
//! Items: `commandExecution` → tool `shell` started / updated (`outputDelta`) / finished (its
//! aggregated output; ok when `completed` with exit code 0); `fileChange` → tool `apply_patch`
//! finished with a unified diff built from its changes (only when applied); `reasoning` →
//! `Thinking` when completed (its deltas add nothing); `userMessage` → nothing (the daemon
//! logged the prompt). Tool items a turn leaves open (an interrupt never completes the pending
//! one) finish as failed with the turn's status, so no tool stays running in the transcript.
//! An interrupt stops the running turn only: prompts queued behind it still run. At most
//! [`AGENT_COMMAND_QUEUE`] prompts wait; more are dropped with an error.
//!
//! Everything else Codex says (`warning`, `configWarning`, `thread/status/changed`,
//! `account/rateLimits/updated`, `turn/diff/updated`, other item types …) is opaque. Server
//! requests other than the two approvals (user input, MCP elicitations, permissions …) are
//! answered with a JSON-RPC error, so Codex does not wait for ever, and kept opaque.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use muxagent_proto::app::{ApprovalKind, Decision, EventKind, Usage};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};

use super::asks::OpenAsks;
use super::lines::{self, Effects, LineProtocol};
use super::preview::{self, Counts, NO_FILE, Side, text_at};
use super::{AgentIo, Ask, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};
use crate::limits::AGENT_COMMAND_QUEUE;

/// Codex.
pub struct CodexRuntime;

/// Approval policies `SetMode` accepts (`AskForApproval` in the schema, without `granular`).
const MODES: [&str; 3] = ["untrusted", "on-request", "never"];
/// Everything asks, as the fixtures were recorded.
const DEFAULT_MODE: &str = "untrusted";
/// See the module docs.
const SANDBOX: &str = "danger-full-access";
/// JSON-RPC "method not found", for server requests we do not handle.
const METHOD_NOT_FOUND: i64 = -32601;

impl Runtime for CodexRuntime {
    fn name(&self) -> &'static str {
        "codex"
    }

    /// `codex app-server` and the extra arguments; the prompt arrives as a command.
    fn command_line(&self, spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        let mut argv = vec![super::program("codex", "codex"), "app-server".into()];
        argv.extend(spec.args.iter().cloned());
        Ok(argv)
    }

    fn modes(&self) -> &'static [&'static str] {
        &MODES
    }

    fn program(&self) -> Option<String> {
        Some(super::program("codex", "codex"))
    }

    fn run(
        self: Box<Self>,
        spec: Spec,
        io: AgentIo,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>> {
        Box::pin(lines::drive(Codex::default(), spec, io, commands, reports))
    }
}

/// What one of our requests was, to read its response.
#[derive(Debug)]
enum Request {
    Initialize,
    Thread,
    Turn,
    Interrupt,
}

/// Where the conversation is.
#[derive(Debug, Default)]
enum Thread {
    /// Before the thread exists.
    #[default]
    Starting,
    Ready(String),
    /// The handshake failed: prompts cannot run.
    Failed,
}

/// Where the current turn is.
#[derive(Debug, Default)]
enum Turn {
    #[default]
    Idle,
    /// `turn/start` sent, its id not known yet.
    Starting,
    Running(String),
}

/// A tool item that started and has not completed.
#[derive(Debug)]
struct OpenTool {
    id: String,
    /// A file change's `changes`, which its approval request does not repeat.
    changes: Option<Value>,
}

/// Token counts of the thread so far, as Codex reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Tokens {
    input: u64,
    output: u64,
    cached: u64,
}

/// The sans-IO Codex protocol.
#[derive(Debug, Default)]
pub struct Codex {
    cwd: PathBuf,
    resume: Option<String>,
    /// The approval policy for the next turn.
    mode: String,
    /// The approval policy the thread has.
    thread_mode: String,
    next_id: u64,
    requests: HashMap<u64, Request>,
    thread: Thread,
    turn: Turn,
    /// The turn before the current one (late usage updates belong to it).
    last_turn: Option<String>,
    interrupt_pending: bool,
    prompts: VecDeque<String>,
    /// Asks not answered yet: `agent_request` → the JSON-RPC id to answer.
    asks: OpenAsks<Value>,
    tools: Vec<OpenTool>,
    /// Agent message id → the text its deltas gave so far.
    streamed: HashMap<String, String>,
    tokens: Tokens,
}

/// A message was mapped (`Ok(true)`), is to be kept opaque (`Ok(false)`), or lacked the named
/// field a mapped message needs (`Err`).
type Handled = Result<bool, &'static str>;

/// How `agent_request` names a JSON-RPC id: `0` → `"0"`, `"a"` → `"a"`.
fn request_key(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn opaque(line: &str) -> EventKind {
    super::opaque("codex", line)
}

fn error_message(error: &Value) -> String {
    text_at(error, "/message")
        .map(String::from)
        .unwrap_or_else(|| error.to_string())
}

impl Codex {
    fn request(&mut self, method: &str, params: Value, kind: Request, out: &mut Effects) {
        self.next_id += 1;
        self.requests.insert(self.next_id, kind);
        let message =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        out.send(message.to_string());
    }

    fn on_response(&mut self, id: &Value, message: &Value, out: &mut Effects) -> Handled {
        let Some(request) = id.as_u64().and_then(|id| self.requests.remove(&id)) else {
            return Ok(false);
        };
        if let Some(error) = message.get("error") {
            self.failed(request, &error_message(error), out);
            return Ok(true);
        }
        let result = message.get("result").unwrap_or(&Value::Null);
        match request {
            Request::Initialize => {
                out.send(json!({"jsonrpc": "2.0", "method": "initialized"}).to_string());
                let mut params = json!({"approvalPolicy": self.mode, "sandbox": SANDBOX});
                let method = match &self.resume {
                    Some(thread) => {
                        params["threadId"] = json!(thread);
                        "thread/resume"
                    }
                    None => {
                        params["cwd"] = json!(self.cwd.to_string_lossy());
                        "thread/start"
                    }
                };
                self.thread_mode = self.mode.clone();
                self.request(method, params, Request::Thread, out);
            }
            Request::Thread => {
                let Some(thread) = text_at(result, "/thread/id") else {
                    self.failed(Request::Thread, "its answer has no thread id", out);
                    return Ok(true);
                };
                out.report(Report::AgentSession(thread.into()));
                self.thread = Thread::Ready(thread.into());
                self.next_prompt(out);
            }
            Request::Turn => match text_at(result, "/turn/id") {
                Some(turn) => self.turn_began(turn, out),
                None => self.failed(Request::Turn, "its answer has no turn id", out),
            },
            Request::Interrupt => {}
        }
        Ok(true)
    }

    /// One of our requests failed.
    fn failed(&mut self, request: Request, message: &str, out: &mut Effects) {
        let what = match request {
            Request::Initialize | Request::Thread => "start",
            Request::Turn => "start a turn",
            Request::Interrupt => "interrupt the turn",
        };
        out.event(EventKind::Error {
            message: format!("codex could not {what}: {message}"),
        });
        match request {
            Request::Initialize | Request::Thread => {
                self.thread = Thread::Failed;
                if !self.prompts.is_empty() {
                    self.prompts.clear();
                    // The daemon marked the session running for those prompts.
                    out.event(EventKind::TurnFinished {
                        reason: "failed".into(),
                    });
                }
            }
            Request::Turn => {
                self.turn = Turn::Idle;
                self.interrupt_pending = false;
                out.event(EventKind::TurnFinished {
                    reason: "failed".into(),
                });
                self.next_prompt(out);
            }
            Request::Interrupt => {}
        }
    }

    /// Start the next queued prompt's turn, if the thread is free.
    fn next_prompt(&mut self, out: &mut Effects) {
        let (Turn::Idle, Thread::Ready(thread)) = (&self.turn, &self.thread) else {
            return;
        };
        let Some(text) = self.prompts.pop_front() else {
            return;
        };
        let mut params = json!({"threadId": thread, "input": [{"type": "text", "text": text}]});
        if self.mode != self.thread_mode {
            params["approvalPolicy"] = json!(self.mode);
            self.thread_mode = self.mode.clone();
        }
        self.turn = Turn::Starting;
        self.request("turn/start", params, Request::Turn, out);
    }

    fn turn_began(&mut self, turn: &str, out: &mut Effects) {
        self.turn = Turn::Running(turn.into());
        if std::mem::take(&mut self.interrupt_pending) {
            self.interrupt(out);
        }
    }

    fn interrupt(&mut self, out: &mut Effects) {
        match (&self.turn, &self.thread) {
            (Turn::Running(turn), Thread::Ready(thread)) => {
                let params = json!({"threadId": thread, "turnId": turn});
                self.request("turn/interrupt", params, Request::Interrupt, out);
            }
            (Turn::Starting, _) => self.interrupt_pending = true,
            // Nothing runs; queued prompts stay (each was sent on purpose).
            _ => {}
        }
    }

    fn on_server_request(
        &mut self,
        method: &str,
        id: &Value,
        params: &Value,
        out: &mut Effects,
    ) -> Handled {
        let (tool, input) = match method {
            "item/commandExecution/requestApproval" => {
                let mut input = json!({
                    "command": params.get("command").unwrap_or(&Value::Null),
                    "cwd": params.get("cwd").unwrap_or(&Value::Null),
                });
                if let Some(reason) = params.get("reason").filter(|reason| reason.is_string()) {
                    input["reason"] = reason.clone();
                }
                ("shell", input)
            }
            "item/fileChange/requestApproval" => {
                let item = text_at(params, "/itemId").ok_or("itemId")?;
                let changes = self
                    .tools
                    .iter()
                    .find(|tool| tool.id == item)
                    .and_then(|tool| tool.changes.clone());
                let mut input = json!({"changes": changes});
                for field in ["reason", "grantRoot"] {
                    if let Some(value) = params.get(field).filter(|value| value.is_string()) {
                        input[field] = value.clone();
                    }
                }
                ("apply_patch", input)
            }
            _ => {
                // Answer, or Codex waits for ever.
                let error = json!({"code": METHOD_NOT_FOUND, "message": format!("muxagent does not handle {method}")});
                out.send(json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string());
                return Ok(false);
            }
        };
        let agent_request = request_key(id);
        if let Err(refused) = self.asks.insert(agent_request.clone(), id.clone()) {
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"decision": "decline"}});
            out.send(answer.to_string());
            out.event(EventKind::Error {
                message: format!(
                    "codex's approval request {agent_request} was declined: {}",
                    refused.reason
                ),
            });
            return Ok(true);
        }
        out.report(Report::Ask(Ask {
            agent_request,
            kind: ApprovalKind::Tool,
            tool: tool.into(),
            input: input.to_string(),
            plan: None,
        }));
        Ok(true)
    }

    fn on_notification(&mut self, method: &str, params: &Value, out: &mut Effects) -> Handled {
        match method {
            // The answer to `thread/start` said it first.
            "thread/started" => {}
            "turn/started" => {
                let turn = text_at(params, "/turn/id").ok_or("turn.id")?;
                if !matches!(&self.turn, Turn::Running(running) if running == turn) {
                    self.turn_began(turn, out);
                }
            }
            "turn/completed" => self.turn_completed(params, out)?,
            "item/started" => return self.item_started(params, out),
            "item/completed" => return self.item_completed(params, out),
            "item/agentMessage/delta" => {
                let delta = text_at(params, "/delta").ok_or("delta")?;
                let item = text_at(params, "/itemId").unwrap_or_default();
                self.streamed
                    .entry(item.into())
                    .or_default()
                    .push_str(delta);
                out.event(EventKind::TextDelta { text: delta.into() });
            }
            // The completed reasoning item carries the whole text.
            "item/reasoning/summaryTextDelta"
            | "item/reasoning/summaryPartAdded"
            | "item/reasoning/textDelta" => {}
            "item/commandExecution/outputDelta" | "item/fileChange/outputDelta" => {
                out.event(EventKind::ToolUpdated {
                    tool_call: text_at(params, "/itemId").ok_or("itemId")?.into(),
                    detail: text_at(params, "/delta").ok_or("delta")?.into(),
                });
            }
            "thread/tokenUsage/updated" => self.usage(params, out)?,
            "serverRequest/resolved" => {
                let id = params.get("requestId").ok_or("requestId")?;
                let agent_request = request_key(id);
                if self.asks.remove(&agent_request).is_some() {
                    out.report(Report::Withdrawn { agent_request });
                }
            }
            "error" => {
                let mut message = text_at(params, "/error/message")
                    .ok_or("error.message")?
                    .to_string();
                if params.get("willRetry") == Some(&Value::Bool(true)) {
                    message.push_str(" (retrying)");
                }
                out.event(EventKind::Error { message });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn turn_completed(&mut self, params: &Value, out: &mut Effects) -> Result<(), &'static str> {
        let status = text_at(params, "/turn/status").ok_or("turn.status")?;
        // An interrupted turn never completes its pending items: close them for the transcript.
        for tool in std::mem::take(&mut self.tools) {
            out.event(EventKind::ToolFinished {
                tool_call: tool.id,
                ok: false,
                output: status.into(),
                diff: None,
            });
        }
        let reason = match text_at(params, "/turn/error/message") {
            Some(message) => format!("{status}: {message}"),
            None => status.into(),
        };
        out.event(EventKind::TurnFinished { reason });
        if let Turn::Running(turn) = std::mem::take(&mut self.turn) {
            self.last_turn = Some(turn);
        }
        self.interrupt_pending = false;
        self.streamed.clear();
        self.next_prompt(out);
        Ok(())
    }

    fn item_started(&mut self, params: &Value, out: &mut Effects) -> Handled {
        let item = params.get("item").ok_or("item")?;
        let id = text_at(item, "/id").ok_or("item.id")?;
        let (name, input, changes) = match text_at(item, "/type") {
            Some("userMessage" | "agentMessage" | "reasoning") => return Ok(true),
            Some("commandExecution") => ("shell", command_input(item), None),
            Some("fileChange") => {
                let changes = item.get("changes").cloned().unwrap_or(Value::Null);
                ("apply_patch", json!({"changes": changes}), Some(changes))
            }
            _ => return Ok(false),
        };
        self.tools.push(OpenTool {
            id: id.into(),
            changes,
        });
        out.event(EventKind::ToolStarted {
            tool_call: id.into(),
            name: name.into(),
            input: input.to_string(),
        });
        Ok(true)
    }

    fn item_completed(&mut self, params: &Value, out: &mut Effects) -> Handled {
        let item = params.get("item").ok_or("item")?;
        let id = text_at(item, "/id").ok_or("item.id")?;
        match text_at(item, "/type") {
            Some("userMessage") => {}
            Some("agentMessage") => {
                let text = text_at(item, "/text").ok_or("item.text")?;
                let streamed = self.streamed.remove(id).unwrap_or_default();
                if streamed.is_empty() {
                    if !text.is_empty() {
                        out.event(EventKind::Text { text: text.into() });
                    }
                } else if let Some(rest) = text.strip_prefix(streamed.as_str()) {
                    if !rest.is_empty() {
                        out.event(EventKind::TextDelta { text: rest.into() });
                    }
                } else {
                    out.event(EventKind::Text { text: text.into() });
                }
            }
            Some("reasoning") => {
                let join = |field: &str| {
                    let parts = item.get(field).and_then(Value::as_array);
                    let parts = parts.into_iter().flatten().filter_map(Value::as_str);
                    parts.collect::<Vec<_>>().join("\n")
                };
                let mut text = join("summary");
                if text.is_empty() {
                    text = join("content");
                }
                if !text.is_empty() {
                    out.event(EventKind::Thinking { text });
                }
            }
            Some("commandExecution") => {
                self.close_tool(id);
                let status = text_at(item, "/status").ok_or("item.status")?;
                let exit = item.get("exitCode").and_then(Value::as_i64);
                let ok = status == "completed" && exit.is_none_or(|code| code == 0);
                let output = match text_at(item, "/aggregatedOutput") {
                    Some(output) if !output.is_empty() => output.into(),
                    _ if ok => String::new(),
                    _ => match exit {
                        Some(code) if code != 0 => format!("exit code {code}"),
                        _ => status.into(),
                    },
                };
                out.event(EventKind::ToolFinished {
                    tool_call: id.into(),
                    ok,
                    output,
                    diff: None,
                });
            }
            Some("fileChange") => {
                let remembered = self.close_tool(id);
                let status = text_at(item, "/status").ok_or("item.status")?;
                let ok = status == "completed";
                let changes = item.get("changes").or(remembered.as_ref());
                // A declined or failed change did not happen: no diff to show as done.
                let diff = changes
                    .filter(|_| ok)
                    .and_then(|c| unified_diff(c, &self.cwd));
                out.event(EventKind::ToolFinished {
                    tool_call: id.into(),
                    ok,
                    output: if ok { String::new() } else { status.into() },
                    diff,
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Forget an open tool item; its remembered changes.
    fn close_tool(&mut self, id: &str) -> Option<Value> {
        let index = self.tools.iter().position(|tool| tool.id == id)?;
        self.tools.remove(index).changes
    }

    fn usage(&mut self, params: &Value, out: &mut Effects) -> Result<(), &'static str> {
        let total = params
            .pointer("/tokenUsage/total")
            .ok_or("tokenUsage.total")?;
        let count = |field: &'static str| total.get(field).and_then(Value::as_u64).ok_or(field);
        let tokens = Tokens {
            input: count("inputTokens")?,
            output: count("outputTokens")?,
            cached: count("cachedInputTokens")?,
        };
        let ours = match text_at(params, "/turnId") {
            Some(turn) => {
                matches!(&self.turn, Turn::Running(running) if running == turn)
                    || self.last_turn.as_deref() == Some(turn)
            }
            None => true,
        };
        let before = std::mem::replace(&mut self.tokens, tokens);
        let delta = Usage {
            input_tokens: tokens.input.saturating_sub(before.input),
            output_tokens: tokens.output.saturating_sub(before.output),
            cached_tokens: tokens.cached.saturating_sub(before.cached),
            cost_usd_micros: None,
        };
        if ours && delta != Usage::default() {
            out.report(Report::TurnUsage(delta));
        }
        Ok(())
    }
}

/// A command's input as the transcript shows it.
fn command_input(item: &Value) -> Value {
    json!({
        "command": item.get("command").unwrap_or(&Value::Null),
        "cwd": item.get("cwd").unwrap_or(&Value::Null),
    })
}

/// A unified diff of Codex's `changes`: an added or deleted file's `diff` is its content, an
/// update's is the hunks without the file header. Paths under `cwd` become relative.
fn unified_diff(changes: &Value, cwd: &Path) -> Option<String> {
    let mut diff = String::new();
    for change in changes.as_array()? {
        let path = text_at(change, "/path")?;
        let text = text_at(change, "/diff").unwrap_or_default();
        let name = |prefix: &str, path: &str| match Path::new(path).strip_prefix(cwd) {
            Ok(relative) => format!("{prefix}{}", relative.display()),
            Err(_) => path.into(),
        };
        match text_at(change, "/kind/type") {
            Some("add") => {
                preview::header(&mut diff, NO_FILE, &name("b/", path));
                preview::whole_file(&mut diff, Side::Added, Counts::Git, text);
            }
            Some("delete") => {
                preview::header(&mut diff, &name("a/", path), NO_FILE);
                preview::whole_file(&mut diff, Side::Deleted, Counts::Git, text);
            }
            _ => {
                if !text.starts_with("--- ") && !text.starts_with("diff ") {
                    let to = text_at(change, "/kind/move_path").unwrap_or(path);
                    preview::header(&mut diff, &name("a/", path), &name("b/", to));
                }
                diff.push_str(text);
                if !text.ends_with('\n') {
                    diff.push('\n');
                }
            }
        }
    }
    (!diff.is_empty()).then_some(diff)
}

impl LineProtocol for Codex {
    fn start(&mut self, spec: &Spec, out: &mut Effects) {
        self.cwd = spec.cwd.clone();
        self.resume = spec.resume.clone();
        // The daemon checked the mode against `modes()`.
        self.mode = spec
            .mode
            .clone()
            .filter(|mode| MODES.contains(&mode.as_str()))
            .unwrap_or_else(|| DEFAULT_MODE.into());
        let client =
            json!({"name": "muxagent", "title": "muxagent", "version": env!("CARGO_PKG_VERSION")});
        self.request(
            "initialize",
            json!({"clientInfo": client}),
            Request::Initialize,
            out,
        );
    }

    fn on_line(&mut self, line: &str, out: &mut Effects) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            out.event(opaque(line));
            return;
        };
        let method = text_at(&message, "/method");
        let params = message.get("params").unwrap_or(&Value::Null);
        let handled = match (method, message.get("id")) {
            (Some(method), Some(id)) => self.on_server_request(method, id, params, out),
            (Some(method), None) => self.on_notification(method, params, out),
            (None, Some(id)) => self.on_response(id, &message, out),
            (None, None) => Ok(false),
        };
        match handled {
            Ok(true) => {}
            Ok(false) => out.event(opaque(line)),
            Err(field) => out.event(EventKind::Error {
                message: format!("codex sent a message without {field}: {line}"),
            }),
        }
    }

    fn on_command(&mut self, command: Command, out: &mut Effects) {
        match command {
            Command::Prompt(text) => {
                if matches!(self.thread, Thread::Failed) {
                    out.event(EventKind::Error {
                        message: "codex has no thread to take the prompt".into(),
                    });
                    out.event(EventKind::TurnFinished {
                        reason: "failed".into(),
                    });
                } else if self.prompts.len() >= AGENT_COMMAND_QUEUE {
                    out.event(EventKind::Error {
                        message: format!(
                            "prompt dropped: {AGENT_COMMAND_QUEUE} prompts already wait for codex"
                        ),
                    });
                } else {
                    self.prompts.push_back(text);
                    self.next_prompt(out);
                }
            }
            Command::Answer {
                agent_request,
                decision,
            } => {
                let Some(id) = self.asks.remove(&agent_request) else {
                    out.event(EventKind::Error {
                        message: format!("codex has no pending request {agent_request}"),
                    });
                    return;
                };
                let decision = match decision {
                    Decision::AllowOnce => "accept",
                    Decision::AllowAlways => "acceptForSession",
                    // Codex takes no message (module docs).
                    Decision::Deny { .. } => "decline",
                };
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"decision": decision}});
                out.send(answer.to_string());
                out.report(Report::Applied { agent_request });
            }
            Command::Interrupt => self.interrupt(out),
            Command::SetMode(mode) => {
                if MODES.contains(&mode.as_str()) {
                    self.mode = mode;
                } else {
                    out.event(EventKind::Error {
                        message: format!("codex has no mode {mode}"),
                    });
                }
            }
        }
    }

    fn on_end(&mut self, out: &mut Effects) {
        for (agent_request, _) in self.asks.take_all() {
            out.report(Report::Withdrawn { agent_request });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One recorded line: `in` (we wrote it), `out` (Codex printed it) or `meta`.
    struct Record {
        dir: String,
        line: String,
    }

    fn fixture(name: &str) -> Vec<Record> {
        let path = format!(
            "{}/agents/fixtures/codex/{name}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        text.lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).expect("fixture line");
                Record {
                    dir: record["dir"].as_str().expect("dir").into(),
                    line: record["line"].as_str().expect("line").into(),
                }
            })
            .collect()
    }

    fn spec() -> Spec {
        Spec {
            cwd: "{{CWD}}".into(),
            ..Spec::default()
        }
    }

    /// The protocol, with what it wrote not yet matched and every report so far.
    struct Harness {
        codex: Codex,
        written: VecDeque<String>,
        reports: Vec<Report>,
    }

    impl Harness {
        fn start(spec: &Spec) -> Self {
            let mut harness = Harness {
                codex: Codex::default(),
                written: VecDeque::new(),
                reports: Vec::new(),
            };
            let mut out = Effects::default();
            harness.codex.start(spec, &mut out);
            harness.take(out);
            harness
        }

        fn take(&mut self, out: Effects) {
            self.written.extend(out.to_agent);
            self.reports.extend(out.reports);
        }

        fn line(&mut self, line: &str) {
            let mut out = Effects::default();
            self.codex.on_line(line, &mut out);
            self.take(out);
        }

        fn command(&mut self, command: Command) {
            let mut out = Effects::default();
            self.codex.on_command(command, &mut out);
            self.take(out);
        }

        fn end(&mut self) {
            let mut out = Effects::default();
            self.codex.on_end(&mut out);
            self.take(out);
        }

        fn written(&mut self) -> Value {
            let line = self.written.pop_front().expect("a line for codex");
            serde_json::from_str(&line).expect("our line is JSON")
        }
    }

    /// Replay a fixture: feed the `out` lines, and at each `in` line check that the protocol
    /// wrote the same message (giving it the command that made the recorder write it, unless
    /// `early`, where every prompt was given at the start and must have waited in the queue).
    /// Returns the reports, and checks Applied comes right after each answer.
    fn replay(name: &str, early: bool) -> Vec<Report> {
        let records = fixture(name);
        let mut spec = spec();
        let mut harness = Harness::start(&spec);
        let mut all = Vec::new();
        // The recorder's request ids → ours (they differ where it sent unknown methods).
        let mut ids: HashMap<u64, u64> = HashMap::new();
        let prompts = |from: usize| -> Vec<String> {
            records[from..]
                .iter()
                .take_while(|record| record.dir != "meta")
                .filter_map(|record| {
                    let message: Value = serde_json::from_str(&record.line).ok()?;
                    (message["method"] == "turn/start").then(|| {
                        message["params"]["input"][0]["text"]
                            .as_str()
                            .map(String::from)
                    })?
                })
                .collect()
        };
        if early {
            for prompt in prompts(0) {
                harness.command(Command::Prompt(prompt));
            }
        }
        for (index, record) in records.iter().enumerate() {
            match record.dir.as_str() {
                "meta" => {
                    // A new process resumes the thread.
                    harness.end();
                    assert!(
                        harness.written.is_empty(),
                        "{name}: unsent {:?}",
                        harness.written
                    );
                    all.append(&mut harness.reports);
                    let thread = record.line.rsplit(' ').next().expect("thread id");
                    spec.resume = Some(thread.into());
                    harness = Harness::start(&spec);
                    ids.clear();
                    if early {
                        for prompt in prompts(index + 1) {
                            harness.command(Command::Prompt(prompt));
                        }
                    }
                }
                "out" => {
                    let mut message: Value = serde_json::from_str(&record.line).expect("out");
                    let response = message.get("method").is_none();
                    match message["id"].as_u64() {
                        Some(id) if response && ids.get(&id) != Some(&id) => {
                            // Not ours: an id we never used.
                            message["id"] = json!(ids.get(&id).copied().unwrap_or(1000 + id));
                            harness.line(&message.to_string());
                        }
                        _ => harness.line(&record.line),
                    }
                }
                "in" => {
                    let mut expected: Value = serde_json::from_str(&record.line).expect("in");
                    let method = expected["method"].as_str().unwrap_or_default();
                    if method.starts_with("no/such/") {
                        continue; // the recorder probing Codex; we never send those
                    }
                    if harness.written.is_empty() {
                        let command = if method == "turn/start" {
                            assert!(
                                !early,
                                "{name}: the queued prompt was not sent: {}",
                                record.line
                            );
                            let text = expected["params"]["input"][0]["text"].as_str();
                            Command::Prompt(text.expect("prompt").into())
                        } else if method == "turn/interrupt" {
                            Command::Interrupt
                        } else if let Some(decision) = expected["result"]["decision"].as_str() {
                            let decision = match decision {
                                "accept" => Decision::AllowOnce,
                                "acceptForSession" => Decision::AllowAlways,
                                "decline" | "cancel" => Decision::Deny {
                                    message: "not now".into(),
                                },
                                other => panic!("{name}: decision {other}"),
                            };
                            Command::Answer {
                                agent_request: request_key(&expected["id"]),
                                decision,
                            }
                        } else {
                            panic!("{name}: we did not write {}", record.line);
                        };
                        let answer = matches!(command, Command::Answer { .. });
                        harness.command(command);
                        if answer {
                            let applied = Report::Applied {
                                agent_request: request_key(&expected["id"]),
                            };
                            assert_eq!(harness.reports.last(), Some(&applied), "{name}");
                        }
                    }
                    let written = harness.written();
                    if expected["result"]["decision"] == "cancel" {
                        // muxagent's deny is `decline`; a cancel is a deny plus an interrupt.
                        expected["result"]["decision"] = json!("decline");
                    }
                    if let (Some(theirs), Some(ours), true) = (
                        expected["id"].as_u64(),
                        written["id"].as_u64(),
                        expected.get("method").is_some(),
                    ) {
                        ids.insert(theirs, ours);
                        expected["id"] = json!(ours);
                    }
                    assert_eq!(written, expected, "{name}: line {index}");
                }
                other => panic!("{name}: dir {other}"),
            }
        }
        harness.end();
        assert!(
            harness.written.is_empty(),
            "{name}: unsent {:?}",
            harness.written
        );
        all.append(&mut harness.reports);
        all
    }

    /// A report in a line, for comparing whole sequences.
    fn summary(report: &Report) -> String {
        match report {
            Report::Event(EventKind::Text { text }) => format!("text {text}"),
            Report::Event(EventKind::TextDelta { text }) => format!("delta {text}"),
            Report::Event(EventKind::Thinking { text }) => format!("thinking {text}"),
            Report::Event(EventKind::ToolStarted {
                tool_call,
                name,
                input,
            }) => format!("tool {tool_call} {name} {input}"),
            Report::Event(EventKind::ToolUpdated { tool_call, detail }) => {
                format!("update {tool_call} {detail}")
            }
            Report::Event(EventKind::ToolFinished {
                tool_call,
                ok,
                output,
                diff,
            }) => format!(
                "finished {tool_call} ok={ok} {output:?} diff={}",
                diff.is_some()
            ),
            Report::Event(EventKind::TurnFinished { reason }) => format!("turn {reason}"),
            Report::Event(EventKind::Error { message }) => format!("error {message}"),
            Report::Event(EventKind::Opaque { source, raw }) => {
                assert_eq!(source.as_str(), "codex");
                let message: Value = serde_json::from_str(raw).unwrap_or_default();
                match message["method"].as_str() {
                    Some(method) => format!("opaque {method}"),
                    None => format!("opaque {raw}"),
                }
            }
            Report::Event(other) => panic!("a runtime does not send {other:?}"),
            Report::Ask(ask) => {
                assert_eq!(ask.kind, ApprovalKind::Tool);
                assert_eq!(ask.plan, None);
                format!("ask {} {} {}", ask.agent_request, ask.tool, ask.input)
            }
            Report::Withdrawn { agent_request } => format!("withdrawn {agent_request}"),
            Report::Applied { agent_request } => format!("applied {agent_request}"),
            Report::TurnUsage(usage) => {
                assert_eq!(usage.cost_usd_micros, None);
                format!(
                    "usage {}/{}/{}",
                    usage.input_tokens, usage.output_tokens, usage.cached_tokens
                )
            }
            Report::AgentSession(id) => format!("session {id}"),
        }
    }

    /// Replay with prompts given as the recorder gave them and all at once at the start: the
    /// lines and reports must be the same. Returns the summaries.
    fn check(name: &str) -> Vec<String> {
        let reports = replay(name, false);
        assert_eq!(reports, replay(name, true), "{name}: queued prompts");
        reports.iter().map(summary).collect()
    }

    const SHELL: &str = r#"{"command":"/bin/bash -lc 'touch approved.txt'","cwd":"{{CWD}}"}"#;

    #[test]
    fn approve() {
        let thread = "01a20d27-0c9c-7c80-a4ff-6f5de09fdd9d";
        let final_text = "the tool returned: Chunk ID: a07405 Wall time: 0.0000 seconds Process exited with code 0 Original token count: 0 Output:";
        let expected = vec![
            "opaque configWarning".to_string(),
            "opaque remoteControl/status/changed".into(),
            format!("session {thread}"),
            "opaque warning".into(),
            "opaque thread/status/changed".into(),
            "opaque thread/status/changed".into(),
            format!("tool call_mock000003 shell {SHELL}"),
            format!("ask 0 shell {SHELL}"),
            "applied 0".into(),
            "opaque thread/status/changed".into(),
            r#"finished call_mock000003 ok=true "" diff=false"#.into(),
            "usage 5290/7/0".into(),
            "opaque account/rateLimits/updated".into(),
            "delta MOCK-FINAL: ".into(),
            format!("delta {final_text}"),
            "usage 5393/33/0".into(),
            "opaque account/rateLimits/updated".into(),
            "opaque thread/status/changed".into(),
            "turn completed".into(),
        ];
        assert_eq!(check("approve"), expected);
    }

    #[test]
    fn deny() {
        let summaries = check("deny");
        let ask = summaries.iter().position(|s| s.starts_with("ask 0 shell"));
        let ask = ask.expect("ask");
        assert_eq!(summaries[ask + 1], "applied 0");
        assert!(
            summaries
                .contains(&r#"finished call_mock000003 ok=false "declined" diff=false"#.into())
        );
        assert_eq!(summaries.last().map(String::as_str), Some("turn completed"));
        assert!(!summaries.iter().any(|s| s.starts_with("withdrawn")));
    }

    #[test]
    fn allow_always() {
        let summaries = check("allow_always");
        let asks = summaries.iter().filter(|s| s.starts_with("ask ")).count();
        assert_eq!(asks, 1);
        let turns: Vec<_> = summaries
            .iter()
            .filter(|s| s.starts_with("turn "))
            .collect();
        assert_eq!(turns, ["turn completed", "turn completed"]);
        // The second command ran without asking.
        assert!(summaries.contains(&r#"finished call_mock000008 ok=true "" diff=false"#.into()));
    }

    #[test]
    fn cancel() {
        let summaries = check("cancel");
        let tail: Vec<_> = summaries
            .iter()
            .skip_while(|s| !s.starts_with("ask "))
            .map(String::as_str)
            .collect();
        let expected = [
            r#"ask 0 shell {"command":"/bin/bash -lc 'touch cancelled.txt'","cwd":"{{CWD}}"}"#,
            "applied 0",
            r#"finished call_mock000003 ok=false "declined" diff=false"#,
            "opaque thread/status/changed",
            "usage 5290/7/0",
            "opaque account/rateLimits/updated",
            "opaque thread/status/changed",
            "turn interrupted",
        ];
        assert_eq!(tail, expected);
    }

    #[test]
    fn interrupt_withdraws_the_pending_ask() {
        let summaries = check("interrupt");
        let tail: Vec<_> = summaries
            .iter()
            .skip_while(|s| !s.starts_with("ask "))
            .map(String::as_str)
            .collect();
        let expected = [
            r#"ask 0 shell {"command":"/bin/bash -lc 'touch interrupted.txt'","cwd":"{{CWD}}"}"#,
            "usage 5292/8/0",
            "opaque account/rateLimits/updated",
            "opaque thread/status/changed",
            // Codex never completes the pending item.
            r#"finished call_mock000003 ok=false "interrupted" diff=false"#,
            "turn interrupted",
            "withdrawn 0",
            "opaque warning",
            "opaque thread/status/changed",
            "delta MOCK: ",
            "delta hello from the mock model.",
            // Cumulative 10803/16 minus 5292/8.
            "usage 5511/8/0",
            "opaque account/rateLimits/updated",
            "opaque thread/status/changed",
            "turn completed",
        ];
        assert_eq!(tail, expected);
    }

    #[test]
    fn file_change() {
        let reports = replay("file_change", false);
        let summaries: Vec<_> = reports.iter().map(summary).collect();
        // The agent's own key order (serde_json keeps it: `preserve_order`).
        let input = r#"{"changes":[{"path":"{{CWD}}/notes.txt","kind":{"type":"add"},"diff":"hello from apply_patch\n"}]}"#;
        let start = summaries.iter().position(|s| s.starts_with("tool "));
        let tail: Vec<_> = summaries[start.expect("tool")..]
            .iter()
            .take(6)
            .map(String::as_str)
            .collect();
        let expected = [
            format!("tool call_mock000003 apply_patch {input}"),
            "opaque thread/status/changed".into(),
            format!("ask 0 apply_patch {input}"),
            "applied 0".into(),
            "opaque thread/status/changed".into(),
            r#"finished call_mock000003 ok=true "" diff=true"#.into(),
        ];
        assert_eq!(tail, expected);
        // Our diff is Codex's own turn diff without git's extended header.
        let diff = reports.iter().find_map(|report| match report {
            Report::Event(EventKind::ToolFinished { diff, .. }) => diff.clone(),
            _ => None,
        });
        let ours = "--- /dev/null\n+++ b/notes.txt\n@@ -0,0 +1 @@\n+hello from apply_patch\n";
        assert_eq!(diff.as_deref(), Some(ours));
        let turn_diff = fixture("file_change").iter().find_map(|record| {
            let message: Value = serde_json::from_str(&record.line).ok()?;
            (message["method"] == "turn/diff/updated")
                .then(|| message["params"]["diff"].as_str().map(String::from))?
        });
        assert!(turn_diff.expect("turn diff").ends_with(ours));
        assert_eq!(check("file_change"), summaries);
        assert!(summaries.contains(&"opaque turn/diff/updated".to_string()));
    }

    #[test]
    fn file_change_deny() {
        let summaries = check("file_change_deny");
        let input = r#"{"changes":[{"path":"{{CWD}}/notes.txt","kind":{"type":"add"},"diff":"should not exist\n"}]}"#;
        assert!(summaries.contains(&format!("ask 0 apply_patch {input}")));
        assert!(
            summaries
                .contains(&r#"finished call_mock000003 ok=false "declined" diff=false"#.into())
        );
    }

    #[test]
    fn resume_continues_the_thread_without_counting_its_tokens_twice() {
        let summaries = check("resume");
        let thread = "01a20d27-294a-7561-96bc-c4dda9f22b6c";
        let sessions: Vec<_> = summaries
            .iter()
            .filter(|s| s.starts_with("session "))
            .collect();
        assert_eq!(
            sessions,
            [&format!("session {thread}"), &format!("session {thread}")]
        );
        let usage: Vec<_> = summaries
            .iter()
            .filter(|s| s.starts_with("usage "))
            .collect();
        // First process: 5286/8; the resumed one replays that total, then adds its turn.
        let records = fixture("resume");
        let last_total = records.iter().rev().find_map(|record| {
            let message: Value = serde_json::from_str(&record.line).ok()?;
            (message["method"] == "thread/tokenUsage/updated")
                .then(|| message["params"]["tokenUsage"]["total"]["inputTokens"].as_u64())?
        });
        assert_eq!(usage.len(), 2, "{summaries:?}");
        assert_eq!(usage[0], "usage 5286/8/0");
        let second: u64 = usage[1]["usage ".len()..]
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("tokens");
        assert_eq!(5286 + second, last_total.expect("total"));
        assert!(summaries.contains(&"opaque deprecationNotice".to_string()));
        assert!(summaries.contains(&"opaque thread/goal/cleared".to_string()));
    }

    #[test]
    fn unknown_messages_stay_opaque() {
        let summaries = check("unknown");
        // The error answering the recorder's `no/such/method` is not an answer to us.
        let unanswered = summaries
            .iter()
            .find(|s| s.starts_with("opaque {\"error\""))
            .expect("opaque error");
        assert!(unanswered.contains("no/such/method"));
        assert!(!summaries.iter().any(|s| s.starts_with("error ")));
        assert_eq!(summaries.last().map(String::as_str), Some("turn completed"));
    }

    /// A started harness whose thread `t1` is ready.
    fn ready(spec: &Spec) -> Harness {
        let mut harness = Harness::start(spec);
        assert_eq!(harness.written()["method"], "initialize");
        harness.line(r#"{"id":1,"result":{}}"#);
        assert_eq!(
            harness.written(),
            json!({"jsonrpc":"2.0","method":"initialized"})
        );
        let thread = harness.written();
        assert_eq!(thread["id"], 2);
        harness.line(r#"{"id":2,"result":{"thread":{"id":"t1"}}}"#);
        harness
    }

    #[test]
    fn handshake_carries_the_mode_and_resume() {
        let mut spec = spec();
        spec.mode = Some("never".into());
        spec.resume = Some("t0".into());
        let mut harness = Harness::start(&spec);
        harness.written();
        harness.line(r#"{"id":1,"result":{}}"#);
        harness.written();
        let expected = json!({"jsonrpc":"2.0","id":2,"method":"thread/resume",
            "params":{"threadId":"t0","approvalPolicy":"never","sandbox":"danger-full-access"}});
        assert_eq!(harness.written(), expected);
    }

    #[test]
    fn set_mode_applies_from_the_next_turn() {
        let mut harness = ready(&spec());
        harness.command(Command::SetMode("on-request".into()));
        harness.command(Command::SetMode("sometimes".into()));
        assert_eq!(
            harness.reports.last().map(summary).as_deref(),
            Some("error codex has no mode sometimes")
        );
        harness.command(Command::Prompt("one".into()));
        let turn = harness.written();
        assert_eq!(turn["params"]["approvalPolicy"], "on-request");
        harness.line(r#"{"id":3,"result":{"turn":{"id":"u1"}}}"#);
        harness.command(Command::Prompt("two".into()));
        assert!(
            harness.written.is_empty(),
            "the second prompt waits for the turn"
        );
        harness.line(
            r#"{"method":"turn/completed","params":{"turn":{"id":"u1","status":"completed"}}}"#,
        );
        let turn = harness.written();
        assert_eq!(turn["params"]["input"][0]["text"], "two");
        assert_eq!(
            turn["params"].get("approvalPolicy"),
            None,
            "the thread has it already"
        );
    }

    #[test]
    fn interrupt_before_the_turn_id_is_known() {
        let mut harness = ready(&spec());
        harness.command(Command::Interrupt); // nothing runs: nothing to do
        assert!(harness.written.is_empty());
        harness.command(Command::Prompt("go".into()));
        harness.written();
        harness.command(Command::Interrupt);
        assert!(harness.written.is_empty());
        harness.line(r#"{"id":3,"result":{"turn":{"id":"u1","status":"inProgress"}}}"#);
        let expected = json!({"jsonrpc":"2.0","id":4,"method":"turn/interrupt",
            "params":{"threadId":"t1","turnId":"u1"}});
        assert_eq!(harness.written(), expected);
    }

    #[test]
    fn failures_are_errors_and_the_session_goes_on() {
        let mut harness = ready(&spec());
        harness.command(Command::Prompt("one".into()));
        harness.command(Command::Prompt("two".into()));
        harness.written();
        harness.line(r#"{"id":3,"error":{"code":-32000,"message":"busy"}}"#);
        let text = harness.written();
        assert_eq!(
            text["params"]["input"][0]["text"], "two",
            "the next prompt runs"
        );
        harness.line("not json");
        harness.line(r#"{"method":"item/agentMessage/delta","params":{}}"#);
        harness.line(
            r#"{"method":"error","params":{"error":{"message":"overloaded"},"willRetry":true}}"#,
        );
        harness.line(r#"{"id":77,"result":{}}"#);
        harness.command(Command::Answer {
            agent_request: "9".into(),
            decision: Decision::AllowOnce,
        });
        let summaries: Vec<_> = harness.reports.iter().map(summary).collect();
        let expected = [
            "session t1",
            "error codex could not start a turn: busy",
            "turn failed",
            "opaque not json",
            r#"error codex sent a message without delta: {"method":"item/agentMessage/delta","params":{}}"#,
            "error overloaded (retrying)",
            r#"opaque {"id":77,"result":{}}"#,
            "error codex has no pending request 9",
        ];
        assert_eq!(summaries, expected);
    }

    #[test]
    fn a_failed_start_fails_the_prompts() {
        let mut harness = Harness::start(&spec());
        harness.command(Command::Prompt("one".into()));
        harness.written();
        harness.line(r#"{"id":1,"error":{"code":-32600,"message":"no"}}"#);
        harness.command(Command::Prompt("two".into()));
        assert!(harness.written.is_empty());
        let summaries: Vec<_> = harness.reports.iter().map(summary).collect();
        let expected = [
            "error codex could not start: no",
            "turn failed",
            "error codex has no thread to take the prompt",
            "turn failed",
        ];
        assert_eq!(summaries, expected);
    }

    #[test]
    fn unknown_server_requests_are_refused() {
        let mut harness = ready(&spec());
        let line = r#"{"method":"item/tool/requestUserInput","id":"r7","params":{}}"#;
        harness.line(line);
        let expected = json!({"jsonrpc":"2.0","id":"r7","error":{"code":-32601,
            "message":"muxagent does not handle item/tool/requestUserInput"}});
        assert_eq!(harness.written(), expected);
        assert_eq!(harness.reports.last(), Some(&Report::Event(opaque(line))));
    }

    #[test]
    fn asks_keep_the_approval_contract() {
        let ask = |method: &str, params: Value| {
            let mut harness = ready(&spec());
            let line = json!({"method": method, "id": 4, "params": params});
            harness.line(&line.to_string());
            harness.reports.iter().find_map(|report| match report {
                Report::Ask(ask) => Some(ask.clone()),
                _ => None,
            })
        };
        let command = "item/commandExecution/requestApproval";
        let base = json!({"command": "ls", "cwd": "/w", "reason": "look"});
        let mut changed = Vec::new();
        for (field, value) in [
            ("command", "rm -rf /"),
            ("cwd", "/"),
            ("reason", "trust me"),
        ] {
            let mut params = base.clone();
            params[field] = value.into();
            changed.push(ask(command, params));
        }
        changed.push(ask(
            "item/fileChange/requestApproval",
            json!({"itemId": "i", "reason": "look"}),
        ));
        let changed: Option<Vec<Ask>> = changed.into_iter().collect();
        let (Some(first), Some(again), Some(changed)) =
            (ask(command, base.clone()), ask(command, base), changed)
        else {
            panic!("every message is an ask");
        };
        crate::daemon::runtime::contract::check(&first, &again, &changed);
    }

    #[test]
    fn an_agent_asking_without_end_is_declined_past_the_cap() {
        use crate::limits::MAX_PENDING_APPROVALS;
        let mut harness = ready(&spec());
        let ask = |id: usize| {
            format!(
                r#"{{"method":"item/commandExecution/requestApproval","id":{id},"params":{{"command":"ls","cwd":"/"}}}}"#
            )
        };
        for id in 0..MAX_PENDING_APPROVALS * 3 {
            harness.line(&ask(id));
            if id >= MAX_PENDING_APPROVALS {
                let expected = json!({"jsonrpc":"2.0","id":id,"result":{"decision":"decline"}});
                assert_eq!(harness.written(), expected);
            }
        }
        // A reused id is declined too.
        harness.line(&ask(0));
        let expected = json!({"jsonrpc":"2.0","id":0,"result":{"decision":"decline"}});
        assert_eq!(harness.written(), expected);
        let summaries: Vec<_> = harness.reports.iter().map(summary).collect();
        let asks = summaries.iter().filter(|s| s.starts_with("ask ")).count();
        let refusals = summaries
            .iter()
            .filter(|s| s.starts_with("error ") && s.contains("already waiting"))
            .count();
        assert_eq!(asks, MAX_PENDING_APPROVALS);
        assert_eq!(refusals, MAX_PENDING_APPROVALS * 2 + 1);
    }

    #[test]
    fn answers_keep_the_id_and_the_end_withdraws_the_rest() {
        let mut harness = ready(&spec());
        for id in ["3", "\"s\""] {
            harness.line(&format!(
                r#"{{"method":"item/commandExecution/requestApproval","id":{id},"params":{{"command":"ls","cwd":"/","reason":"why"}}}}"#
            ));
        }
        harness.command(Command::Answer {
            agent_request: "3".into(),
            decision: Decision::AllowAlways,
        });
        let expected = json!({"jsonrpc":"2.0","id":3,"result":{"decision":"acceptForSession"}});
        assert_eq!(harness.written(), expected);
        // Resolving an answered request says nothing more.
        harness.line(r#"{"method":"serverRequest/resolved","params":{"requestId":3}}"#);
        harness.end();
        let summaries: Vec<_> = harness.reports.iter().map(summary).collect();
        let input = r#"{"command":"ls","cwd":"/","reason":"why"}"#;
        let expected = [
            "session t1".to_string(),
            format!("ask 3 shell {input}"),
            format!("ask s shell {input}"),
            "applied 3".into(),
            "withdrawn s".into(),
        ];
        assert_eq!(summaries, expected);
    }

    #[test]
    fn items_map_to_events() {
        let mut harness = ready(&spec());
        let lines = [
            r#"{"method":"item/completed","params":{"item":{"type":"reasoning","id":"r","summary":["plan","act"],"content":[]}}}"#,
            r#"{"method":"item/completed","params":{"item":{"type":"agentMessage","id":"m","text":"whole"}}}"#,
            r#"{"method":"item/agentMessage/delta","params":{"itemId":"n","delta":"par"}}"#,
            r#"{"method":"item/completed","params":{"item":{"type":"agentMessage","id":"n","text":"partial"}}}"#,
            r#"{"method":"item/started","params":{"item":{"type":"commandExecution","id":"c","command":"false","cwd":"/"}}}"#,
            r#"{"method":"item/commandExecution/outputDelta","params":{"itemId":"c","delta":"oops\n"}}"#,
            r#"{"method":"item/completed","params":{"item":{"type":"commandExecution","id":"c","status":"failed","exitCode":1,"aggregatedOutput":""}}}"#,
            r#"{"method":"item/started","params":{"item":{"type":"webSearch","id":"w"}}}"#,
            r#"{"method":"item/reasoning/textDelta","params":{"itemId":"r","delta":"hm"}}"#,
            r#"{"method":"item/fileChange/requestApproval","id":5,"params":{"itemId":"gone"}}"#,
        ];
        for line in lines {
            harness.line(line);
        }
        let summaries: Vec<_> = harness.reports.iter().map(summary).collect();
        let expected = [
            "session t1",
            "thinking plan\nact",
            "text whole",
            "delta par",
            "delta tial",
            r#"tool c shell {"command":"false","cwd":"/"}"#,
            "update c oops\n",
            r#"finished c ok=false "exit code 1" diff=false"#,
            "opaque item/started",
            // A file change whose item we never saw: asked with what is known.
            r#"ask 5 apply_patch {"changes":null}"#,
        ];
        assert_eq!(summaries, expected);
    }

    #[test]
    fn diffs_of_updates_and_deletions() {
        let changes = json!([
            {"path": "/w/a.txt", "kind": {"type": "update", "move_path": null}, "diff": "@@ -1 +1 @@\n-x\n+y\n"},
            {"path": "/w/b.txt", "kind": {"type": "update", "move_path": "/w/c.txt"}, "diff": "@@ -1 +1 @@\n-p\n+q"},
            {"path": "/elsewhere/d.txt", "kind": {"type": "delete"}, "diff": "one\ntwo\n"},
        ]);
        let expected = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-x\n+y\n\
            --- a/b.txt\n+++ b/c.txt\n@@ -1 +1 @@\n-p\n+q\n\
            --- /elsewhere/d.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n";
        assert_eq!(
            unified_diff(&changes, Path::new("/w")).as_deref(),
            Some(expected)
        );
        assert_eq!(unified_diff(&json!([]), Path::new("/w")), None);
    }

    #[test]
    fn command_line_and_modes() {
        let mut spec = spec();
        spec.args = vec!["-c".into(), "model=o3".into()];
        let argv = CodexRuntime.command_line(&spec, "hi").expect("argv");
        assert_eq!(argv[1..], ["app-server", "-c", "model=o3"]);
        assert_eq!(CodexRuntime.modes(), ["untrusted", "on-request", "never"]);
    }
}
