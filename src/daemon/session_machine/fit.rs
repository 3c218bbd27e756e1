//! What the machine does to what a runtime reports before it is logged: text cut to fit one
//! channel message, usage deltas added up.

use crate::limits::EVENT_FIELD_MAX_LEN;
use muxagent_proto::app::{EventKind, Usage};

/// Add a turn's usage to a session's total.
pub fn add_usage(total: Usage, delta: Usage) -> Usage {
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
