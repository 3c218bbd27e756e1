//! How sessions and events look to people (text) and to scripts (`--json`).
//!
//! [`Transcript`] is the readable view `ctl watch` prints: streamed text inline, one marked line
//! per everything else, tool inputs and outputs summarized. [`event_json`] is the exact view:
//! one object per event with every field.
//!
//! Everything an agent or a machine sent is untrusted: a terminal acts on escapes, and bidi or
//! zero-width characters make text read as something else. Text views show every such
//! character as a mark ([`visible_text`], `⟪U+202E⟫`); JSON views escape them (`\u202e`), so
//! neither a person nor a terminal is fooled and a script still reads the exact text.

use std::collections::HashMap;

use muxagent_client::decide;
use muxagent_client::words::{SUMMARY_CHARS, is_hidden};
pub use muxagent_client::words::{
    approval_kind_word, approval_state_word, decision_text, one_line, status_word, visible_field,
    visible_line, visible_text,
};
use muxagent_proto::app::{
    ApprovalKind, ApprovalRequest, ApprovalState, Decision, Event, EventKind, SessionId,
    SessionInfo, Stream, Usage,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::json;

use crate::limits::CTL_TOOL_NAMES;

/// How many lines of a tool's output the transcript shows.
const OUTPUT_LINES: usize = 5;
/// How long one shown line of tool output may get.
const OUTPUT_LINE_CHARS: usize = 160;

/// `value` as one line of JSON with every [hidden](is_hidden) character escaped as `\uXXXX`
/// (serde_json leaves DEL, C1 controls and bidi characters raw): the same value for a parser,
/// nothing a terminal acts on.
pub fn json_text(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if is_hidden(c) {
            // Outside strings JSON is ASCII without controls: every hidden character here is
            // inside a string, where a \u escape (a surrogate pair above U+FFFF) means the same.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the input lines of [`approval_block`] start: everything after it on such a line is
/// the input.
pub const INPUT_LINE: &str = "  │ ";
/// The label of [`approval_block`]'s tool line.
pub const TOOL_LINE: &str = "  tool     ";
/// The label of [`approval_block`]'s digest line.
pub const DIGEST_LINE: &str = "  digest   ";

/// A waiting approval of `session` on `host` whole, as `ctl approvals` and `ctl approve` print
/// it: the tool and every byte of the input ([`visible_text`]: hidden characters are marks,
/// nothing is cut), and the digest of exactly that to quote to `ctl approve --digest`. When
/// the machine sent the input cut, it says so and gives no digest: that cannot be allowed from
/// here. `hints` adds the commands that answer it.
pub fn approval_block(
    host: &str,
    title: &str,
    session: SessionId,
    request: &ApprovalRequest,
    state: &str,
    hints: bool,
) -> String {
    let host = visible_field(host);
    let reference = format!("{session}/{}", request.approval);
    let digest = decide::digest(session, request);
    let mut out = format!(
        "{host} {reference}  {} {state}\n  session  {}\n{TOOL_LINE}{}\n",
        approval_kind_word(request.kind),
        visible_line(title, 80),
        visible_field(&request.tool),
    );
    let lines = request.input.split('\n').count();
    match &digest {
        Some(_) => out.push_str(&format!(
            "  input    {} bytes, {lines} lines, all shown; ⟪U+XXXX⟫ marks a character that would not show\n",
            request.input.len()
        )),
        None => out.push_str(
            "  input    CUT: the machine did not give all the agent asked to run (a device fetches at most 1 MiB), so it cannot be allowed from here (deny it, or have the agent ask for less)\n",
        ),
    }
    for line in visible_text(&request.input).split('\n') {
        out.push_str(INPUT_LINE);
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(DIGEST_LINE);
    out.push_str(digest.as_deref().unwrap_or("none"));
    out.push('\n');
    if hints {
        if let Some(digest) = &digest {
            out.push_str(&format!(
                "  allow:   muxagent ctl approve {host} {reference} --digest {digest}\n"
            ));
        }
        out.push_str(&format!(
            "  deny:    muxagent ctl deny {host} {reference}\n"
        ));
    }
    out
}

/// A session as a JSON object.
pub fn session_json(info: &SessionInfo) -> serde_json::Value {
    json!({
        "id": format!("{:#}", info.id),
        "runtime": info.runtime.as_str(),
        "cwd": info.cwd,
        "title": info.title,
        "status": status_word(info.status),
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "input_tokens": info.usage.input_tokens,
        "output_tokens": info.usage.output_tokens,
        "cost_usd": info.usage.cost_usd_micros.map(|micros| micros as f64 / 1e6),
        "pending_approvals": info.pending_approvals,
        "last_seq": info.last_seq,
    })
}

/// An event as a JSON object: `session`, `seq`, `at`, `kind` and the kind's fields.
pub fn event_json(event: &Event) -> serde_json::Value {
    let mut value = json!({
        "session": format!("{:#}", event.session),
        "seq": event.seq,
        "at": event.at,
    });
    let detail = match &event.kind {
        EventKind::Started {
            runtime,
            args,
            cwd,
            title,
            device,
        } => {
            json!({ "kind": "started", "runtime": runtime.as_str(), "args": args, "cwd": cwd, "title": title, "device": device.to_string() })
        }
        EventKind::Prompt { text } => json!({ "kind": "prompt", "text": text }),
        EventKind::Text { text } => json!({ "kind": "text", "text": text }),
        EventKind::TextDelta { text } => json!({ "kind": "text_delta", "text": text }),
        EventKind::Thinking { text } => json!({ "kind": "thinking", "text": text }),
        EventKind::Output { stream, text } => {
            json!({ "kind": "output", "stream": if *stream == Stream::Stdout { "stdout" } else { "stderr" }, "text": text })
        }
        EventKind::ToolStarted {
            tool_call,
            name,
            input,
        } => {
            json!({ "kind": "tool_started", "tool_call": tool_call, "name": name, "input": input, "summary": input_summary(input) })
        }
        EventKind::ToolUpdated { tool_call, detail } => {
            json!({ "kind": "tool_updated", "tool_call": tool_call, "detail": detail })
        }
        EventKind::ToolFinished {
            tool_call,
            ok,
            output,
            diff,
        } => {
            json!({ "kind": "tool_finished", "tool_call": tool_call, "ok": ok, "output": output, "diff": diff })
        }
        EventKind::ApprovalRequested(request) => json!({
            "kind": "approval_requested",
            "approval": request.approval,
            "approval_kind": approval_kind_word(request.kind),
            "plan": request.kind == ApprovalKind::Plan,
            "agent_request": request.agent_request,
            "tool": request.tool,
            "input": request.input,
            "summary": input_summary(&request.input),
        }),
        EventKind::ApprovalState { approval, state } => {
            json!({ "kind": "approval_state", "approval": approval, "state": approval_state_word(*state) })
        }
        EventKind::ApprovalResolved {
            approval,
            decision,
            device,
        } => {
            let message = match decision {
                Decision::Deny { message } => Some(message),
                _ => None,
            };
            json!({ "kind": "approval_resolved", "approval": approval, "decision": decision_word(decision), "message": message, "device": device.to_string() })
        }
        EventKind::PlanProposed { approval, plan } => {
            json!({ "kind": "plan_proposed", "approval": approval, "plan": plan })
        }
        EventKind::Usage(usage) => {
            json!({ "kind": "usage", "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "cached_tokens": usage.cached_tokens, "cost_usd": usage.cost_usd_micros.map(|m| m as f64 / 1e6) })
        }
        EventKind::Status(status) => json!({ "kind": "status", "status": status_word(*status) }),
        EventKind::TurnFinished { reason } => json!({ "kind": "turn_finished", "reason": reason }),
        EventKind::Error { message } => json!({ "kind": "error", "message": message }),
        EventKind::Exited { code, signal } => {
            json!({ "kind": "exited", "code": code, "signal": signal })
        }
        EventKind::Opaque { source, raw } => {
            json!({ "kind": "opaque", "source": source.as_str(), "raw": raw })
        }
        EventKind::AgentSession { id } => json!({ "kind": "agent_session", "id": id }),
    };
    if let (Some(object), serde_json::Value::Object(detail)) = (value.as_object_mut(), detail) {
        object.extend(detail);
    }
    value
}

/// A decision for `--json`: `allow`, `allow_always` or `deny: MESSAGE` (kept as it was).
fn decision_word(decision: &Decision) -> String {
    match decision {
        Decision::AllowOnce => "allow".into(),
        Decision::AllowAlways => "allow_always".into(),
        Decision::Deny { message } => format!("deny: {message}"),
    }
}

/// Lower-case hex, as the daemon writes keys and hashes in files and notices.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` with thousands separators: `5,261`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Usage for people: `tokens 5,261 in / 37 out · $0.0218`, the dollars only when the agent
/// reported a cost.
pub fn usage_text(usage: &Usage) -> String {
    let tokens = format!(
        "tokens {} in / {} out",
        thousands(usage.input_tokens),
        thousands(usage.output_tokens)
    );
    match usage.cost_usd_micros {
        Some(micros) => format!("{tokens} · ${:.4}", micros as f64 / 1e6),
        None => tokens,
    }
}

/// The object keys whose value best says what a tool call does, most telling first.
const SUMMARY_KEYS: [&str; 4] = ["command", "file_path", "path", "pattern"];

/// A tool input (JSON as the agent sent it) in one line of at most ~100 characters: its
/// `command`, `file_path`, `path` or `pattern`, else its first string field, else the input
/// itself. Decoded, so still raw: a JSON string may spell an escape as `\u001b`; whoever
/// prints it makes it visible.
pub fn input_summary(input: &str) -> String {
    let mut parser = serde_json::Deserializer::from_str(input);
    let fields = (&mut parser)
        .deserialize_map(FieldsVisitor)
        .ok()
        .filter(|_| parser.end().is_ok());
    let chosen = match fields {
        Some(fields) => SUMMARY_KEYS
            .iter()
            .find_map(|key| {
                fields
                    .iter()
                    .find(|(name, _)| name == key)
                    .and_then(|(_, value)| text_of(value))
            })
            .or_else(|| {
                fields
                    .iter()
                    .find_map(|(_, value)| value.as_str().map(String::from))
            }),
        None => None,
    };
    one_line(chosen.as_deref().unwrap_or(input), SUMMARY_CHARS)
}

/// A string, or an argv-style array of strings joined with spaces.
fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str())
            .collect::<Option<Vec<&str>>>()
            .map(|words| words.join(" ")),
        _ => None,
    }
}

/// A JSON object's fields in the order the agent wrote them (serde_json's own map sorts them,
/// and "first string field" means the agent's first).
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, serde_json::Value)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(field) = map.next_entry::<String, serde_json::Value>()? {
            fields.push(field);
        }
        Ok(fields)
    }
}

/// ANSI styles, applied only when `on` (stdout is a terminal).
#[derive(Clone, Copy, Debug)]
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }
    fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }
    fn cyan(self, text: &str) -> String {
        self.wrap("36", text)
    }
}

/// The readable view of one session for `ctl watch`. It keeps what reading needs across events:
/// the text streamed since the last complete text (so a complete text repeating it is not
/// printed twice), whether the output ends mid-line, and tool names for their results.
#[derive(Debug)]
pub struct Transcript {
    host: String,
    paint: Paint,
    streamed: String,
    at_line_start: bool,
    tools: HashMap<String, String>,
}

impl Transcript {
    /// A transcript of a session on `host` (named in the approve/deny lines it prints), with
    /// colors when `color`.
    pub fn new(host: &str, color: bool) -> Self {
        Self {
            host: visible_field(host),
            paint: Paint { on: color },
            streamed: String::new(),
            at_line_start: true,
            tools: HashMap::new(),
        }
    }

    /// The text to print for `event` (possibly empty).
    pub fn event_text(&mut self, event: &Event) -> String {
        let kind = revealed(&event.kind);
        let text = match &kind {
            EventKind::Output { text, .. } => return self.inline(text),
            EventKind::TextDelta { text } => {
                self.streamed.push_str(text);
                return self.inline(text);
            }
            EventKind::Text { text } => return self.complete_text(text),
            kind => self.line(event.session, kind),
        };
        self.streamed_boundary(&kind);
        if text.is_empty() {
            return text;
        }
        let out = if self.at_line_start {
            text
        } else {
            format!("\n{text}")
        };
        self.at_line_start = true;
        out
    }

    /// What ends the transcript: a newline when it stopped mid-line.
    pub fn finish(&mut self) -> &'static str {
        if self.at_line_start {
            ""
        } else {
            self.at_line_start = true;
            "\n"
        }
    }

    fn inline(&mut self, text: &str) -> String {
        if !text.is_empty() {
            self.at_line_start = text.ends_with('\n');
        }
        text.to_string()
    }

    /// A complete text: only what the deltas before it did not already show.
    fn complete_text(&mut self, text: &str) -> String {
        if let Some(rest) = self.streamed.strip_prefix(text) {
            self.streamed = rest.to_string();
            return String::new();
        }
        let shown = match text.strip_prefix(self.streamed.as_str()) {
            Some(rest) if !self.streamed.is_empty() => rest.to_string(),
            _ if self.at_line_start => text.to_string(),
            _ => format!("\n{text}"),
        };
        self.streamed.clear();
        let mut out = self.inline(&shown);
        if !self.at_line_start {
            out.push('\n');
            self.at_line_start = true;
        }
        out
    }

    /// Deltas and the complete text repeating them may be separated by thinking, usage and
    /// messages we do not model; a new prompt, a tool call or the end of the turn separates
    /// answers, so what was streamed before can no longer be repeated.
    fn streamed_boundary(&mut self, kind: &EventKind) {
        let keeps = matches!(
            kind,
            EventKind::Thinking { .. }
                | EventKind::Usage(_)
                | EventKind::Opaque { .. }
                | EventKind::AgentSession { .. }
                | EventKind::Status(_)
        );
        if !keeps {
            self.streamed.clear();
        }
    }

    /// Everything but streamed text, as whole lines.
    fn line(&mut self, session: SessionId, kind: &EventKind) -> String {
        let paint = self.paint;
        match kind {
            EventKind::Output { .. } | EventKind::TextDelta { .. } | EventKind::Text { .. } => {
                String::new()
            }
            EventKind::Started {
                runtime,
                args,
                cwd,
                title,
                ..
            } => {
                if args.is_empty() {
                    format!(
                        "▶ {}: {title} (in {cwd})\n",
                        visible_field(runtime.as_str())
                    )
                } else {
                    format!("▶ {} (in {cwd})\n", args.join(" "))
                }
            }
            EventKind::Prompt { text } => format!("› {}\n", indent_rest(text, "  ")),
            EventKind::Thinking { text } => {
                format!("{}\n", paint.dim(&format!("… {}", indent_rest(text, "  "))))
            }
            EventKind::ToolStarted {
                tool_call,
                name,
                input,
            } => {
                if self.tools.len() >= CTL_TOOL_NAMES {
                    self.tools.clear();
                }
                self.tools.insert(tool_call.clone(), name.clone());
                format!("⚙ {}\n", tool_line(name, input))
            }
            EventKind::ToolUpdated { detail, .. } => {
                let detail = one_line(detail, OUTPUT_LINE_CHARS);
                if detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}\n", paint.dim(&detail))
                }
            }
            EventKind::ToolFinished {
                tool_call,
                ok,
                output,
                diff,
            } => {
                let name = self.tools.remove(tool_call);
                let mark = if *ok {
                    paint.green("✓")
                } else {
                    paint.red("✗")
                };
                let mut out = tool_result(&mark, name.as_deref(), output);
                if let Some(diff) = diff {
                    out.push_str(&diff_text(diff, paint));
                }
                out
            }
            EventKind::ApprovalRequested(request) => {
                let what = match request.kind {
                    ApprovalKind::Tool => tool_line(&request.tool, &request.input),
                    ApprovalKind::Plan => "plan: accept it and leave plan mode".into(),
                };
                let reference = format!("{session}/{}", request.approval);
                format!(
                    "{}\n  allow: muxagent ctl approve {host} {reference}\n  deny:  muxagent ctl deny {host} {reference}\n",
                    paint.bold(&format!("? approval {reference}  {what}")),
                    host = self.host,
                )
            }
            EventKind::ApprovalState { approval, state } => match state {
                // Requested is the request itself; decided is the resolution line.
                ApprovalState::Requested | ApprovalState::Decided => String::new(),
                _ => format!(
                    "  approval {session}/{approval} {}\n",
                    approval_state_word(*state)
                ),
            },
            EventKind::ApprovalResolved {
                approval,
                decision,
                device,
            } => format!(
                "  approval {session}/{approval} {} by {device}\n",
                decision_text(decision)
            ),
            EventKind::PlanProposed { approval, plan } => format!(
                "{}\n{}\n",
                paint.bold(&format!("plan (approval {session}/{approval}):")),
                plan.trim_end()
            ),
            EventKind::Usage(usage) => format!("  {}\n", usage_text(usage)),
            EventKind::Status(status) => format!("● {}\n", status_word(*status)),
            EventKind::TurnFinished { reason } if reason.is_empty() => "  turn finished\n".into(),
            EventKind::TurnFinished { reason } => format!("  turn finished ({reason})\n"),
            EventKind::Error { message } => format!("{}\n", paint.red(&format!("! {message}"))),
            EventKind::Exited {
                code: Some(code), ..
            } => format!("■ exited with code {code}\n"),
            EventKind::Exited {
                signal: Some(signal),
                ..
            } => format!("■ killed by signal {signal}\n"),
            EventKind::Exited { .. } => "■ exited\n".into(),
            EventKind::Opaque { source, raw } => format!(
                "  {}\n",
                paint.dim(&format!(
                    "[{}] {}",
                    &visible_field(source.as_str()),
                    one_line(raw, SUMMARY_CHARS)
                ))
            ),
            EventKind::AgentSession { id } => {
                format!("  {}\n", paint.dim(&format!("agent session {id}")))
            }
        }
    }
}

/// `kind` with every text field an agent or a machine wrote made [visible](visible_text): the
/// transcript prints it with its own styles and nothing else acts on the terminal.
fn revealed(kind: &EventKind) -> EventKind {
    let mut kind = kind.clone();
    let mut fields: Vec<&mut String> = Vec::new();
    match &mut kind {
        EventKind::Started {
            args, cwd, title, ..
        } => {
            fields.extend(args.iter_mut());
            fields.extend([cwd, title]);
        }
        EventKind::Text { text }
        | EventKind::TextDelta { text }
        | EventKind::Thinking { text }
        | EventKind::Output { text, .. }
        | EventKind::Prompt { text }
        | EventKind::TurnFinished { reason: text }
        | EventKind::Error { message: text }
        | EventKind::Opaque { raw: text, .. }
        | EventKind::AgentSession { id: text }
        | EventKind::PlanProposed { plan: text, .. } => fields.push(text),
        // Inputs stay raw: only their summaries are printed, made visible after decoding.
        EventKind::ToolStarted {
            tool_call, name, ..
        } => fields.extend([tool_call, name]),
        EventKind::ToolUpdated { tool_call, detail } => fields.extend([tool_call, detail]),
        EventKind::ToolFinished {
            tool_call,
            output,
            diff,
            ..
        } => {
            fields.extend([tool_call, output]);
            fields.extend(diff.as_mut());
        }
        EventKind::ApprovalRequested(request) => fields.push(&mut request.tool),
        EventKind::ApprovalResolved {
            decision: Decision::Deny { message },
            ..
        } => fields.push(message),
        EventKind::ApprovalResolved { .. }
        | EventKind::ApprovalState { .. }
        | EventKind::Usage(_)
        | EventKind::Status(_)
        | EventKind::Exited { .. } => {}
    }
    for field in fields {
        *field = visible_text(field);
    }
    kind
}

/// `Bash: touch x.txt`, or the bare tool name when the input says nothing; `name` is already
/// visible, the summary of the raw `input` is made so.
fn tool_line(name: &str, input: &str) -> String {
    let summary = visible_text(&input_summary(input));
    if summary.is_empty() || summary == "{}" {
        name.to_string()
    } else {
        format!("{name}: {summary}")
    }
}

/// `✓ Bash  first line` and the next few lines of the output, indented, then how many more.
fn tool_result(mark: &str, name: Option<&str>, output: &str) -> String {
    let head = match name {
        Some(name) => format!("{mark} {name} "),
        None => mark.to_string(),
    };
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let mut out = String::new();
    for (index, line) in lines.iter().take(OUTPUT_LINES).enumerate() {
        let line = cut(line.trim_end(), OUTPUT_LINE_CHARS);
        if index == 0 {
            out.push_str(&format!("{head} {line}\n"));
        } else {
            out.push_str(&format!("    {line}\n"));
        }
    }
    if lines.is_empty() {
        out = format!("{}\n", head.trim_end());
    } else if lines.len() > OUTPUT_LINES {
        out.push_str(&format!(
            "    … {} more lines\n",
            lines.len() - OUTPUT_LINES
        ));
    }
    out
}

/// `line` cut at `max` characters with `…`.
fn cut(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// Following lines of `text` indented by `prefix`, so a multi-line text stays one block.
fn indent_rest(text: &str, prefix: &str) -> String {
    text.trim_end().replace('\n', &format!("\n{prefix}"))
}

/// A unified diff as given, ending with a newline; additions green and removals red on a
/// terminal.
fn diff_text(diff: &str, paint: Paint) -> String {
    let mut out = String::with_capacity(diff.len() + 1);
    for line in diff.lines() {
        let styled = if line.starts_with("+++") || line.starts_with("---") {
            paint.bold(line)
        } else if line.starts_with('+') {
            paint.green(line)
        } else if line.starts_with('-') {
            paint.red(line)
        } else if line.starts_with("@@") {
            paint.cyan(line)
        } else {
            line.to_string()
        };
        out.push_str(&styled);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalRequest, SessionStatus};
    use muxagent_proto::identity::Fingerprint;

    use super::*;

    const S: SessionId = SessionId([0xab; 16]);

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            session: S,
            seq,
            at: 1,
            kind,
        }
    }

    /// The transcript of `kinds`, without colors.
    fn transcript(kinds: Vec<EventKind>) -> String {
        let mut view = Transcript::new("alpha", false);
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| view.event_text(&event(index as u64 + 1, kind)))
            .collect()
    }

    fn delta(text: &str) -> EventKind {
        EventKind::TextDelta { text: text.into() }
    }

    fn text(text: &str) -> EventKind {
        EventKind::Text { text: text.into() }
    }

    fn request(kind: ApprovalKind, tool: &str, input: &str) -> EventKind {
        EventKind::ApprovalRequested(ApprovalRequest {
            approval: 3,
            kind,
            agent_request: "toolu_1".into(),
            tool: tool.into(),
            input: input.into(),
            request_hash: [0; 32],
        })
    }

    /// What [`approval_block`] shows, read back the way a person reads it: the tool, the input
    /// (its `│` lines, marks turned back into characters) and the digest.
    fn read_block(block: &str) -> (String, String, String) {
        let field = |label: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(label))
                .unwrap_or_default()
                .to_string()
        };
        let input: Vec<&str> = block
            .split('\n')
            .filter_map(|line| line.strip_prefix(INPUT_LINE))
            .collect();
        (
            muxagent_client::words::unreveal(&field(TOOL_LINE)).expect("tool"),
            muxagent_client::words::unreveal(&input.join("\n")).expect("input"),
            field(DIGEST_LINE),
        )
    }

    /// Text with what hides: controls, escapes, bidi, zero-width, tags, look-alike marks and
    /// lines that look like the block's own.
    fn tricky() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(
            "([a-z /\\-\\n\\t\\r\\x1b\\x7f\\u{85}\\u{9b}\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}\\u{feff}\\u{e0041}⟪⟫│U+0-9A-F🙂]|  │ |  digest   |  tool     )*",
        )
        .expect("regex")
    }

    proptest::proptest! {
        #[test]
        fn what_ctl_shows_hashes_to_what_it_signs(
            session in proptest::array::uniform16(proptest::num::u8::ANY),
            agent_request in tricky(),
            tool in tricky(),
            input in tricky(),
        ) {
            use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};
            let session = SessionId(session);
            let request = ApprovalRequest {
                approval: 7,
                kind: ApprovalKind::Tool,
                request_hash: muxagent_proto::app::request_hash(&session, &agent_request, &tool, &input),
                agent_request,
                tool,
                input,
            };
            let block = approval_block("alpha", "t", session, &request, "delivered", true);
            // Nothing in the block acts on the terminal or hides.
            proptest::prop_assert!(
                block.chars().all(|c| c == '\n' || !is_hidden(c) || c == '⟪'),
                "{:?}", block
            );
            let (tool, input, digest) = read_block(&block);
            proptest::prop_assert_eq!(&tool, &request.tool);
            proptest::prop_assert_eq!(&input, &request.input);
            let device = Identity::from_secret_bytes(&[5; SECRET_BYTES_LEN]);
            // What ctl approve signs for that digest: the hash of exactly what was read.
            let signed = decide::sign(&device, session, &request, &input, Decision::AllowOnce, 0);
            let signed = signed.expect("signs");
            proptest::prop_assert_eq!(
                signed.body.request_hash,
                muxagent_proto::app::request_hash(&session, &request.agent_request, &tool, &input)
            );
            proptest::prop_assert!(decide::signs_digest(&signed, &digest), "{}", digest);
            let hint = format!("--digest {digest}\n");
            proptest::prop_assert!(block.contains(&hint));
        }
    }

    #[test]
    fn an_approval_is_shown_whole_and_a_cut_one_cannot_be_allowed() {
        let input = format!(
            "{{\"command\":\"echo hi\\n{}rm -rf ~ \u{202e}gnp.x\u{200b}\"}}",
            "a".repeat(40_000)
        );
        let mut request = ApprovalRequest {
            approval: 3,
            kind: ApprovalKind::Tool,
            agent_request: "toolu_1".into(),
            tool: "Bash".into(),
            request_hash: muxagent_proto::app::request_hash(&S, "toolu_1", "Bash", &input),
            input,
        };
        let block = approval_block("al\u{202e}pha", "fix it", S, &request, "delivered", true);
        assert!(
            block.starts_with("al⟪U+202E⟫pha abababab/3  tool delivered\n"),
            "{block}"
        );
        assert!(
            block.contains("rm -rf ~ ⟪U+202E⟫gnp.x⟪U+200B⟫\"}\n"),
            "not cut"
        );
        let digest = decide::digest(S, &request).unwrap();
        assert!(block.contains(&format!(
            "  allow:   muxagent ctl approve al⟪U+202E⟫pha abababab/3 --digest {digest}\n"
        )));
        // The machine cut it: no digest, no way to allow, still a way to deny.
        request.input.truncate(24 * 1024);
        let cut = approval_block("alpha", "fix it", S, &request, "delivered", true);
        assert!(cut.contains("CUT"), "{cut}");
        assert!(cut.contains("  digest   none\n"));
        assert!(!cut.contains("allow:"));
        assert!(cut.contains("  deny:    muxagent ctl deny alpha abababab/3\n"));
    }

    #[test]
    fn json_escapes_what_a_terminal_would_act_on() {
        let value = json!({ "t": "a\u{1b}[2J\u{7f}\u{9b}\u{202e}\u{e0041}⟪b\n" });
        let text = json_text(&value);
        assert_eq!(
            text,
            r#"{"t":"a\u001b[2J\u007f\u009b\u202e\udb40\udc41\u27eab\n"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn the_transcript_shows_what_agents_hide() {
        let out = transcript(vec![
            EventKind::Output {
                stream: Stream::Stdout,
                text: "\u{1b}]0;owned\u{7}ok\r\n".into(),
            },
            text("safe \u{202e}txt.exe"),
            EventKind::ToolStarted {
                tool_call: "t".into(),
                name: "Ba\u{200b}sh".into(),
                input: r#"{"command":"ls\u001b[8m hidden"}"#.into(),
            },
            EventKind::Error {
                message: "\u{9b}2J".into(),
            },
        ]);
        assert_eq!(
            out,
            "⟪U+001B⟫]0;owned⟪U+0007⟫ok⟪U+000D⟫\nsafe ⟪U+202E⟫txt.exe\n\
             ⚙ Ba⟪U+200B⟫sh: ls⟪U+001B⟫[8m hidden\n! ⟪U+009B⟫2J\n"
        );
    }

    #[test]
    fn summaries_pick_the_telling_field() {
        assert_eq!(
            input_summary(r#"{"description":"make a file","command":"touch x.txt"}"#),
            "touch x.txt"
        );
        assert_eq!(
            input_summary(r#"{"content":"hi","file_path":"/w/a.rs"}"#),
            "/w/a.rs"
        );
        assert_eq!(
            input_summary(r#"{"pattern":"fn main","path":"src"}"#),
            "src"
        );
        assert_eq!(
            input_summary(r#"{"command":["bash","-lc","ls -la"]}"#),
            "bash -lc ls -la"
        );
        // The agent's first string field, not the alphabetically first.
        assert_eq!(
            input_summary(r#"{"url":"https://x.test","a":1,"prompt":"read"}"#),
            "https://x.test"
        );
        assert_eq!(input_summary(r#"{"n":1}"#), r#"{"n":1}"#);
        assert_eq!(input_summary("not json\n at all"), "not json at all");
        let long = format!(r#"{{"command":"echo {}"}}"#, "y".repeat(300));
        let summary = input_summary(&long);
        assert_eq!(summary.chars().count(), SUMMARY_CHARS + 1);
        assert!(summary.ends_with('…'));
        assert_eq!(
            input_summary("{\"command\":\"cat <<EOF\\nline\\nEOF\"}"),
            "cat <<EOF line EOF"
        );
        // An escape spelled as JSON is decoded (the transcript shows it as a mark).
        assert_eq!(
            input_summary(r#"{"command":"ls\u001b[8m \u202egnp"}"#),
            "ls\u{1b}[8m \u{202e}gnp"
        );
    }

    #[test]
    fn numbers_and_usage() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5261), "5,261");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let usage = Usage {
            input_tokens: 5261,
            output_tokens: 37,
            cached_tokens: 0,
            cost_usd_micros: Some(21_800),
        };
        assert_eq!(usage_text(&usage), "tokens 5,261 in / 37 out · $0.0218");
        let free = Usage {
            cost_usd_micros: None,
            ..usage
        };
        assert_eq!(usage_text(&free), "tokens 5,261 in / 37 out");
    }

    #[test]
    fn streamed_text_is_not_printed_twice() {
        let out = transcript(vec![
            delta("Hel"),
            delta("lo."),
            EventKind::Opaque {
                source: "claude".try_into().unwrap(),
                raw: "{}".into(),
            },
            text("Hello."),
            EventKind::TurnFinished {
                reason: "end_turn".into(),
            },
        ]);
        assert_eq!(out, "Hello.\n  [claude] {}\n  turn finished (end_turn)\n");
    }

    #[test]
    fn a_text_longer_than_its_deltas_prints_the_rest_and_other_texts_in_full() {
        assert_eq!(transcript(vec![delta("Hel"), text("Hello")]), "Hello\n");
        assert_eq!(transcript(vec![delta("abc"), text("xyz")]), "abc\nxyz\n");
        assert_eq!(transcript(vec![text("one"), text("one")]), "one\none\n");
        // A tool call in between: the next answer is new text.
        let call = EventKind::ToolStarted {
            tool_call: "t".into(),
            name: "Bash".into(),
            input: r#"{"command":"ls"}"#.into(),
        };
        assert_eq!(
            transcript(vec![delta("ok"), call, text("ok")]),
            "ok\n⚙ Bash: ls\nok\n"
        );
    }

    #[test]
    fn tools_results_and_diffs() {
        let out = transcript(vec![
            EventKind::ToolStarted {
                tool_call: "t1".into(),
                name: "Bash".into(),
                input: r#"{"command":"touch x.txt","description":"create"}"#.into(),
            },
            EventKind::ToolFinished {
                tool_call: "t1".into(),
                ok: true,
                output: String::new(),
                diff: None,
            },
            EventKind::ToolStarted {
                tool_call: "t2".into(),
                name: "Bash".into(),
                input: r#"{"command":"seq 8"}"#.into(),
            },
            EventKind::ToolFinished {
                tool_call: "t2".into(),
                ok: false,
                output: "1\n2\n3\n4\n5\n6\n7\n8\n".into(),
                diff: None,
            },
            EventKind::ToolFinished {
                tool_call: "t3".into(),
                ok: true,
                output: "patched".into(),
                diff: Some("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new".into()),
            },
        ]);
        assert_eq!(
            out,
            "⚙ Bash: touch x.txt\n✓ Bash\n⚙ Bash: seq 8\n✗ Bash  1\n    2\n    3\n    4\n    5\n    … 3 more lines\n\
             ✓ patched\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"
        );
        let mut colored = Transcript::new("alpha", true);
        let diff = colored.event_text(&event(
            1,
            EventKind::ToolFinished {
                tool_call: "t".into(),
                ok: true,
                output: String::new(),
                diff: Some("-old\n+new\n".into()),
            },
        ));
        assert!(
            diff.contains("\x1b[31m-old\x1b[0m\n\x1b[32m+new\x1b[0m\n"),
            "{diff:?}"
        );
    }

    #[test]
    fn approvals_show_the_commands_to_answer_them() {
        let device = Fingerprint([7; 32]);
        let out = transcript(vec![
            request(ApprovalKind::Tool, "Bash", r#"{"command":"touch x.txt"}"#),
            EventKind::ApprovalState {
                approval: 3,
                state: ApprovalState::Delivered,
            },
            EventKind::ApprovalResolved {
                approval: 3,
                decision: Decision::Deny {
                    message: "not now".into(),
                },
                device,
            },
            EventKind::ApprovalState {
                approval: 3,
                state: ApprovalState::Decided,
            },
            EventKind::ApprovalState {
                approval: 3,
                state: ApprovalState::Applied,
            },
        ]);
        let s = "abababab";
        assert_eq!(
            out,
            format!(
                "? approval {s}/3  Bash: touch x.txt\n  allow: muxagent ctl approve alpha {s}/3\n  deny:  muxagent ctl deny alpha {s}/3\n\
                 \x20 approval {s}/3 delivered\n  approval {s}/3 denied (not now) by {device}\n  approval {s}/3 applied\n"
            )
        );
    }

    #[test]
    fn plans_thinking_usage_and_lines_after_streamed_text() {
        let out = transcript(vec![
            EventKind::Thinking {
                text: "hmm\nwell".into(),
            },
            EventKind::PlanProposed {
                approval: 3,
                plan: "1. do\n2. check\n".into(),
            },
            request(ApprovalKind::Plan, "ExitPlanMode", r#"{"plan":"1. do"}"#),
            delta("partial"),
            EventKind::Usage(Usage {
                input_tokens: 10,
                output_tokens: 2,
                cached_tokens: 0,
                cost_usd_micros: None,
            }),
            EventKind::AgentSession { id: "abc".into() },
            EventKind::Status(SessionStatus::Idle),
        ]);
        let s = "abababab";
        assert_eq!(
            out,
            format!(
                "… hmm\n  well\nplan (approval {s}/3):\n1. do\n2. check\n\
                 ? approval {s}/3  plan: accept it and leave plan mode\n  allow: muxagent ctl approve alpha {s}/3\n  deny:  muxagent ctl deny alpha {s}/3\n\
                 partial\n  tokens 10 in / 2 out\n  agent session abc\n● idle\n"
            )
        );
        let mut colored = Transcript::new("alpha", true);
        let thinking = colored.event_text(&event(1, EventKind::Thinking { text: "x".into() }));
        assert_eq!(thinking, "\x1b[2m… x\x1b[0m\n");
    }

    #[test]
    fn command_output_stays_as_it_came() {
        let out = transcript(vec![
            EventKind::Started {
                runtime: "command".try_into().unwrap(),
                args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                cwd: "/w".into(),
                title: "echo hi".into(),
                device: Fingerprint([1; 32]),
            },
            EventKind::Output {
                stream: Stream::Stdout,
                text: "hi\nno newline".into(),
            },
            EventKind::Status(SessionStatus::Done),
        ]);
        assert_eq!(out, "▶ sh -c echo hi (in /w)\nhi\nno newline\n● done\n");
    }

    #[test]
    fn json_keeps_fields_and_adds_summaries() {
        let value = event_json(&event(
            4,
            request(ApprovalKind::Tool, "Bash", r#"{"command":"ls"}"#),
        ));
        assert_eq!(value["kind"], "approval_requested");
        assert_eq!(value["seq"], 4);
        assert_eq!(value["approval"], 3);
        assert_eq!(value["approval_kind"], "tool");
        assert_eq!(value["plan"], false);
        assert_eq!(value["summary"], "ls");
        let resolved = event_json(&event(
            5,
            EventKind::ApprovalResolved {
                approval: 3,
                decision: Decision::Deny {
                    message: "no".into(),
                },
                device: Fingerprint([1; 32]),
            },
        ));
        assert_eq!(resolved["decision"], "deny: no");
        assert_eq!(resolved["message"], "no");
        let state = event_json(&event(
            6,
            EventKind::ApprovalState {
                approval: 3,
                state: ApprovalState::Withdrawn,
            },
        ));
        assert_eq!(state["state"], "withdrawn");
    }
}
