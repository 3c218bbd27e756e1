//! How a runtime shows what a tool did: file changes as unified diffs built one way for every
//! agent (`ToolFinished::diff`), and text read out of an agent's JSON.
//!
//! A diff is git's format: a `--- old` / `+++ new` header per file ([`NO_FILE`] for a side that
//! does not exist), `@@ -start,count +start,count @@` hunks, `\ No newline at end of file` after
//! a last line without one. Lines are split on `\n` only, so a `\r` stays in the line: the diff
//! shows the file's bytes.

use crate::limits::AGENT_DIFF_TIMEOUT_MS;
use std::time::Duration;

use serde_json::Value;

/// The name of the side of a diff that does not exist (a new or a deleted file).
pub const NO_FILE: &str = "/dev/null";

/// How long a diff of two texts may take before it settles for a coarser one: it runs on the
/// daemon's only thread.
const DIFF_TIMEOUT: Duration = Duration::from_millis(AGENT_DIFF_TIMEOUT_MS);

/// How a hunk's line counts are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// Git's way: a count of 1 is left out (`@@ -0,0 +1 @@`).
    Git,
    /// Every count written out (`@@ -0,0 +1,1 @@`), as Claude Code's own patches are.
    Whole,
}

/// Which side of a diff a whole file is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A new file: every line added.
    Added,
    /// A deleted file: every line removed.
    Deleted,
}

/// `diff -u` of `old` (named `old_name`) against `new` (named `new_name`), git's counts, three
/// lines of context; empty if they are the same.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str) -> String {
    similar::TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// A file's header: `--- old_name` / `+++ new_name`.
pub fn header(diff: &mut String, old_name: &str, new_name: &str) {
    diff.push_str(&format!("--- {old_name}\n+++ {new_name}\n"));
}

/// A hunk's header.
pub fn hunk_header(diff: &mut String, counts: Counts, old: (u64, u64), new: (u64, u64)) {
    let range = |(start, count): (u64, u64)| match (counts, count) {
        (Counts::Git, 1) => start.to_string(),
        _ => format!("{start},{count}"),
    };
    diff.push_str(&format!("@@ -{} +{} @@\n", range(old), range(new)));
}

/// One hunk holding all of `content` (nothing for an empty file), every line added or removed.
pub fn whole_file(diff: &mut String, side: Side, counts: Counts, content: &str) {
    let lines: Vec<&str> = content.split_terminator('\n').collect();
    if lines.is_empty() {
        return;
    }
    let all = (1, lines.len() as u64);
    let (old, new, sign) = match side {
        Side::Added => ((0, 0), all, '+'),
        Side::Deleted => (all, (0, 0), '-'),
    };
    hunk_header(diff, counts, old, new);
    for line in lines {
        diff.push(sign);
        diff.push_str(line);
        diff.push('\n');
    }
    if !content.ends_with('\n') {
        diff.push_str("\\ No newline at end of file\n");
    }
}

/// The text at `pointer` (RFC 6901, `/a/0/b`) in `value`, if it is a string.
pub fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_files_in_either_count_style() {
        let mut diff = String::new();
        whole_file(&mut diff, Side::Added, Counts::Git, "one\n");
        whole_file(&mut diff, Side::Deleted, Counts::Git, "a\r\nb");
        whole_file(&mut diff, Side::Added, Counts::Whole, "one\n");
        whole_file(&mut diff, Side::Added, Counts::Whole, "");
        assert_eq!(
            diff,
            "@@ -0,0 +1 @@\n+one\n\
             @@ -1,2 +0,0 @@\n-a\r\n-b\n\\ No newline at end of file\n\
             @@ -0,0 +1,1 @@\n+one\n"
        );
    }

    #[test]
    fn a_whole_file_reads_like_a_diff_of_the_two_texts() {
        for content in ["one\n", "a\nb\n", "a\r\nb", "x"] {
            let mut diff = String::new();
            header(&mut diff, NO_FILE, "b/f");
            whole_file(&mut diff, Side::Added, Counts::Git, content);
            assert_eq!(diff, unified(NO_FILE, "b/f", "", content), "{content:?}");
        }
    }
}
