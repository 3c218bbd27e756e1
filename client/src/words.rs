//! The words people read for a session's status, an approval's state and kind, and a decision:
//! `ctl` prints them and the web app shows them, so both say the same thing. The one-word forms
//! are also the values of the web app's contract (`web/src/contract.ts`).

use muxagent_proto::app::{ApprovalKind, ApprovalState, Decision, SessionStatus};

/// How long a one-line summary (a deny message, a tool's input) may get, in characters.
pub const SUMMARY_CHARS: usize = 100;

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

/// An approval state as one word.
pub fn approval_state_word(state: ApprovalState) -> &'static str {
    match state {
        ApprovalState::Requested => "requested",
        ApprovalState::Delivered => "delivered",
        ApprovalState::Decided => "decided",
        ApprovalState::Applied => "applied",
        ApprovalState::Withdrawn => "withdrawn",
        ApprovalState::Expired => "expired",
    }
}

/// An approval kind as one word.
pub fn approval_kind_word(kind: ApprovalKind) -> &'static str {
    match kind {
        ApprovalKind::Tool => "tool",
        ApprovalKind::Plan => "plan",
    }
}

/// A decision for people: `allowed once`, `allowed always`, `denied (why)`.
pub fn decision_text(decision: &Decision) -> String {
    match decision {
        Decision::AllowOnce => "allowed once".into(),
        Decision::AllowAlways => "allowed always".into(),
        Decision::Deny { message } if message.is_empty() => "denied".into(),
        Decision::Deny { message } => format!("denied ({})", one_line(message, SUMMARY_CHARS)),
    }
}

/// `text` on one line: whitespace runs (newlines included) become one space, and it is cut at
/// `max` characters with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        for c in (!out.is_empty())
            .then_some(' ')
            .into_iter()
            .chain(word.chars())
        {
            if count == max {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_as_people_say_them() {
        assert_eq!(decision_text(&Decision::AllowOnce), "allowed once");
        assert_eq!(decision_text(&Decision::AllowAlways), "allowed always");
        let deny = |message: &str| Decision::Deny {
            message: message.into(),
        };
        assert_eq!(decision_text(&deny("")), "denied");
        assert_eq!(decision_text(&deny("not\n  now")), "denied (not now)");
        let long = decision_text(&deny(&"x".repeat(500)));
        assert_eq!(long.chars().count(), "denied ()".len() + SUMMARY_CHARS + 1);
    }

    #[test]
    fn one_line_joins_and_cuts() {
        assert_eq!(one_line("a\n\nb  c", 10), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("", 3), "");
    }
}
