import { expect, test } from "@playwright/test";
import type { TranscriptEvent } from "../../src/contract";
import { Transcript } from "../../src/transcript";

let seq = 0;
const at = 0;
function ev(body: Record<string, unknown>): TranscriptEvent {
  return { seq: ++seq, at, ...body } as TranscriptEvent;
}

test("streamed text merges into one block; each seq counts once", () => {
  seq = 0;
  const t = new Transcript();
  const events = [ev({ kind: "prompt", text: "hi" }), ev({ kind: "text_delta", text: "Hel" }), ev({ kind: "status", status: "running" }), ev({ kind: "text_delta", text: "lo" })];
  t.add(events.slice(0, 2));
  t.add(events.slice(1)); // a repeat of seq 2
  expect(t.blocks.map((b) => b.kind)).toEqual(["prompt", "text"]);
  expect(t.blocks[1]).toMatchObject({ text: "Hello" });
  expect(t.add(events)).toBe(false);
});

test("output merges per stream; tools and approvals fold into one card", () => {
  seq = 0;
  const t = new Transcript();
  t.add([
    ev({ kind: "output", stream: "stdout", text: "a\n" }),
    ev({ kind: "output", stream: "stdout", text: "b\n" }),
    ev({ kind: "output", stream: "stderr", text: "oops\n" }),
    ev({ kind: "tool_started", toolCall: "t1", name: "Bash", input: '{"command":"ls"}' }),
    ev({ kind: "plan_proposed", approval: 1, plan: "1. do it" }),
    ev({ kind: "approval_requested", approval: 1, approvalKind: "plan", tool: "ExitPlanMode", input: "{}" }),
    ev({ kind: "approval_state", approval: 1, state: "delivered" }),
    ev({ kind: "tool_updated", toolCall: "t1", detail: "half" }),
    ev({ kind: "tool_finished", toolCall: "t1", ok: true, output: "x", diff: "@@ -1 +1 @@\n-a\n+b" }),
    ev({ kind: "approval_resolved", approval: 1, decision: { kind: "allow_once" }, device: "ab" }),
    ev({ kind: "approval_state", approval: 1, state: "applied" }),
    ev({ kind: "exited", code: 0 }),
  ]);
  expect(t.blocks.map((b) => b.kind)).toEqual(["output", "output", "tool", "approval", "exited"]);
  expect(t.blocks[0]).toMatchObject({ stream: "stdout", text: "a\nb\n" });
  expect(t.blocks[2]).toMatchObject({ status: "ok", updates: ["half"], output: "x" });
  expect(t.blocks[3]).toMatchObject({ plan: "1. do it", state: "applied", decision: { kind: "allow_once" } });
});

test("older events refold in order; unchanged blocks keep their identity", () => {
  seq = 10;
  const t = new Transcript();
  const late = [ev({ kind: "prompt", text: "two" }), ev({ kind: "text", text: "answer" })];
  t.add(late);
  const answer = t.blocks[1];
  t.add([ev({ kind: "turn_finished", reason: "end" })]);
  expect(t.blocks[1]).toBe(answer);
  seq = 0;
  t.add([ev({ kind: "started", runtime: "command", args: ["ls"], cwd: "/", title: "t", device: "ab" }), ev({ kind: "prompt", text: "one" })]);
  expect(t.blocks.map((b) => b.kind)).toEqual(["started", "prompt", "prompt", "text", "turn"]);
  expect(t.firstSeq).toBe(1);
});

test("ten thousand events fold quickly", () => {
  seq = 0;
  const t = new Transcript();
  const started = Date.now();
  for (let i = 0; i < 10_000; i += 100) {
    const batch: TranscriptEvent[] = [];
    for (let j = 0; j < 100; j++) batch.push(j % 10 === 0 ? ev({ kind: "prompt", text: `p${i + j}` }) : ev({ kind: "text_delta", text: "x" }));
    t.add(batch);
  }
  expect(t.size).toBe(10_000);
  expect(t.blocks.length).toBe(2000);
  expect(Date.now() - started).toBeLessThan(2000);
});

test("a long output is split into blocks of bounded size, nothing lost", () => {
  seq = 0;
  const t = new Transcript();
  const line = "0123456789".repeat(10) + "\n";
  const batch: TranscriptEvent[] = [];
  for (let i = 0; i < 500; i++) batch.push(ev({ kind: "output", stream: "stdout", text: line }));
  t.add(batch);
  expect(t.blocks.length).toBeGreaterThan(1);
  expect(t.blocks.every((b) => b.kind === "output" && b.text.length <= 8192)).toBe(true);
  expect(t.blocks.map((b) => (b.kind === "output" ? b.text : "")).join("")).toBe(line.repeat(500));
});
