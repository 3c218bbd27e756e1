import { expect, test } from "@playwright/test";
import { MAX_BODY_CHARS, MAX_NOTICE_BYTES, MAX_TITLE_CHARS, canDecide, clamp, notificationFor, noticeUrl, outcomeText, parseNotice, type Notice } from "../../src/notice";

const MACHINE = "ab".repeat(32);
const SESSION = "cd".repeat(16);

function notice(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    kind: "approval",
    machine: MACHINE,
    host: "alpha",
    session: SESSION,
    title: "fix the build",
    text: "Bash: touch approved.txt",
    approval: { id: 3, agent_request: "toolu_1", tool: "Bash", input: '{"command":"touch approved.txt"}', hash: "ef".repeat(32) },
    at: 1_800_000_000,
    ...extra,
  };
}

test("a version-1 notice reads back field by field", () => {
  const parsed = parseNotice(JSON.stringify(notice()));
  expect(parsed.kind).toBe("approval");
  expect(parsed.approval).toEqual({ id: 3, agent_request: "toolu_1", tool: "Bash", input: '{"command":"touch approved.txt"}', hash: "ef".repeat(32) });
  expect(parseNotice(notice({ kind: "test", session: null, approval: null })).session).toBeNull();
  expect(parseNotice(notice({ kind: "finished", approval: null })).approval).toBeNull();
});

test("anything else is refused, saying why", () => {
  const bad: [string, unknown][] = [
    ["version", notice({ v: 2 })],
    ["no version", notice({ v: undefined })],
    ["kind", notice({ kind: "party" })],
    ["machine", notice({ machine: "AB".repeat(32) })],
    ["session", notice({ session: "cd" })],
    ["no session", notice({ kind: "finished", session: null, approval: null })],
    ["title", notice({ title: 7 })],
    ["at", notice({ at: -1 })],
    ["approval id", notice({ approval: { ...(notice().approval as object), id: 1.5 } })],
    ["approval hash", notice({ approval: { ...(notice().approval as object), hash: "zz" } })],
    ["approval input", notice({ approval: { ...(notice().approval as object), input: null } })],
    ["approval on a finished notice", notice({ kind: "finished" })],
    ["array", [notice()]],
    ["not JSON", "{"],
    ["too long", JSON.stringify(notice({ text: "x".repeat(MAX_NOTICE_BYTES) }))],
  ];
  for (const [what, value] of bad) expect(() => parseNotice(value), what).toThrow(/not a muxagent notice/);
});

test("Allow and Deny only with the whole approval, two actions, and an input the body shows in full", () => {
  const full = parseNotice(notice());
  const spec = notificationFor(full, 2);
  expect(spec.title).toBe("alpha: fix the build");
  expect(spec.options.body).toBe('Bash: {"command":"touch approved.txt"}');
  expect(spec.options.actions.map((a) => a.action)).toEqual(["allow", "deny"]);
  expect(spec.options.tag).toBe(SESSION);
  expect(spec.options.renotify).toBe(true);
  expect(spec.options.timestamp).toBe(1_800_000_000_000);
  expect(spec.options.data).toEqual({ notice: full, url: `/#/inbox/${MACHINE}/${SESSION}` });
  // A platform without actions: the tap opens the card.
  expect(notificationFor(full, 0).options.actions).toEqual([]);
  expect(notificationFor(full, 1).options.actions).toEqual([]);
  // No approval in the notice (it did not fit in a push): open the card.
  const partial = parseNotice(notice({ approval: null, text: "Bash: a long script" }));
  const opens = notificationFor(partial, 2);
  expect(opens.options.actions).toEqual([]);
  expect(opens.options.body).toBe("Bash: a long script");
  expect(notificationFor(parseNotice(notice({ approval: null, text: "" })), 2).options.body).toBe("Open the app to review it.");
  // An input longer than the body shows: open the card, never allow what cannot be read.
  const long = parseNotice(notice({ approval: { ...(notice().approval as object), input: '{"command":"' + "y".repeat(MAX_BODY_CHARS) + '"}' } }));
  expect(canDecide(long, 2)).toBe(false);
  expect(notificationFor(long, 2).options.actions).toEqual([]);
  expect(Array.from(notificationFor(long, 2).options.body).length).toBeLessThanOrEqual(MAX_BODY_CHARS);
});

test("hidden characters are shown and lengths clamped", () => {
  const sneaky = parseNotice(
    notice({
      host: "al\u202Epha",
      title: "t".repeat(500),
      approval: { ...(notice().approval as object), input: '{"command":"ls \u202Efr- mr\u202C"}' },
    }),
  );
  const spec = notificationFor(sneaky, 2);
  expect(spec.title.startsWith("al⟪U+202E⟫pha: ttt")).toBe(true);
  expect(Array.from(spec.title).length).toBe(MAX_TITLE_CHARS);
  expect(spec.title.endsWith("…")).toBe(true);
  expect(spec.options.body).toBe('Bash: {"command":"ls ⟪U+202E⟫fr- mr⟪U+202C⟫"}');
  expect(spec.options.body).not.toMatch(/[\u202A-\u202E\u2066-\u2069]/);
  const text = notificationFor(parseNotice(notice({ kind: "finished", approval: null, text: "done\u0007\nnext line " + "z".repeat(1000) })), 2);
  expect(text.options.body.startsWith("done⟪U+0007⟫ next line zzz")).toBe(true);
  expect(Array.from(text.options.body).length).toBe(MAX_BODY_CHARS);
  // Never half a surrogate pair.
  expect(clamp("🙂🙂🙂", 2)).toBe("🙂…");
});

test("tags and links: one notification per session, each kind opens where it is about", () => {
  const finished = parseNotice(notice({ kind: "finished", approval: null })) as Notice;
  expect(noticeUrl(finished)).toBe(`/#/m/${MACHINE}/s/${SESSION}`);
  const spec = notificationFor(finished, 2);
  expect(spec.options.tag).toBe(SESSION);
  expect(spec.options.renotify).toBe(false);
  // How an ask ended replaces it in place, quietly, with nothing to tap but the session.
  const resolved = notificationFor(parseNotice(notice({ kind: "resolved", approval: null, text: "decided on another device" })), 2);
  expect(resolved.options).toMatchObject({ tag: SESSION, renotify: false, actions: [], body: "decided on another device" });
  expect(resolved.options.data.url).toBe(`/#/m/${MACHINE}/s/${SESSION}`);
  expect(() => parseNotice(notice({ kind: "resolved" }))).toThrow(/carries an approval/);
  const testing = notificationFor(parseNotice(notice({ kind: "test", session: null, approval: null, title: "" })), 2);
  expect(testing.title).toBe("alpha: test notification");
  expect(testing.options.tag).toBe("test-" + MACHINE);
  expect(testing.options.data.url).toBe("/#/settings");
});

test("outcomes read as what happened", () => {
  expect(outcomeText("allow", { state: "applied", host: "alpha" }).title).toBe("Allowed — applied on alpha");
  expect(outcomeText("deny", { state: "applied", host: "alpha" }).title).toBe("Denied — applied on alpha");
  expect(outcomeText("allow", { state: "taken", host: "alpha", message: "approval 3 was already decided" })).toEqual({
    title: "Already decided elsewhere",
    body: "approval 3 was already decided",
  });
  expect(outcomeText("allow", { state: "failed", host: "alpha", message: "alpha is offline" })).toEqual({ title: "Could not allow on alpha", body: "alpha is offline" });
  expect(outcomeText("allow", { state: "sent", host: "alpha" }).title).toBe("Allowed — sent to alpha");
});
