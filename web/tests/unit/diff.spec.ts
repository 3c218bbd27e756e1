import { expect, test } from "@playwright/test";
import { diffLines, editDiff, isDiff } from "../../src/diff";

test("unified diffs are recognised and their lines classified", () => {
  const diff = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n keep\n-old\n+new";
  expect(isDiff(diff)).toBe(true);
  expect(isDiff("diff --git a/x b/x\n")).toBe(true);
  expect(isDiff('{"command":"ls"}')).toBe(false);
  expect(diffLines(diff).map((line) => line.kind)).toEqual(["meta", "meta", "hunk", "same", "del", "add"]);
});

test("an edit's old and new text become a diff", () => {
  const input = JSON.stringify({ file_path: "/w/a.txt", old_string: "one\ntwo", new_string: "one\n2" });
  expect(editDiff(input)).toEqual([
    { kind: "meta", text: "/w/a.txt" },
    { kind: "hunk", text: "@@" },
    { kind: "del", text: "-one" },
    { kind: "del", text: "-two" },
    { kind: "add", text: "+one" },
    { kind: "add", text: "+2" },
  ]);
  expect(editDiff('{"command":"touch x"}')).toBeNull();
  expect(editDiff("not json")).toBeNull();
});
