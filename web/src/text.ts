// Untrusted text made safe to look at. Everything an agent or a machine sent is rendered as text
// (Preact escapes it; nothing here builds HTML), and characters that could hide or reorder what
// a person reads (C0/C1 controls, bidi overrides and isolates, directional marks) become visible
// marks instead of acting on the text around them.

/** A run of plain text, or one invisible character shown as a mark. */
export type Piece = string | { mark: string };

/** Whether code point `code` is shown as a mark: C0 and C1 controls except \n and \t, DEL,
 *  the bidi embeddings/overrides/isolates and the directional marks, the characters that take
 *  no room (zero-width space and joiners, word joiner, invisible operators, soft hyphen, BOM,
 *  the Hangul and Mongolian fillers, interlinear annotation, the tag characters), the line and
 *  paragraph separators, and `⟪` itself (so no text passes off a literal mark). The same set
 *  as `is_hidden` in client/src/words.rs: the two must agree. */
export function isHidden(code: number): boolean {
  if (code === 0x0a || code === 0x09) return false;
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    [0x00ad, 0x034f, 0x061c, 0x115f, 0x1160, 0x180e, 0x3164, 0xfeff, 0xffa0, 0x27ea].includes(code) ||
    (code >= 0x200b && code <= 0x200f) ||
    (code >= 0x2028 && code <= 0x202e) ||
    (code >= 0x2060 && code <= 0x2069) ||
    (code >= 0xfff9 && code <= 0xfffb) ||
    (code >= 0xe0000 && code <= 0xe007f)
  );
}

/** The mark's text: `U+202E`. */
export function markName(code: number): string {
  return "U+" + code.toString(16).toUpperCase().padStart(4, "0");
}

/** `text` split into plain runs and marks, in order; joining the runs and the marks' originals
 *  gives back `text`. */
export function reveal(text: string): Piece[] {
  const out: Piece[] = [];
  let start = 0;
  for (let i = 0; i < text.length; ) {
    const code = text.codePointAt(i) ?? 0;
    const width = code > 0xffff ? 2 : 1;
    if (isHidden(code)) {
      if (i > start) out.push(text.slice(start, i));
      out.push({ mark: markName(code) });
      start = i + width;
    }
    i += width;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** `text` with every hidden character written as ⟪U+XXXX⟫ (for places that take plain
 *  strings: titles, option labels, aria labels). */
export function revealPlain(text: string): string {
  return reveal(text)
    .map((piece) => (typeof piece === "string" ? piece : `⟪${piece.mark}⟫`))
    .join("");
}
