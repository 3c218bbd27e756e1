import { expect, test } from "@playwright/test";
import type { ApprovalView } from "../../src/contract";
import { approvalKey, askedIn, newlySettled, settled, stale } from "../../src/tray";
import { notificationFor, parseNotice } from "../../src/notice";

const MACHINE = "ab".repeat(32);
const SESSION = "cd".repeat(16);

function approval(number: number, extra: Partial<ApprovalView> = {}): ApprovalView {
  return {
    machine: MACHINE,
    hostname: "alpha",
    session: SESSION,
    sessionTitle: "fix the build",
    approval: number,
    kind: "tool",
    tool: "Bash",
    input: "{}",
    requestHash: "ef".repeat(32),
    requestedAt: 1,
    state: "delivered",
    ...extra,
  };
}

/** The data of a notification the service worker showed for approval `id`. */
function shownFor(id: number, kind = "approval"): { data: unknown } {
  const notice = parseNotice({
    v: 1,
    kind,
    machine: MACHINE,
    host: "alpha",
    session: SESSION,
    title: "t",
    text: "x",
    approval: kind === "approval" || kind === "plan" ? { id, agent_request: "r", tool: "Bash", input: "{}", hash: "ef".repeat(32) } : null,
    at: 1,
  });
  return { data: notificationFor(notice, 2).options.data };
}

test("a notification's data names the approval it asks for, and only then", () => {
  expect(askedIn(shownFor(3).data)).toBe(approvalKey(MACHINE, SESSION, 3));
  expect(askedIn(shownFor(3, "plan").data)).toBe(approvalKey(MACHINE, SESSION, 3));
  expect(askedIn(shownFor(3, "finished").data)).toBeNull();
  // Being decided from the notification (the worker's), then its outcome: not the app's.
  expect(askedIn({ ...(shownFor(3).data as object), acting: "allow" })).toBeNull();
  expect(askedIn({ ...(shownFor(3).data as object), outcome: { state: "applied" } })).toBeNull();
  for (const junk of [null, undefined, "x", 5, {}, { notice: "x" }, { notice: { kind: "approval", machine: MACHINE, session: SESSION, approval: { id: "3" } } }]) {
    expect(askedIn(junk)).toBeNull();
  }
});

test("settled: decided here or there, applied, withdrawn, expired; not while it waits", () => {
  expect(settled(approval(1))).toBe(false);
  expect(settled(approval(1, { state: "requested" }))).toBe(false);
  expect(settled(approval(1, { sending: true }))).toBe(true);
  for (const state of ["decided", "applied", "withdrawn", "expired"] as const) expect(settled(approval(1, { state }))).toBe(true);
});

test("each settled approval is looked at once, by its session", () => {
  const handled = new Set<string>();
  const first = newlySettled([approval(1), approval(2, { state: "applied" }), approval(3, { sending: true })], handled);
  expect([...first.keys()]).toEqual([SESSION]);
  expect([...first.get(SESSION)!]).toEqual([approvalKey(MACHINE, SESSION, 2), approvalKey(MACHINE, SESSION, 3)]);
  expect(newlySettled([approval(2, { state: "applied" }), approval(3, { state: "decided" })], handled).size).toBe(0);
  expect([...newlySettled([approval(1, { state: "expired" })], handled).get(SESSION)!]).toEqual([approvalKey(MACHINE, SESSION, 1)]);
});

test("only the notifications still asking for a settled approval are stale", () => {
  const shown = [shownFor(1), shownFor(2), shownFor(2, "finished")];
  expect(stale(shown, new Set([approvalKey(MACHINE, SESSION, 2)]))).toEqual([shown[1]]);
  expect(stale(shown, new Set([approvalKey("ff".repeat(32), SESSION, 1)]))).toEqual([]);
});
