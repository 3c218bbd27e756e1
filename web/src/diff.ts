// Diffs in tool inputs and outputs: recognise a unified diff, and derive one from an edit
// tool's old and new text, so the UI can colour added and removed lines. The exact input is
// always shown as well; a derived diff is only a reading aid.

export type LineKind = "add" | "del" | "hunk" | "meta" | "same";

export interface DiffLine {
  kind: LineKind;
  text: string;
}

/** Whether `text` reads as a unified diff (git's, or a plain `---`/`+++`/`@@` one). */
export function isDiff(text: string): boolean {
  if (/^(diff --git |Index: |\*\*\* Begin Patch)/.test(text)) return true;
  return /^--- .*\n\+\+\+ .*\n@@ /m.test(text) || /^@@ -\d+(,\d+)? \+\d+(,\d+)? @@/m.test(text);
}

/** The lines of a diff, each with its kind. */
export function diffLines(text: string): DiffLine[] {
  return text.split("\n").map((line) => ({ kind: lineKind(line), text: line }));
}

function lineKind(line: string): LineKind {
  if (/^(\+\+\+ |--- |diff |index |Index: |\*\*\* |new file|deleted file|similarity|rename )/.test(line)) {
    return "meta";
  }
  if (line.startsWith("@@")) return "hunk";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  return "same";
}

/** For an edit tool's JSON input with old and new text (Claude's Edit/MultiEdit, or any input
 *  with `old_string`/`new_string`, `oldText`/`newText`), the change as diff lines; otherwise
 *  null. A `diff`/`patch` string field is returned as a diff too. */
export function editDiff(input: string): DiffLine[] | null {
  let value: unknown;
  try {
    value = JSON.parse(input);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const record = value as Record<string, unknown>;
  for (const key of ["diff", "patch", "unified_diff"]) {
    const text = record[key];
    if (typeof text === "string" && isDiff(text)) return diffLines(text);
  }
  const edits = Array.isArray(record.edits) ? record.edits : [record];
  const out: DiffLine[] = [];
  const path = record.file_path ?? record.path;
  if (typeof path === "string") out.push({ kind: "meta", text: path });
  let found = false;
  for (const edit of edits) {
    if (typeof edit !== "object" || edit === null) continue;
    const e = edit as Record<string, unknown>;
    const before = e.old_string ?? e.oldText ?? e.old_text;
    const after = e.new_string ?? e.newText ?? e.new_text;
    if (typeof before !== "string" || typeof after !== "string") continue;
    found = true;
    out.push({ kind: "hunk", text: "@@" });
    for (const line of before.split("\n")) out.push({ kind: "del", text: "-" + line });
    for (const line of after.split("\n")) out.push({ kind: "add", text: "+" + line });
  }
  return found ? out : null;
}
