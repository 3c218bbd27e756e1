// What a machine pushes to this device (a `Notice`, proto/src/push.rs), read strictly, and the
// notification the service worker shows for it. Everything in a notice came from a machine and,
// before it, from an agent: it is text, clamped to what a notification shows, with control and
// bidi characters made visible (src/text.ts), as the app shows them.
//
// Allow/Deny are offered only when the notice carries the approval's whole request and the
// notification shows all of its input: the service worker then signs over the hash the core
// recomputes from exactly that input. Otherwise a tap opens the app on the approval card.

import { revealPlain } from "./text";

/** The notice layout this app reads (`NOTICE_VERSION`). */
export const NOTICE_VERSION = 1;
/** Longest notice a machine sends (`MAX_NOTICE_LEN`: a 4096-byte push less the 103 bytes of
 *  RFC 8291 framing); anything longer is not one. */
export const MAX_NOTICE_BYTES = 4096 - 103;
/** Longest title shown ("host: title"), in characters: about two lines on a phone. */
export const MAX_TITLE_CHARS = 100;
/** Longest body shown, in characters: what Android and desktop Chrome show expanded. An
 *  approval whose "tool: input" is longer gets no Allow/Deny: it is reviewed in the app, as
 *  nobody should allow what they could not read. */
export const MAX_BODY_CHARS = 400;

/** `resolved`: the ask this device was shown was decided elsewhere, withdrawn or expired; its
 *  notification is replaced (same tag, no sound) so a stale one is never acted on. */
export type NoticeKind = "approval" | "finished" | "failed" | "plan" | "resolved" | "test";

export interface NoticeApproval {
  id: number;
  agent_request: string;
  tool: string;
  input: string;
  /** 64 hex digits. */
  hash: string;
}

export interface Notice {
  v: 1;
  kind: NoticeKind;
  /** 64 hex digits. */
  machine: string;
  host: string;
  /** 32 hex digits; null for a test. */
  session: string | null;
  title: string;
  text: string;
  approval: NoticeApproval | null;
  /** Unix seconds. */
  at: number;
}

const KINDS: readonly NoticeKind[] = ["approval", "finished", "failed", "plan", "resolved", "test"];
const HEX64 = /^[0-9a-f]{64}$/;
const HEX32 = /^[0-9a-f]{32}$/;

function fail(why: string): never {
  throw new Error("not a muxagent notice: " + why);
}

function field<T>(object: Record<string, unknown>, key: string, check: (value: unknown) => value is T, what: string): T {
  const value = object[key];
  if (!check(value)) fail(`\`${key}\` is not ${what}`);
  return value;
}

const isString = (value: unknown): value is string => typeof value === "string";
const isWhole = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A notice from the push's text (or an already parsed value). Throws, saying why, for
 *  anything that is not a version-1 notice in every field. */
export function parseNotice(data: unknown): Notice {
  let value = data;
  if (typeof data === "string") {
    if (new TextEncoder().encode(data).length > MAX_NOTICE_BYTES) fail("longer than a push");
    try {
      value = JSON.parse(data);
    } catch {
      fail("not JSON");
    }
  }
  if (!isObject(value)) fail("not an object");
  if (value.v !== NOTICE_VERSION) fail(`version ${String(value.v)} (this app reads ${NOTICE_VERSION})`);
  const kind = field(value, "kind", (k): k is NoticeKind => KINDS.includes(k as NoticeKind), "a known kind");
  const machine = field(value, "machine", (m): m is string => isString(m) && HEX64.test(m), "a fingerprint");
  const host = field(value, "host", isString, "a hostname");
  const session = field(value, "session", (s): s is string | null => s === null || (isString(s) && HEX32.test(s)), "a session id");
  const title = field(value, "title", isString, "text");
  const text = field(value, "text", isString, "text");
  const at = field(value, "at", isWhole, "a time");
  let approval: NoticeApproval | null = null;
  if (value.approval !== null && value.approval !== undefined) {
    const a = field(value, "approval", isObject, "an approval");
    approval = {
      id: field(a, "id", isWhole, "an approval number"),
      agent_request: field(a, "agent_request", isString, "text"),
      tool: field(a, "tool", isString, "text"),
      input: field(a, "input", isString, "text"),
      hash: field(a, "hash", (h): h is string => isString(h) && HEX64.test(h), "a request hash"),
    };
    if (kind !== "approval" && kind !== "plan") fail(`a ${kind} notice carries an approval`);
    if (session === null) fail("an approval without a session");
  }
  if (kind !== "test" && session === null) fail(`a ${kind} notice names no session`);
  return { v: NOTICE_VERSION, kind, machine, host, session, title, text, approval, at };
}

/** `text` cut to `max` characters (code points, never half a surrogate pair), with "…". */
export function clamp(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max - 1).join("") + "…";
}

/** Untrusted text for a notification: hidden characters shown, one line, clamped. */
function shown(text: string, max: number): string {
  return clamp(revealPlain(text).replace(/\s+/g, " ").trim(), max);
}

/** The app's address for what a notice is about. */
export function noticeUrl(notice: Notice): string {
  if (notice.session === null) return "/#/settings";
  if (notice.kind === "approval" || notice.kind === "plan") return `/#/inbox/${notice.machine}/${notice.session}`;
  return `/#/m/${notice.machine}/s/${notice.session}`;
}

/** The notification's tag: one per session (a newer notice replaces the older), one per
 *  machine for tests. */
export function noticeTag(notice: Notice): string {
  return notice.session ?? "test-" + notice.machine;
}

/** What `showNotification` gets. `actions` and `renotify` are not in every DOM typing. */
export interface NotificationSpec {
  title: string;
  options: {
    body: string;
    tag: string;
    renotify: boolean;
    timestamp: number;
    icon: string;
    badge: string;
    actions: { action: "allow" | "deny"; title: string }[];
    data: { notice: Notice; url: string };
  };
}

/** Whether a notification can offer Allow/Deny for `notice`: the whole request is in it and
 *  the body shows all of its input, and the platform shows two actions. */
export function canDecide(notice: Notice, maxActions: number): boolean {
  return notice.approval !== null && maxActions >= 2 && Array.from(approvalBody(notice.approval)).length <= MAX_BODY_CHARS;
}

/** "tool: input", the input exactly as sent (lines kept), its hidden characters shown. */
function approvalBody(approval: NoticeApproval): string {
  return `${revealPlain(approval.tool)}: ${revealPlain(approval.input)}`;
}

/** The notification for `notice`, where the platform shows up to `maxActions` actions. */
export function notificationFor(notice: Notice, maxActions: number): NotificationSpec {
  const decide = canDecide(notice, maxActions);
  const heading = notice.kind === "test" ? "test notification" : notice.title || notice.kind;
  const title = shown(`${notice.host}: ${heading}`, MAX_TITLE_CHARS);
  let body: string;
  if (decide && notice.approval) {
    // The input in full (it fits): what Allow allows.
    body = approvalBody(notice.approval);
  } else {
    // The machine's one line (for an approval too long to push, it says to open the app).
    body = shown(notice.text, MAX_BODY_CHARS) || (notice.kind === "approval" || notice.kind === "plan" ? "Open the app to review it." : "");
  }
  return {
    title,
    options: {
      body,
      tag: noticeTag(notice),
      renotify: notice.kind === "approval" || notice.kind === "plan",
      timestamp: notice.at * 1000,
      icon: "/icon-192.png",
      badge: "/icon-192.png",
      actions: decide
        ? [
            { action: "allow", title: "Allow" },
            { action: "deny", title: "Deny" },
          ]
        : [],
      data: { notice, url: noticeUrl(notice) },
    },
  };
}

/** The outcome of a notification's action, as the notification that replaces it says it. */
export function outcomeText(action: "allow" | "deny", outcome: { state: string; host: string; message?: string }): { title: string; body: string } {
  const did = action === "allow" ? "Allowed" : "Denied";
  const host = revealPlain(outcome.host);
  const why = shown(outcome.message ?? "", MAX_BODY_CHARS);
  switch (outcome.state) {
    case "applied":
      return { title: `${did} — applied on ${host}`, body: "The agent has the answer." };
    case "sent":
      return { title: `${did} — sent to ${host}`, body: `${host} accepted it; the agent was not told yet when this was checked.` };
    case "withdrawn":
      return { title: `Withdrawn on ${host}`, body: "The agent no longer asks." };
    case "expired":
      return { title: `Expired on ${host}`, body: "Nobody decided in time; the agent was told no." };
    case "taken":
      return { title: "Already decided elsewhere", body: why || `${host} no longer waits for this.` };
    default:
      return { title: `Could not ${action} on ${host}`, body: why || "Something went wrong." };
  }
}
