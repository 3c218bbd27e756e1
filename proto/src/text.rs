//! Characters that hide or reorder what a person reads. Text an agent or a machine wrote shows
//! them as marks (`muxagent_client::words`, the web app's `src/text.ts`); names a person
//! identifies a machine by (hostnames) may not contain them at all.

/// The character that opens a visible mark, `⟪U+202E⟫`; hidden itself, so no text passes a
/// literal mark off as one.
pub const MARK_OPEN: char = '⟪';

/// Whether `c` is shown as a mark instead of acting on (or vanishing from) the text around it:
/// C0 and C1 controls except `\n` and `\t`, DEL, the bidi embeddings, overrides and isolates,
/// the directional marks, the characters that take no room (zero-width space and joiners, word
/// joiner and invisible operators, soft hyphen, byte-order mark, the Hangul and Mongolian
/// fillers, interlinear annotation, the tag characters that can smuggle ASCII past a reader),
/// the line and paragraph separators, and [`MARK_OPEN`]. The same set as `isHidden` in the web
/// app's `src/text.ts`: the two must agree.
pub fn is_hidden(c: char) -> bool {
    let code = u32::from(c);
    if c == '\n' || c == '\t' {
        return false;
    }
    code < 0x20
        || (0x7f..=0x9f).contains(&code)
        || matches!(
            code,
            0x00ad | 0x034f | 0x061c | 0x115f | 0x1160 | 0x180e | 0x3164 | 0xfeff | 0xffa0
        )
        || (0x200b..=0x200f).contains(&code)
        || (0x2028..=0x202e).contains(&code)
        || (0x2060..=0x2069).contains(&code)
        || c == MARK_OPEN
        || (0xfff9..=0xfffb).contains(&code)
        || (0xe0000..=0xe007f).contains(&code)
}
