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

/// Whether `c` is shown as a mark instead of acting on the text around it: C0 and C1 controls
/// except `\n` and `\t`, DEL, the bidi embeddings, overrides and isolates, and the directional
/// marks. The same set as `isHidden` in the web app's `src/text.ts`: the two must agree.
pub fn is_hidden(c: char) -> bool {
    let code = u32::from(c);
    if c == '\n' || c == '\t' {
        return false;
    }
    code < 0x20
        || (0x7f..=0x9f).contains(&code)
        || code == 0x061c
        || code == 0x200e
        || code == 0x200f
        || (0x202a..=0x202e).contains(&code)
        || (0x2066..=0x2069).contains(&code)
}

/// `text` on one line, as [`one_line`], with every [hidden](is_hidden) character written as
/// `⟪U+XXXX⟫` (as the web app's `revealPlain` does), cut at `max` characters with `…`; a mark
/// counts as the characters it shows and is never cut in two. For places that show plain text
/// no one escapes further: a notification's title and body.
pub fn visible_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        let space = (!out.is_empty()).then(|| " ".to_string());
        for piece in space.into_iter().chain(word.chars().map(|c| {
            if is_hidden(c) {
                format!("⟪U+{:04X}⟫", u32::from(c))
            } else {
                c.to_string()
            }
        })) {
            let width = piece.chars().count();
            if count + width > max {
                out.push('…');
                return out;
            }
            out.push_str(&piece);
            count += width;
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

    #[test]
    fn hidden_characters_become_marks_and_are_never_cut_in_two() {
        assert_eq!(visible_line("rm\u{202E}txt.exe", 40), "rm⟪U+202E⟫txt.exe");
        assert_eq!(
            visible_line("a\x1b[31mb\u{7f}", 40),
            "a⟪U+001B⟫[31mb⟪U+007F⟫"
        );
        assert_eq!(
            visible_line("a\u{2066}b\u{2069}\u{200f}", 40),
            "a⟪U+2066⟫b⟪U+2069⟫⟪U+200F⟫"
        );
        // Whitespace (newlines, tabs, carriage returns) folds to one space, as in `one_line`.
        assert_eq!(visible_line("a\r\n\tb", 40), "a b");
        assert_eq!(visible_line("abc\u{202E}def", 5), "abc…");
        assert_eq!(visible_line("abcdef", 3), "abc…");
        assert_eq!(visible_line("abc", 3), "abc");
        assert_eq!(visible_line("ab\u{85}c", 9), "ab c");
        assert!(!is_hidden('é') && !is_hidden('\u{200b}') && is_hidden('\u{9b}'));
    }
}
