//! The `claude` runtime: Claude Code in print mode over its stream-json control protocol
//! (`agents/README.md`, "Claude Code"), written sans-IO as a [`LineProtocol`] and driven by
//! [`lines::drive`].
//!
//! Decisions the protocol leaves open, and why:
//! - `--include-partial-messages` is always on: `text_delta` stream events become `TextDelta`s,
//!   and the complete assistant message that follows repeats the same text, so text blocks of a
//!   message whose deltas were seen are not sent again as `Text`. A message without deltas (the
//!   CLI's own synthetic ones) still becomes `Text`. The other stream events only repeat what
//!   the complete messages and the `result` carry, and are dropped.
//! - Inputs (of asks and of tool calls) are the exact JSON text the CLI printed, sliced from
//!   its line, so the approval hash covers the CLI's own bytes (re-serializing would keep the
//!   key order, `preserve_order` being on, but not the CLI's spelling of numbers and escapes).
//!   The answer sends the same text back as `updatedInput`.
//! - "Allow always" adds the CLI's own `addRules` suggestions, kept for the session instead of
//!   written to the project's `.claude/settings.local.json`. Its other suggestions (`setMode`
//!   acceptEdits, `addDirectories`) would allow more than the request shown, so when there is
//!   no rule the request is allowed once and an error event says so.
//! - Cost: `total_cost_usd` is cumulative and a resumed process restores the earlier
//!   processes' total (resume.jsonl), so the delta is taken from the CLI's own
//!   `model_usage_since_last_result`; without it, from the difference of totals (nothing for
//!   the first turn of a resumed process, which cannot be told apart from earlier ones).
//! - Tokens: `input_tokens` counts every prompt token (Anthropic's uncached, cache-write and
//!   cache-read counts added up), `cached_tokens` the cache reads among them.

use std::collections::{BTreeMap, VecDeque};

use muxagent_proto::app::{ApprovalKind, Decision, EventKind, Usage};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};

use super::asks::OpenAsks;
use super::lines::{self, Effects, LineProtocol};
use super::preview::{self, Counts, NO_FILE, Side, text_at};
use super::{AgentIo, Ask, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};
use crate::limits::AGENT_STREAMED_MESSAGE_IDS;

/// Claude Code.
pub struct ClaudeRuntime;

/// Claude's permission modes, in its own words.
const MODES: [&str; 4] = ["default", "acceptEdits", "plan", "bypassPermissions"];

impl Runtime for ClaudeRuntime {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn command_line(&self, spec: &Spec, _prompt: &str) -> Result<Vec<String>, String> {
        let mut argv = vec![super::program("claude", "claude")];
        argv.extend(
            [
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-prompt-tool",
                "stdio",
                "--include-partial-messages",
            ]
            .map(String::from),
        );
        if let Some(mode) = &spec.mode {
            argv.extend(["--permission-mode".into(), mode.clone()]);
        }
        if let Some(session) = &spec.resume {
            argv.extend(["--resume".into(), session.clone()]);
        }
        argv.extend(spec.args.iter().cloned());
        Ok(argv)
    }

    fn modes(&self) -> &'static [&'static str] {
        &MODES
    }

    fn program(&self) -> Option<String> {
        Some(super::program("claude", "claude"))
    }

    fn run(
        self: Box<Self>,
        spec: Spec,
        io: AgentIo,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>> {
        Box::pin(lines::drive(Claude::default(), spec, io, commands, reports))
    }
}

/// An ask waiting for its answer.
struct Pending {
    /// The tool's input as the CLI printed it, sent back as `updatedInput`.
    input: String,
    /// The CLI's `addRules` suggestions, scoped to the session, for "allow always".
    rules: Vec<Value>,
}

/// The protocol state of one Claude Code process.
#[derive(Default)]
struct Claude {
    /// Started with `--resume`: its first cost total includes earlier processes.
    resumed: bool,
    /// The number of our last control request (`req_N`).
    last_request: u64,
    /// Our control requests without a response yet: id → subtype.
    requests: BTreeMap<String, String>,
    /// Asks without an answer: the CLI's request id → what the answer needs.
    asks: OpenAsks<Pending>,
    /// The agent session id last reported.
    session: Option<String>,
    /// The message whose stream events are arriving (from `message_start`).
    streaming: Option<String>,
    /// Messages whose text came as deltas.
    streamed: VecDeque<String>,
    /// The last `total_cost_usd` seen, in micro-dollars.
    cost_total: Option<u64>,
    /// An interrupt was sent since the last `result`: that result's error is the interrupt.
    interrupted: bool,
}

impl LineProtocol for Claude {
    /// The Agent SDK's handshake; its answer (commands, models, account) is not needed, but
    /// a failure shows early.
    fn start(&mut self, spec: &Spec, out: &mut Effects) {
        self.resumed = spec.resume.is_some();
        self.request(json!({"subtype": "initialize"}), out);
    }

    fn on_line(&mut self, line: &str, out: &mut Effects) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            out.event(opaque(line));
            return;
        };
        let mapped = match message["type"].as_str() {
            Some("control_request") => self.on_control_request(&message, line, out),
            Some("control_cancel_request") => self.on_cancel(&message, out),
            Some("control_response") => self.on_control_response(&message, out),
            Some("system") => self.on_system(&message, out),
            Some("stream_event") => self.on_stream_event(&message, out),
            Some("assistant") => self.on_assistant(&message, line, out),
            Some("user") => on_user(&message, line, out),
            Some("result") => self.on_result(&message, out),
            _ => false,
        };
        if !mapped {
            out.event(opaque(line));
        }
    }

    fn on_command(&mut self, command: Command, out: &mut Effects) {
        match command {
            Command::Prompt(text) => out.send(
                json!({
                    "type": "user",
                    "message": {"role": "user", "content": text},
                    "parent_tool_use_id": null,
                    "session_id": "",
                })
                .to_string(),
            ),
            Command::Answer {
                agent_request,
                decision,
            } => self.answer(agent_request, decision, out),
            Command::Interrupt => {
                self.interrupted = true;
                self.request(json!({"subtype": "interrupt"}), out);
            }
            Command::SetMode(mode) => {
                self.request(json!({"subtype": "set_permission_mode", "mode": mode}), out)
            }
        }
    }

    fn on_end(&mut self, out: &mut Effects) {
        for (agent_request, _) in self.asks.take_all() {
            out.report(Report::Withdrawn { agent_request });
        }
    }
}

impl Claude {
    /// Send a control request of ours; its response is matched by id.
    fn request(&mut self, request: Value, out: &mut Effects) {
        self.last_request += 1;
        let id = format!("req_{}", self.last_request);
        let subtype = request["subtype"].as_str().unwrap_or("").to_string();
        out.send(
            json!({"type": "control_request", "request_id": id, "request": request}).to_string(),
        );
        self.requests.insert(id, subtype);
    }

    /// A request from the CLI: a permission ask, or something we cannot serve.
    fn on_control_request(&mut self, message: &Value, line: &str, out: &mut Effects) -> bool {
        let Some(id) = message["request_id"].as_str() else {
            return false;
        };
        let request = &message["request"];
        match request["subtype"].as_str() {
            Some("can_use_tool") => self.on_ask(id, request, line, out),
            subtype => {
                // Refuse it as the CLI refuses ours, so it does not wait for ever.
                let error = format!(
                    "muxagent does not support the control request {}",
                    subtype.unwrap_or("without a subtype")
                );
                out.send(
                    json!({"type": "control_response", "response": {
                        "subtype": "error", "request_id": id, "error": error}})
                    .to_string(),
                );
                false
            }
        }
    }

    fn on_ask(&mut self, id: &str, request: &Value, line: &str, out: &mut Effects) -> bool {
        let tool = request["tool_name"].as_str();
        let Some(tool) = tool.filter(|_| !request["input"].is_null()) else {
            // Deny what cannot be shown, so the CLI does not wait for ever.
            let message = "muxagent could not read this permission request";
            out.send(response(
                id,
                &json!({"behavior": "deny", "message": message}).to_string(),
            ));
            out.event(EventKind::Error {
                message: format!(
                    "Claude Code asked for permission without a tool or input ({id}); denied"
                ),
            });
            return false;
        };
        let input = raw_at(line, &[Step::Key("request"), Step::Key("input")])
            .map(str::to_string)
            .unwrap_or_else(|| request["input"].to_string());
        let rules = request["permission_suggestions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|suggestion| suggestion["type"] == "addRules")
            .map(|suggestion| {
                let mut rule = suggestion.clone();
                rule["destination"] = "session".into();
                rule
            })
            .collect();
        let (kind, plan) = if tool == "ExitPlanMode" {
            // The CLI fills `plan` from the plan file; without a file the input is `{}`, and
            // the plan ask is still one (accepting it leaves plan mode).
            let plan = request["input"]["plan"].as_str().unwrap_or("").to_string();
            (ApprovalKind::Plan, Some(plan))
        } else {
            (ApprovalKind::Tool, None)
        };
        let pending = Pending {
            input: input.clone(),
            rules,
        };
        if let Err(refused) = self.asks.insert(id.to_string(), pending) {
            let message = format!(
                "muxagent refused this permission request: {}",
                refused.reason
            );
            out.send(response(
                id,
                &json!({"behavior": "deny", "message": message}).to_string(),
            ));
            out.event(EventKind::Error {
                message: format!(
                    "Claude Code's permission request {id} was denied: {}",
                    refused.reason
                ),
            });
            return true;
        }
        out.report(Report::Ask(Ask {
            agent_request: id.to_string(),
            kind,
            tool: tool.to_string(),
            input,
            plan,
        }));
        true
    }

    fn answer(&mut self, agent_request: String, decision: Decision, out: &mut Effects) {
        let Some(ask) = self.asks.remove(&agent_request) else {
            out.event(EventKind::Error {
                message: format!(
                    "Claude Code is not waiting for an answer to {agent_request} (withdrawn or answered)"
                ),
            });
            return;
        };
        // The members of an allow, with the input exactly as the CLI printed it.
        let allow = format!(r#""behavior":"allow","updatedInput":{}"#, ask.input);
        let body = match decision {
            Decision::AllowOnce => format!("{{{allow}}}"),
            Decision::AllowAlways if ask.rules.is_empty() => {
                out.event(EventKind::Error {
                    message: "Claude Code offered no rule to remember for this request; it was allowed once".into(),
                });
                format!("{{{allow}}}")
            }
            Decision::AllowAlways => {
                format!(
                    r#"{{{allow},"updatedPermissions":{}}}"#,
                    Value::from(ask.rules)
                )
            }
            Decision::Deny { message } => {
                json!({"behavior": "deny", "message": message}).to_string()
            }
        };
        out.send(response(&agent_request, &body));
        out.report(Report::Applied { agent_request });
    }

    /// The CLI takes an ask back (an interrupt).
    fn on_cancel(&mut self, message: &Value, out: &mut Effects) -> bool {
        let Some(id) = message["request_id"].as_str() else {
            return false;
        };
        if self.asks.remove(id).is_none() {
            return false;
        }
        out.report(Report::Withdrawn {
            agent_request: id.to_string(),
        });
        true
    }

    /// The response to one of our requests: only a failure is worth an event.
    fn on_control_response(&mut self, message: &Value, out: &mut Effects) -> bool {
        let response = &message["response"];
        let Some(subtype) = response["request_id"]
            .as_str()
            .and_then(|id| self.requests.remove(id))
        else {
            return false;
        };
        if response["subtype"] != "success" {
            let error = response["error"].as_str().unwrap_or("no reason given");
            out.event(EventKind::Error {
                message: format!("Claude Code refused {subtype}: {error}"),
            });
        }
        true
    }

    /// `init` (each turn) names the session; other subtypes (`status` …) are not modelled.
    fn on_system(&mut self, message: &Value, out: &mut Effects) -> bool {
        let (Some("init"), Some(session)) =
            (message["subtype"].as_str(), message["session_id"].as_str())
        else {
            return false;
        };
        if self.session.as_deref() != Some(session) {
            self.session = Some(session.to_string());
            out.report(Report::AgentSession(session.to_string()));
        }
        true
    }

    /// The model's raw stream (`--include-partial-messages`): text deltas are sent, the rest
    /// comes again in the complete messages.
    fn on_stream_event(&mut self, message: &Value, out: &mut Effects) -> bool {
        let event = &message["event"];
        match event["type"].as_str() {
            Some("message_start") => {
                self.streaming = event["message"]["id"].as_str().map(str::to_string);
                true
            }
            Some("content_block_delta") => match event["delta"]["type"].as_str() {
                Some("text_delta") => {
                    let Some(text) = event["delta"]["text"].as_str() else {
                        return false;
                    };
                    let id = message["api_message_id"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| self.streaming.clone());
                    if let Some(id) = id.filter(|id| !self.streamed.contains(id)) {
                        if self.streamed.len() == AGENT_STREAMED_MESSAGE_IDS {
                            self.streamed.pop_front();
                        }
                        self.streamed.push_back(id);
                    }
                    if !text.is_empty() {
                        out.event(EventKind::TextDelta { text: text.into() });
                    }
                    true
                }
                Some("input_json_delta" | "thinking_delta" | "signature_delta") => true,
                _ => false,
            },
            Some(
                "content_block_start" | "content_block_stop" | "message_delta" | "message_stop",
            ) => true,
            _ => false,
        }
    }

    /// One content block of the model's answer (the CLI prints one message per block).
    fn on_assistant(&mut self, message: &Value, line: &str, out: &mut Effects) -> bool {
        let Some(blocks) = message["message"]["content"].as_array() else {
            return false;
        };
        let streamed = message["message"]["id"]
            .as_str()
            .is_some_and(|id| self.streamed.iter().any(|seen| seen == id));
        let mut mapped = true;
        for (index, block) in blocks.iter().enumerate() {
            match block["type"].as_str() {
                Some("text") => match block["text"].as_str() {
                    Some(text) if !streamed && !text.is_empty() => {
                        out.event(EventKind::Text { text: text.into() })
                    }
                    Some(_) => {}
                    None => mapped = false,
                },
                Some("thinking") => match block["thinking"].as_str() {
                    Some(text) if !text.is_empty() => {
                        out.event(EventKind::Thinking { text: text.into() })
                    }
                    Some(_) => {}
                    None => mapped = false,
                },
                Some("tool_use") => {
                    let (Some(id), Some(name)) = (block["id"].as_str(), block["name"].as_str())
                    else {
                        mapped = false;
                        continue;
                    };
                    let path = [
                        Step::Key("message"),
                        Step::Key("content"),
                        Step::Index(index),
                        Step::Key("input"),
                    ];
                    let input = raw_at(line, &path)
                        .map(str::to_string)
                        .unwrap_or_else(|| block["input"].to_string());
                    out.event(EventKind::ToolStarted {
                        tool_call: id.into(),
                        name: name.into(),
                        input,
                    });
                }
                _ => mapped = false,
            }
        }
        mapped
    }

    /// The end of a turn: its usage, then why it ended.
    fn on_result(&mut self, message: &Value, out: &mut Effects) -> bool {
        let usage = &message["usage"];
        let tokens = |key: &str| usage[key].as_u64().unwrap_or(0);
        let cached = tokens("cache_read_input_tokens");
        out.report(Report::TurnUsage(Usage {
            input_tokens: tokens("input_tokens")
                .saturating_add(tokens("cache_creation_input_tokens"))
                .saturating_add(cached),
            output_tokens: tokens("output_tokens"),
            cached_tokens: cached,
            cost_usd_micros: self.cost_delta(message),
        }));
        let subtype = message["subtype"].as_str().unwrap_or("unknown");
        let is_error = message["is_error"].as_bool().unwrap_or(false);
        // An interrupted turn ends as an error (`error_during_execution`, a diagnostic line);
        // after our own interrupt that is the expected end, not news.
        let interrupted = std::mem::take(&mut self.interrupted);
        if is_error && !interrupted {
            out.event(EventKind::Error {
                message: result_error(message, subtype),
            });
        }
        let reason = match message["stop_reason"].as_str() {
            Some(reason) if !is_error => reason,
            _ => subtype,
        };
        out.event(EventKind::TurnFinished {
            reason: reason.into(),
        });
        true
    }

    /// The cost of the turn a `result` ends, in micro-dollars.
    fn cost_delta(&mut self, result: &Value) -> Option<u64> {
        let total = result["total_cost_usd"].as_f64().map(micros);
        let previous = match total {
            Some(total) => self.cost_total.replace(total),
            None => self.cost_total,
        };
        if let Some(models) = result["model_usage_since_last_result"].as_object() {
            let cost: f64 = models
                .values()
                .filter_map(|usage| usage["costUSD"].as_f64())
                .sum();
            return Some(micros(cost));
        }
        match (total, previous) {
            (Some(total), Some(previous)) => Some(total.saturating_sub(previous)),
            (Some(_), None) if self.resumed => None,
            (total, _) => total,
        }
    }
}

/// Tool results: each `tool_result` block ends a tool call.
fn on_user(message: &Value, line: &str, out: &mut Effects) -> bool {
    // A string content is a prompt, not a result; keep it as it came.
    let Some(blocks) = message["message"]["content"].as_array() else {
        return false;
    };
    let results = blocks
        .iter()
        .filter(|block| block["type"] == "tool_result")
        .count();
    let mut mapped = true;
    for (index, block) in blocks.iter().enumerate() {
        let (Some("tool_result"), Some(id)) =
            (block["type"].as_str(), block["tool_use_id"].as_str())
        else {
            // The "[Request interrupted by user…]" note and anything new.
            mapped = false;
            continue;
        };
        // `tool_use_result` describes the message's result; with several it is ambiguous.
        let diff = if results == 1 {
            diff_of(&message["tool_use_result"])
        } else {
            None
        };
        out.event(EventKind::ToolFinished {
            tool_call: id.into(),
            ok: !block["is_error"].as_bool().unwrap_or(false),
            output: tool_output(line, index, &block["content"]),
            diff,
        });
    }
    mapped
}

/// A tool result's content as text: the text itself, its text blocks, or else its JSON.
fn tool_output(line: &str, index: usize, content: &Value) -> String {
    match content {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(|item| item["type"] == "text") => items
            .iter()
            .filter_map(|item| item["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            let path = [
                Step::Key("message"),
                Step::Key("content"),
                Step::Index(index),
                Step::Key("content"),
            ];
            raw_at(line, &path)
                .map(str::to_string)
                .unwrap_or_else(|| content.to_string())
        }
    }
}

/// A unified diff from the `tool_use_result` of Write, Edit and MultiEdit: their
/// `structuredPatch` hunks, or for a new file (an empty patch) its whole content.
fn diff_of(result: &Value) -> Option<String> {
    let path = text_at(result, "/filePath")?;
    let hunks = result["structuredPatch"].as_array()?;
    let mut diff = String::new();
    if hunks.is_empty() {
        if result["type"] != "create" {
            return None;
        }
        let content = text_at(result, "/content")?;
        preview::header(&mut diff, NO_FILE, path);
        preview::whole_file(&mut diff, Side::Added, Counts::Whole, content);
        return Some(diff);
    }
    preview::header(&mut diff, path, path);
    for hunk in hunks {
        let number = |key: &str| hunk[key].as_u64();
        let (Some(old_start), Some(old_lines), Some(new_start), Some(new_lines)) = (
            number("oldStart"),
            number("oldLines"),
            number("newStart"),
            number("newLines"),
        ) else {
            return None;
        };
        preview::hunk_header(
            &mut diff,
            Counts::Whole,
            (old_start, old_lines),
            (new_start, new_lines),
        );
        for line in hunk["lines"].as_array()? {
            diff.push_str(line.as_str()?);
            diff.push('\n');
        }
    }
    Some(diff)
}

/// What a failed turn says about itself.
fn result_error(result: &Value, subtype: &str) -> String {
    if let Some(text) = result["result"].as_str().filter(|text| !text.is_empty()) {
        return text.to_string();
    }
    let errors: Vec<&str> = result["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if errors.is_empty() {
        format!("the turn ended with {subtype}")
    } else {
        errors.join("; ")
    }
}

/// A success `control_response` to the CLI's request `id` with `body` (JSON text).
fn response(id: &str, body: &str) -> String {
    format!(
        r#"{{"type":"control_response","response":{{"subtype":"success","request_id":{},"response":{body}}}}}"#,
        Value::from(id)
    )
}

fn opaque(line: &str) -> EventKind {
    super::opaque("claude", line)
}

/// Dollars as micro-dollars.
fn micros(dollars: f64) -> u64 {
    // `as` saturates: NaN and negative amounts become 0.
    (dollars * 1e6).round() as u64
}

/// One step of a path into a JSON document.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The exact text of the value at `path` in `text`, a JSON document already known to parse.
/// Keys are compared as written (a key with escapes does not match; callers fall back).
fn raw_at<'t>(text: &'t str, path: &[Step<'_>]) -> Option<&'t str> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    for step in path {
        at = match (step, bytes.get(at)?) {
            (Step::Key(key), b'{') => member(bytes, at, key)?,
            (Step::Index(index), b'[') => element(bytes, at, *index)?,
            _ => return None,
        };
    }
    text.get(at..value_end(bytes, at)?)
}

/// Where the value of `key` begins in the object at `at`.
fn member(bytes: &[u8], at: usize, key: &str) -> Option<usize> {
    let mut at = skip_space(bytes, at + 1);
    while *bytes.get(at)? == b'"' {
        let key_end = string_end(bytes, at)?;
        let name = bytes.get(at + 1..key_end - 1)?;
        at = skip_space(bytes, key_end);
        if *bytes.get(at)? != b':' {
            return None;
        }
        at = skip_space(bytes, at + 1);
        if name == key.as_bytes() {
            return Some(at);
        }
        at = skip_space(bytes, value_end(bytes, at)?);
        if *bytes.get(at)? != b',' {
            return None;
        }
        at = skip_space(bytes, at + 1);
    }
    None
}

/// Where element `index` begins in the array at `at`.
fn element(bytes: &[u8], at: usize, index: usize) -> Option<usize> {
    let mut at = skip_space(bytes, at + 1);
    if *bytes.get(at)? == b']' {
        return None;
    }
    for _ in 0..index {
        at = skip_space(bytes, value_end(bytes, at)?);
        if *bytes.get(at)? != b',' {
            return None;
        }
        at = skip_space(bytes, at + 1);
    }
    Some(at)
}

/// Where the value beginning at `at` ends (exclusive).
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => Some(
            bytes[at..]
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .map_or(bytes.len(), |length| at + length),
        ),
    }
}

/// Where the string beginning at `at` (its opening quote) ends, after its closing quote.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
    {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One recorded line of a fixture.
    struct Record {
        dir: String,
        line: String,
    }

    fn fixture(name: &str) -> Vec<Record> {
        let path = format!(
            "{}/agents/fixtures/claude/{name}.jsonl",
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

    /// The command that makes a client write `line`, as the recorder wrote it; `None` for the
    /// recorder's probes (unknown subtypes and types), which muxagent never sends.
    fn command_for(line: &Value) -> Option<Command> {
        match line["type"].as_str()? {
            "user" => Some(Command::Prompt(
                line["message"]["content"].as_str().expect("prompt").into(),
            )),
            "control_request" => match line["request"]["subtype"].as_str()? {
                "interrupt" => Some(Command::Interrupt),
                "set_permission_mode" => Some(Command::SetMode(
                    line["request"]["mode"].as_str().expect("mode").into(),
                )),
                _ => None,
            },
            "control_response" => {
                let answer = &line["response"]["response"];
                let decision = match answer["behavior"].as_str()? {
                    "allow" if answer["updatedPermissions"].is_array() => Decision::AllowAlways,
                    "allow" => Decision::AllowOnce,
                    "deny" => Decision::Deny {
                        message: answer["message"].as_str().expect("message").into(),
                    },
                    _ => return None,
                };
                Some(Command::Answer {
                    agent_request: line["response"]["request_id"].as_str()?.into(),
                    decision,
                })
            }
            _ => None,
        }
    }

    /// Replay fixture `name`: its `out` lines go to the protocol, its `in` lines become the
    /// commands that produce them, and every line the protocol writes must equal (as JSON)
    /// the recorded one, in order. Returns the reports.
    fn replay(name: &str) -> Vec<Report> {
        let mut claude = Claude::default();
        let mut out = Effects::default();
        claude.start(&Spec::default(), &mut out);
        let mut written: VecDeque<String> = std::mem::take(&mut out.to_agent).into();
        let mut reports = std::mem::take(&mut out.reports);
        for record in fixture(name) {
            match record.dir.as_str() {
                "out" => claude.on_line(&record.line, &mut out),
                "in" => {
                    let expected: Value = serde_json::from_str(&record.line).expect("in line");
                    if written.is_empty() {
                        let Some(command) = command_for(&expected) else {
                            continue;
                        };
                        claude.on_command(command, &mut out);
                        written.extend(std::mem::take(&mut out.to_agent));
                    }
                    let actual = written.pop_front().expect("a line to match the recording");
                    let actual: Value = serde_json::from_str(&actual).expect("written JSON");
                    assert_eq!(actual, expected, "{name}: written line differs");
                }
                _ => {
                    // A new process resumes the session (resume.jsonl).
                    let session = record
                        .line
                        .strip_prefix("restart: --resume ")
                        .expect("meta");
                    claude.on_end(&mut out);
                    claude = Claude::default();
                    let spec = Spec {
                        resume: Some(session.into()),
                        ..Spec::default()
                    };
                    claude.start(&spec, &mut out);
                }
            }
            written.extend(std::mem::take(&mut out.to_agent));
            reports.append(&mut out.reports);
        }
        claude.on_end(&mut out);
        reports.append(&mut out.reports);
        assert!(written.is_empty(), "{name}: unrecorded lines {written:?}");
        reports
    }

    fn summary(report: &Report) -> String {
        match report {
            Report::Event(EventKind::Text { text }) => format!("text {text}"),
            Report::Event(EventKind::TextDelta { text }) => format!("delta {text}"),
            Report::Event(EventKind::Thinking { text }) => format!("thinking {text}"),
            Report::Event(EventKind::ToolStarted {
                tool_call,
                name,
                input,
            }) => format!("started {tool_call} {name} {input}"),
            Report::Event(EventKind::ToolFinished {
                tool_call,
                ok,
                output,
                diff,
            }) => format!("finished {tool_call} ok={ok} {output} diff={diff:?}"),
            Report::Event(EventKind::TurnFinished { reason }) => format!("turn {reason}"),
            Report::Event(EventKind::Error { message }) => format!("error {message}"),
            Report::Event(EventKind::Opaque { source, raw }) => {
                assert_eq!(source.as_str(), "claude");
                match serde_json::from_str::<Value>(raw) {
                    Ok(value) => format!(
                        "opaque {} {}",
                        value["type"].as_str().unwrap_or("?"),
                        value["subtype"].as_str().unwrap_or("")
                    )
                    .trim_end()
                    .to_string(),
                    Err(_) => format!("opaque {raw}"),
                }
            }
            Report::Event(other) => format!("{other:?}"),
            Report::Ask(ask) => format!(
                "ask {} {:?} {} {} plan={:?}",
                ask.agent_request, ask.kind, ask.tool, ask.input, ask.plan
            ),
            Report::Withdrawn { agent_request } => format!("withdrawn {agent_request}"),
            Report::Applied { agent_request } => format!("applied {agent_request}"),
            Report::TurnUsage(usage) => format!(
                "usage in={} out={} cached={} cost={:?}",
                usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cost_usd_micros
            ),
            Report::AgentSession(id) => format!("session {id}"),
        }
    }

    fn summaries(reports: &[Report]) -> Vec<String> {
        reports.iter().map(summary).collect()
    }

    const BASH_APPROVED: &str =
        r#"{"command":"touch approved.txt","description":"Run the command the mock asked for"}"#;
    const NO_OUTPUT: &str = "(Bash completed with no output)";
    const FINAL_NO_OUTPUT: &str = "MOCK-FINAL: the tool returned: (Bash completed with no output)";
    const HELLO: &str = "MOCK: hello from the mock model.";

    fn lines(list: &[&str]) -> Vec<String> {
        list.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn approve_asks_then_applies_and_reports_usage() {
        let ask = "3f17e275-52b7-4f44-8468-546dd9358a38";
        assert_eq!(
            summaries(&replay("approve")),
            lines(&[
                "session b11b275a-5219-4738-817d-d9aaa8386d61",
                "text MOCK: calling Bash.",
                &format!("started toolu_mock000002 Bash {BASH_APPROVED}"),
                &format!("ask {ask} Tool Bash {BASH_APPROVED} plan=None"),
                &format!("applied {ask}"),
                &format!("finished toolu_mock000002 ok=true {NO_OUTPUT} diff=None"),
                &format!("text {FINAL_NO_OUTPUT}"),
                "usage in=5261 out=37 cached=0 cost=Some(21784)",
                "turn end_turn",
            ])
        );
    }

    #[test]
    fn deny_sends_the_message_and_the_tool_fails() {
        let ask = "e23bfc30-434c-4f16-be35-0cba4b8a52e5";
        let reports = summaries(&replay("deny"));
        assert_eq!(
            reports[3..7],
            lines(&[
                &format!(
                    "ask {ask} Tool Bash {} plan=None",
                    r#"{"command":"touch denied.txt","description":"Run the command the mock asked for"}"#
                ),
                &format!("applied {ask}"),
                "finished toolu_mock000002 ok=false The user said no: not now. diff=None",
                "text MOCK-FINAL: the tool returned: [is_error] The user said no: not now.",
            ])
        );
        assert_eq!(reports[8], "turn end_turn");
    }

    #[test]
    fn allow_always_sends_the_rule_for_the_session_and_the_next_call_needs_no_ask() {
        // replay() checked the answer line: updatedPermissions = the addRules suggestion with
        // destination "session".
        let reports = summaries(&replay("allow_always"));
        let asks = reports
            .iter()
            .filter(|report| report.starts_with("ask "))
            .count();
        assert_eq!(asks, 1);
        let tail = &reports[reports.len() - 5..];
        let command =
            r#"{"command":"touch always.txt","description":"Run the command the mock asked for"}"#;
        assert_eq!(
            tail,
            lines(&[
                &format!("started toolu_mock000005 Bash {command}"),
                &format!("finished toolu_mock000005 ok=true {NO_OUTPUT} diff=None"),
                &format!("text {FINAL_NO_OUTPUT}"),
                // total_cost_usd went 0.021792 → 0.044776: the second turn's share only.
                "usage in=5561 out=37 cached=0 cost=Some(22984)",
                "turn end_turn",
            ])
        );
    }

    #[test]
    fn interrupt_withdraws_the_pending_ask_and_the_next_turn_works() {
        let ask = "1cc6333e-01f8-4637-9b07-a285c7be475b";
        let reports = summaries(&replay("interrupt"));
        let rejected = "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed.";
        assert_eq!(
            reports[3..],
            lines(&[
                &format!(
                    "ask {ask} Tool Bash {} plan=None",
                    r#"{"command":"touch interrupted.txt","description":"Run the command the mock asked for"}"#
                ),
                &format!("withdrawn {ask}"),
                &format!("finished toolu_mock000002 ok=false {rejected} diff=None"),
                // "[Request interrupted by user for tool use]": not modelled.
                "opaque user",
                // No error event: the turn's error is our own interrupt.
                "usage in=2585 out=22 cached=0 cost=Some(10780)",
                "turn error_during_execution",
                &format!("text {HELLO}"),
                "usage in=2761 out=8 cached=0 cost=Some(11204)",
                "turn end_turn",
            ])
        );
    }

    #[test]
    fn plan_mode_asks_to_accept_the_plan() {
        let reports = summaries(&replay("plan"));
        let plan_file = "{{HOME}}/.claude/plans/plan-it-mock-plan-1-compressed-patterson.md";
        let input = format!(
            r##"{{"plan":"# Plan\n\n1. Create plan.txt.\n2. Say done.\n","planFilePath":"{plan_file}"}}"##
        );
        let ask = "3d393903-a9b3-49b3-99de-abd38ccebacf";
        let at = reports
            .iter()
            .position(|report| report.starts_with("ask "))
            .expect("an ask");
        assert_eq!(
            reports[at..at + 3],
            lines(&[
                &format!(
                    "ask {ask} Plan ExitPlanMode {input} plan={:?}",
                    Some("# Plan\n\n1. Create plan.txt.\n2. Say done.\n")
                ),
                &format!("applied {ask}"),
                // permissionMode back to default.
                "opaque system status",
            ])
        );
        // ToolSearch's result is a tool reference, kept as JSON; the plan file's Write has a diff.
        assert!(reports.contains(&format!(
            "finished toolu_mock000002 ok=true {} diff=None",
            r#"[{"type":"tool_reference","tool_name":"ExitPlanMode"}]"#
        )));
        let diff = format!(
            "--- /dev/null\n+++ {plan_file}\n@@ -0,0 +1,4 @@\n+# Plan\n+\n+1. Create plan.txt.\n+2. Say done.\n"
        );
        assert!(reports.iter().any(
            |report| report.starts_with("finished toolu_mock000004 ok=true")
                && report.ends_with(&format!("diff={:?}", Some(diff.as_str())))
        ));
        assert_eq!(reports.last().map(String::as_str), Some("turn end_turn"));
    }

    #[test]
    fn set_mode_sends_set_permission_mode() {
        // replay() checked the request line; the success response maps to nothing.
        let reports = summaries(&replay("set_mode"));
        assert_eq!(reports[0], "opaque system status");
        assert_eq!(reports[1], "session bd985b2d-bb65-421c-abe4-a81a6764b8fd");
        assert!(!reports.iter().any(|report| report.starts_with("ask ")));
        assert!(!reports.iter().any(|report| report.starts_with("error ")));
    }

    #[test]
    fn write_asks_with_the_exact_input_and_finishes_with_a_diff() {
        let ask = "ba3a9af4-f6e4-418f-96a9-82fb326fdd8f";
        // Key order as the CLI printed it (file_path first): sliced, not re-serialized.
        let input = r#"{"file_path":"{{CWD}}/notes.txt","content":"hello from the write tool\n"}"#;
        let output = "File created successfully at: {{CWD}}/notes.txt (file state is current in your context — no need to Read it back)";
        let diff =
            "--- /dev/null\n+++ {{CWD}}/notes.txt\n@@ -0,0 +1,1 @@\n+hello from the write tool\n";
        assert_eq!(
            summaries(&replay("write"))[2..6],
            lines(&[
                &format!("started toolu_mock000002 Write {input}"),
                &format!("ask {ask} Tool Write {input} plan=None"),
                &format!("applied {ask}"),
                &format!(
                    "finished toolu_mock000002 ok=true {output} diff={:?}",
                    Some(diff)
                ),
            ])
        );
    }

    #[test]
    fn resume_reports_the_same_session_and_only_the_new_cost() {
        let session = "session 35ea7411-f66b-49e7-9420-40e963e2853e";
        // The resumed process's total_cost_usd (0.021124) includes the first one's (0.01048).
        assert_eq!(
            summaries(&replay("resume")),
            lines(&[
                session,
                &format!("text {HELLO}"),
                "usage in=2580 out=8 cached=0 cost=Some(10480)",
                "turn end_turn",
                session,
                &format!("text {HELLO}"),
                "usage in=2621 out=8 cached=0 cost=Some(10644)",
                "turn end_turn",
            ])
        );
    }

    #[test]
    fn partial_messages_become_deltas_without_repeating_the_text() {
        assert_eq!(
            summaries(&replay("partial")),
            lines(&[
                "session 40038e06-2adb-443a-b1d1-7f3be1d1e011",
                "opaque system status",
                "delta MOCK: calling Bash.",
                &format!("started toolu_mock000002 Bash {BASH_APPROVED}"),
                &format!(
                    "ask 1d4899bd-6891-4071-8841-72a29cd9abb0 Tool Bash {BASH_APPROVED} plan=None"
                ),
                "applied 1d4899bd-6891-4071-8841-72a29cd9abb0",
                &format!("finished toolu_mock000002 ok=true {NO_OUTPUT} diff=None"),
                "opaque system status",
                "delta MOCK-FINAL: ",
                "delta the tool returned: (Bash completed with no output)",
                "usage in=5261 out=37 cached=0 cost=Some(21784)",
                "turn end_turn",
            ])
        );
    }

    #[test]
    fn a_response_to_a_request_we_did_not_send_is_opaque() {
        // unknown.jsonl: the recorder's probe got an error response; we never sent req_2.
        assert_eq!(
            summaries(&replay("unknown")),
            lines(&[
                "opaque control_response",
                "session 16104fa9-8a09-411e-96ab-cddccbdcfec9",
                &format!("text {HELLO}"),
                "usage in=2577 out=8 cached=0 cost=Some(10468)",
                "turn end_turn",
            ])
        );
    }

    /// The protocol after `start`, fed `lines`; the effects of the last line.
    fn fed(claude: &mut Claude, lines: &[&str]) -> Effects {
        let mut out = Effects::default();
        for line in lines {
            out = Effects::default();
            claude.on_line(line, &mut out);
        }
        out
    }

    fn ask_line(id: &str, tool: &str, input: &str, suggestions: &str) -> String {
        format!(
            r#"{{"type":"control_request","request_id":"{id}","request":{{"subtype":"can_use_tool","tool_name":"{tool}","input":{input},"permission_suggestions":{suggestions},"tool_use_id":"toolu_1"}}}}"#
        )
    }

    #[test]
    fn unknown_and_unparsable_lines_are_opaque() {
        let mut claude = Claude::default();
        for line in [
            "not json",
            "[1,2]",
            r#"{"type":"keep_alive"}"#,
            r#"{"no_type":true}"#,
            r#"{"type":"system","subtype":"compact_boundary","session_id":"s"}"#,
            r#"{"type":"stream_event","event":{"type":"brand_new"}}"#,
            r#"{"type":"control_cancel_request","request_id":"nobody"}"#,
            r#"{"type":"user","message":{"role":"user","content":"echoed prompt"}}"#,
        ] {
            let out = fed(&mut claude, &[line]);
            assert_eq!(out.to_agent, Vec::<String>::new(), "{line}");
            assert_eq!(out.reports, vec![Report::Event(opaque(line))], "{line}");
        }
    }

    #[test]
    fn a_partly_known_message_keeps_what_it_knows_and_the_line() {
        let line = r#"{"type":"assistant","message":{"id":"m","content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"hi"},{"type":"server_tool_use","id":"s","name":"web_search","input":{}}]}}"#;
        let out = fed(&mut Claude::default(), &[line]);
        assert_eq!(
            summaries(&out.reports),
            lines(&["thinking hmm", "text hi", "opaque assistant"])
        );
    }

    #[test]
    fn an_unknown_request_from_the_cli_is_refused_and_kept() {
        let line = r#"{"type":"control_request","request_id":"r9","request":{"subtype":"elicitation","x":1}}"#;
        let out = fed(&mut Claude::default(), &[line]);
        let sent: Value = serde_json::from_str(&out.to_agent[0]).expect("json");
        assert_eq!(sent["type"], "control_response");
        assert_eq!(sent["response"]["subtype"], "error");
        assert_eq!(sent["response"]["request_id"], "r9");
        assert_eq!(summaries(&out.reports), lines(&["opaque control_request"]));
    }

    #[test]
    fn an_ask_without_a_tool_is_denied_with_an_error() {
        let line = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","input":{}}}"#;
        let mut claude = Claude::default();
        let out = fed(&mut claude, &[line]);
        let sent: Value = serde_json::from_str(&out.to_agent[0]).expect("json");
        assert_eq!(sent["response"]["request_id"], "r1");
        assert_eq!(sent["response"]["response"]["behavior"], "deny");
        let reports = summaries(&out.reports);
        assert!(reports[0].starts_with("error "), "{reports:?}");
        assert_eq!(reports[1], "opaque control_request");
        assert!(claude.asks.take_all().is_empty());
    }

    #[test]
    fn answers_write_one_line_then_applied() {
        let mut claude = Claude::default();
        let input = r#"{"z":1,"a":"é \"q\""}"#;
        fed(&mut claude, &[&ask_line("r1", "Bash", input, "[]")]);
        let mut out = Effects::default();
        let deny = Decision::Deny {
            message: "no \"way\"".into(),
        };
        claude.on_command(
            Command::Answer {
                agent_request: "r1".into(),
                decision: deny,
            },
            &mut out,
        );
        assert_eq!(
            out.to_agent,
            vec![
                r#"{"type":"control_response","response":{"subtype":"success","request_id":"r1","response":{"behavior":"deny","message":"no \"way\""}}}"#
            ]
        );
        assert_eq!(
            out.reports,
            vec![Report::Applied {
                agent_request: "r1".into()
            }]
        );
        // Answered: a second answer names nothing pending.
        let mut out = Effects::default();
        claude.on_command(
            Command::Answer {
                agent_request: "r1".into(),
                decision: Decision::AllowOnce,
            },
            &mut out,
        );
        assert!(out.to_agent.is_empty());
        assert!(summaries(&out.reports)[0].starts_with("error "));
    }

    #[test]
    fn allow_always_without_a_rule_allows_once_and_says_so() {
        // write.jsonl's ask offers only setMode acceptEdits, which would allow every edit.
        let input = r#"{"file_path":"/w/notes.txt","content":"x"}"#;
        let suggestions = r#"[{"type":"setMode","mode":"acceptEdits","destination":"session"}]"#;
        let mut claude = Claude::default();
        fed(&mut claude, &[&ask_line("r1", "Write", input, suggestions)]);
        let mut out = Effects::default();
        claude.on_command(
            Command::Answer {
                agent_request: "r1".into(),
                decision: Decision::AllowAlways,
            },
            &mut out,
        );
        assert_eq!(
            out.to_agent,
            vec![format!(
                r#"{{"type":"control_response","response":{{"subtype":"success","request_id":"r1","response":{{"behavior":"allow","updatedInput":{input}}}}}}}"#
            )]
        );
        let reports = summaries(&out.reports);
        assert!(reports[0].starts_with("error "), "{reports:?}");
        assert_eq!(reports[1], "applied r1");
    }

    #[test]
    fn a_plan_ask_without_a_plan_file_has_an_empty_plan() {
        let mut claude = Claude::default();
        let out = fed(&mut claude, &[&ask_line("r1", "ExitPlanMode", "{}", "[]")]);
        assert_eq!(
            summaries(&out.reports),
            lines(&[r#"ask r1 Plan ExitPlanMode {} plan=Some("")"#])
        );
    }

    #[test]
    fn asks_keep_the_approval_contract() {
        let ask = |tool: &str, input: &str| {
            let out = fed(
                &mut Claude::default(),
                &[&ask_line("r1", tool, input, "[]")],
            );
            match out.reports.as_slice() {
                [Report::Ask(ask)] => ask.clone(),
                other => panic!("{other:?}"),
            }
        };
        let base = r#"{"command":"ls","timeout":5}"#;
        let changed = [
            ask("Write", base),
            ask("Bash", r#"{"command":"rm -rf /","timeout":5}"#),
            ask("Bash", r#"{"command":"ls","timeout":6}"#),
            ask(
                "Bash",
                r#"{"command":"ls","timeout":5,"run_in_background":true}"#,
            ),
            // The CLI's own text, key order included: it is what `updatedInput` sends back.
            ask("Bash", r#"{"timeout":5,"command":"ls"}"#),
        ];
        super::super::contract::check(&ask("Bash", base), &ask("Bash", base), &changed);
    }

    #[test]
    fn an_agent_asking_without_end_is_denied_past_the_cap() {
        use crate::limits::MAX_PENDING_APPROVALS;
        let mut claude = Claude::default();
        let mut asked = 0;
        let mut denied = 0;
        for n in 0..MAX_PENDING_APPROVALS * 3 {
            let out = fed(
                &mut claude,
                &[&ask_line(&format!("r{n}"), "Bash", "{}", "[]")],
            );
            match out.reports.as_slice() {
                [Report::Ask(_)] => asked += 1,
                [Report::Event(EventKind::Error { message })] => {
                    assert!(message.contains("already waiting"), "{message}");
                    let [answer] = out.to_agent.as_slice() else {
                        panic!("one answer: {:?}", out.to_agent)
                    };
                    assert!(answer.contains(r#""behavior":"deny""#), "{answer}");
                    denied += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            (asked, denied),
            (MAX_PENDING_APPROVALS, MAX_PENDING_APPROVALS * 2)
        );
        // A reused id is denied too; the first ask with it still waits.
        let out = fed(
            &mut claude,
            &[&ask_line("r0", "Bash", r#"{"command":"rm -rf /"}"#, "[]")],
        );
        assert!(matches!(
            out.reports.as_slice(),
            [Report::Event(EventKind::Error { .. })]
        ));
        let mut out = Effects::default();
        claude.on_command(
            Command::Answer {
                agent_request: "r0".into(),
                decision: Decision::AllowOnce,
            },
            &mut out,
        );
        assert!(
            out.to_agent[0].contains(r#""updatedInput":{}"#),
            "{:?}",
            out.to_agent
        );
    }

    #[test]
    fn asks_still_pending_at_the_end_are_withdrawn() {
        let mut claude = Claude::default();
        fed(
            &mut claude,
            &[
                &ask_line("r2", "Bash", "{}", "[]"),
                &ask_line("r1", "Bash", "{}", "[]"),
            ],
        );
        let mut out = Effects::default();
        claude.on_end(&mut out);
        // In the order asked.
        assert_eq!(
            summaries(&out.reports),
            lines(&["withdrawn r2", "withdrawn r1"])
        );
    }

    #[test]
    fn a_refused_request_of_ours_is_an_error() {
        let mut claude = Claude::default();
        let mut out = Effects::default();
        claude.start(&Spec::default(), &mut out);
        claude.on_command(Command::SetMode("plan".into()), &mut out);
        assert_eq!(out.to_agent.len(), 2);
        let sent: Value = serde_json::from_str(&out.to_agent[1]).expect("json");
        assert_eq!(sent["request_id"], "req_2");
        // unknown.jsonl's error response, for req_2.
        let refusal = r#"{"type":"control_response","response":{"subtype":"error","request_id":"req_2","error":"Unsupported control request subtype: no_such_subtype","error_code":"unsupported_request"}}"#;
        let out = fed(&mut claude, &[refusal]);
        assert_eq!(
            summaries(&out.reports),
            lines(&[
                "error Claude Code refused set_permission_mode: Unsupported control request subtype: no_such_subtype"
            ])
        );
        // Answered once: a repeat is not ours any more.
        assert_eq!(
            summaries(&fed(&mut claude, &[refusal]).reports),
            lines(&["opaque control_response"])
        );
    }

    #[test]
    fn a_failed_turn_is_an_error_and_cache_tokens_count_as_input() {
        let line = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"stop_reason":"tool_use","result":"","errors":["Reached maximum number of turns (1)"],"usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":5},"total_cost_usd":0.5}"#;
        let out = fed(&mut Claude::default(), &[line]);
        assert_eq!(
            summaries(&out.reports),
            lines(&[
                "usage in=1110 out=5 cached=1000 cost=Some(500000)",
                "error Reached maximum number of turns (1)",
                "turn error_max_turns",
            ])
        );
    }

    #[test]
    fn without_the_cli_delta_cost_is_the_difference_of_totals() {
        let result = |total: f64| {
            format!(
                r#"{{"type":"result","subtype":"success","is_error":false,"stop_reason":"end_turn","usage":{{}},"total_cost_usd":{total}}}"#
            )
        };
        let costs = |claude: &mut Claude| -> Vec<Option<u64>> {
            [0.25, 0.75]
                .iter()
                .map(|total| match &fed(claude, &[&result(*total)]).reports[0] {
                    Report::TurnUsage(usage) => usage.cost_usd_micros,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            costs(&mut Claude::default()),
            vec![Some(250_000), Some(500_000)]
        );
        // A resumed process's first total includes what earlier processes spent.
        let mut resumed = Claude::default();
        let spec = Spec {
            resume: Some("s".into()),
            ..Spec::default()
        };
        resumed.start(&spec, &mut Effects::default());
        assert_eq!(costs(&mut resumed), vec![None, Some(500_000)]);
    }

    #[test]
    fn edits_finish_with_their_structured_patch() {
        // As Claude Code 2.1.331 prints an overwrite (recorded by hand from the real CLI).
        let line = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_5","type":"tool_result","content":"The file /w/notes.txt has been updated successfully."}]},"tool_use_result":{"type":"update","filePath":"/w/notes.txt","content":"second line\n","structuredPatch":[{"oldStart":1,"oldLines":1,"newStart":1,"newLines":1,"lines":["-first line","+second line"]}],"originalFile":"first line\n","userModified":false}}"#;
        let out = fed(&mut Claude::default(), &[line]);
        assert_eq!(
            out.reports,
            vec![Report::Event(EventKind::ToolFinished {
                tool_call: "toolu_5".into(),
                ok: true,
                output: "The file /w/notes.txt has been updated successfully.".into(),
                diff: Some(
                    "--- /w/notes.txt\n+++ /w/notes.txt\n@@ -1,1 +1,1 @@\n-first line\n+second line\n"
                        .into()
                ),
            })]
        );
        let created = json!({"type": "create", "filePath": "/w/a", "content": "x\ny",
            "structuredPatch": [], "originalFile": null});
        assert_eq!(
            diff_of(&created).as_deref(),
            Some(
                "--- /dev/null\n+++ /w/a\n@@ -0,0 +1,2 @@\n+x\n+y\n\\ No newline at end of file\n"
            )
        );
        assert_eq!(diff_of(&json!("Error: denied")), None);
    }

    #[test]
    fn raw_values_are_sliced_exactly() {
        let text =
            r#" { "a" : [ 1, {"b\"]":"}{", "c" : { "d" : [true ,null] } } ] , "e":-1.5e3 } "#;
        let key = Step::Key;
        assert_eq!(raw_at(text, &[key("a"), Step::Index(0)]), Some("1"));
        assert_eq!(
            raw_at(text, &[key("a"), Step::Index(1), key("c")]),
            Some(r#"{ "d" : [true ,null] }"#)
        );
        assert_eq!(
            raw_at(
                text,
                &[key("a"), Step::Index(1), key("c"), key("d"), Step::Index(1)]
            ),
            Some("null")
        );
        assert_eq!(raw_at(text, &[key("e")]), Some("-1.5e3"));
        assert_eq!(raw_at(text, &[key("a"), Step::Index(2)]), None);
        assert_eq!(raw_at(text, &[key("b")]), None);
        assert_eq!(raw_at(text, &[key("e"), key("x")]), None);
        assert_eq!(raw_at("[]", &[Step::Index(0)]), None);
    }

    #[test]
    fn command_line_has_the_flags_mode_resume_then_extra_args() {
        let spec = Spec {
            args: vec!["--model".into(), "sonnet".into()],
            mode: Some("plan".into()),
            resume: Some("abc".into()),
            ..Spec::default()
        };
        let argv = ClaudeRuntime.command_line(&spec, "hi").expect("argv");
        // argv[0] is $MUXAGENT_CLAUDE or `claude`.
        assert_eq!(
            argv[1..],
            lines(&[
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-prompt-tool",
                "stdio",
                "--include-partial-messages",
                "--permission-mode",
                "plan",
                "--resume",
                "abc",
                "--model",
                "sonnet",
            ])
        );
        assert_eq!(ClaudeRuntime.modes(), MODES);
    }
}
