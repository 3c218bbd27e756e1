//! How sessions and events look to people (text) and to scripts (`--json`).

use muxagent_proto::app::{
    ApprovalKind, Decision, Event, EventKind, SessionInfo, SessionStatus, Stream,
};
use serde_json::json;

/// A status as one word.
pub fn status_word(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Idle => "idle",
        SessionStatus::Running => "running",
        SessionStatus::WaitingApproval => "waiting_approval",
        SessionStatus::Done => "done",
        SessionStatus::Error => "error",
        SessionStatus::Stopped => "stopped",
    }
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

/// An event as a JSON object.
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
            json!({ "kind": "tool_started", "tool_call": tool_call, "name": name, "input": input })
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
        EventKind::ApprovalRequested(request) => {
            json!({ "kind": "approval_requested", "approval": request.approval, "tool": request.tool, "input": request.input, "plan": request.kind == ApprovalKind::Plan })
        }
        EventKind::ApprovalState { approval, state } => {
            json!({ "kind": "approval_state", "approval": approval, "state": format!("{state:?}").to_lowercase() })
        }
        EventKind::ApprovalResolved {
            approval,
            decision,
            device,
        } => {
            json!({ "kind": "approval_resolved", "approval": approval, "decision": decision_word(decision), "device": device.to_string() })
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

fn decision_word(decision: &Decision) -> String {
    match decision {
        Decision::AllowOnce => "allow".into(),
        Decision::AllowAlways => "allow_always".into(),
        Decision::Deny { message } => format!("deny: {message}"),
    }
}

/// An event as text for `ctl watch`: command output as it came, everything else on a line of
/// its own, marked.
pub fn event_text(event: &Event) -> String {
    match &event.kind {
        EventKind::Output { text, .. } | EventKind::TextDelta { text } => text.clone(),
        EventKind::Text { text } => format!("{text}\n"),
        EventKind::Started { args, cwd, .. } => format!("▶ {} (in {cwd})\n", args.join(" ")),
        EventKind::Prompt { text } => format!("› {text}\n"),
        EventKind::Thinking { text } => format!("… {text}\n"),
        EventKind::ToolStarted { name, input, .. } => format!("⚙ {name} {input}\n"),
        EventKind::ToolUpdated { detail, .. } => format!("  {detail}\n"),
        EventKind::ToolFinished {
            ok, output, diff, ..
        } => {
            let mut out = format!("{} {}\n", if *ok { "✓" } else { "✗" }, output.trim_end());
            if let Some(diff) = diff {
                out.push_str(diff);
                if !diff.ends_with('\n') {
                    out.push('\n');
                }
            }
            out
        }
        EventKind::ApprovalRequested(request) => format!(
            "? approval {}/{}: {} {}\n",
            event.session, request.approval, request.tool, request.input
        ),
        EventKind::ApprovalState { approval, state } => {
            format!("  approval {approval}: {state:?}\n")
        }
        EventKind::ApprovalResolved {
            approval,
            decision,
            device,
        } => {
            format!(
                "  approval {approval}: {} by {device}\n",
                decision_word(decision)
            )
        }
        EventKind::PlanProposed { plan, .. } => format!("plan:\n{plan}\n"),
        EventKind::Usage(usage) => match usage.cost_usd_micros {
            Some(micros) => format!(
                "  tokens {} in / {} out, ${:.4}\n",
                usage.input_tokens,
                usage.output_tokens,
                micros as f64 / 1e6
            ),
            None => format!(
                "  tokens {} in / {} out\n",
                usage.input_tokens, usage.output_tokens
            ),
        },
        EventKind::Status(status) => format!("● {}\n", status_word(*status)),
        EventKind::TurnFinished { reason } => format!("  turn finished ({reason})\n"),
        EventKind::Error { message } => format!("! {message}\n"),
        EventKind::Exited {
            code: Some(code), ..
        } => format!("■ exited with code {code}\n"),
        EventKind::Exited {
            signal: Some(signal),
            ..
        } => format!("■ killed by signal {signal}\n"),
        EventKind::Exited { .. } => "■ exited\n".into(),
        EventKind::Opaque { source, raw } => format!("  [{}] {raw}\n", source.as_str()),
        EventKind::AgentSession { id } => format!("  agent session {id}\n"),
    }
}
