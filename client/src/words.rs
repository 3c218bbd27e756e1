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

use muxagent_proto::text::MARK_OPEN;
pub use muxagent_proto::text::is_hidden;

/// What closes a mark.
const MARK_CLOSE: char = '⟫';

/// The mark that shows hidden character `c`: `⟪U+202E⟫`.
fn mark(c: char) -> String {
    format!("{MARK_OPEN}U+{:04X}{MARK_CLOSE}", u32::from(c))
}

/// `text` whole, with every [hidden](is_hidden) character written as `⟪U+XXXX⟫`; newlines and
/// tabs stay. Nothing is cut or folded, and [`unreveal`] gives `text` back, so what a person
/// reads is exactly what was sent (for an approval's input: exactly what is signed).
pub fn visible_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.push_str(&mark(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` whole on one line: as [`visible_text`], and newlines and tabs are marks too. For a
/// field that must read as one word or line (a tool's name, a hostname) and be exact.
pub fn visible_field(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) || c == '\n' || c == '\t' {
            out.push_str(&mark(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The text [`visible_text`] or [`visible_field`] showed, back: every mark becomes its
/// character. `None` when `shown` is not something they print (a stray `⟪`, a bad mark).
pub fn unreveal(shown: &str) -> Option<String> {
    let mut out = String::with_capacity(shown.len());
    let mut rest = shown;
    while let Some(at) = rest.find(MARK_OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK_OPEN.len_utf8()..];
        let end = after.find(MARK_CLOSE)?;
        let hex = after[..end].strip_prefix("U+")?;
        if !(4..=6).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
        if mark(c) != format!("{MARK_OPEN}{}{MARK_CLOSE}", &after[..end]) {
            return None;
        }
        out.push(c);
        rest = &after[end + MARK_CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    Some(out)
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
        for piece in space.into_iter().chain(
            word.chars()
                .map(|c| if is_hidden(c) { mark(c) } else { c.to_string() }),
        ) {
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
        assert!(!is_hidden('é') && !is_hidden('\u{a0}') && is_hidden('\u{9b}'));
    }

    #[test]
    fn characters_that_take_no_room_are_marks_too() {
        for c in [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{2028}',
            '\u{e0041}',
            '⟪',
        ] {
            assert!(is_hidden(c), "{:04X}", u32::from(c));
        }
        assert_eq!(visible_text("a\u{200b}b\n\tc"), "a⟪U+200B⟫b\n\tc");
        assert_eq!(visible_field("a\nb\tc"), "a⟪U+000A⟫b⟪U+0009⟫c");
        // Tag characters spell ASCII no one sees.
        assert_eq!(visible_text("ok\u{e0072}"), "ok⟪U+E0072⟫");
        // A literal mark in the text cannot pass for one.
        assert_eq!(visible_text("⟪U+202E⟫"), "⟪U+27EA⟫U+202E⟫");
        assert_eq!(unreveal("⟪U+27EA⟫U+202E⟫").as_deref(), Some("⟪U+202E⟫"));
    }

    /// Text with what hides: controls, bidi, zero-width, tags, the mark's own brackets.
    fn tricky() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(
            "([a-z \\n\\t\\r\\x1b\\x7f\\u{85}\\u{9b}\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}\\u{feff}\\u{e0041}⟪⟫U+0-9A-F🙂é])*",
        )
        .expect("regex")
    }

    proptest::proptest! {
        #[test]
        fn what_is_shown_gives_back_the_text_and_hides_nothing(text in tricky()) {
            for shown in [visible_text(&text), visible_field(&text)] {
                proptest::prop_assert_eq!(unreveal(&shown), Some(text.clone()));
                proptest::prop_assert!(
                    shown.chars().all(|c| !is_hidden(c) || c == MARK_OPEN),
                    "{:?}", shown
                );
            }
            proptest::prop_assert!(!visible_field(&text).contains(['\n', '\t']));
        }
    }

    #[test]
    fn only_what_the_visible_forms_print_unreveals() {
        assert_eq!(unreveal("plain ⟫ text").as_deref(), Some("plain ⟫ text"));
        for bad in [
            "⟪",
            "⟪U+202E",
            "⟪U+20E⟫",
            "⟪u+202E⟫",
            "⟪U+202e⟫",
            "⟪U+D800⟫",
            "⟪U+0202E⟫",
        ] {
            assert_eq!(unreveal(bad), None, "{bad}");
        }
    }
}
