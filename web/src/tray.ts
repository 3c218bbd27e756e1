// Notifications left in the tray: a machine does not push while the app is on screen, so when
// the app shows an approval as decided, withdrawn or expired (or the person decides it here),
// nothing replaces the OS notification that still asks for it. The app closes it: a shown
// notification is tagged with its session (notice.ts) and carries its notice in `data`, so one
// still asking for an approval that is no longer open is found and closed.
//
// Only while the app is on screen: hidden, the machine replaces the notification itself (a
// `resolved` notice), and a close racing its push could close the newer one (browsers close a
// tagged notification by its tag). One the service worker is acting on (`acting`, then
// `outcome` in its data) is the worker's.
//
// Reads are few on purpose: Chromium's getNotifications() deletes the stored record of a
// notification not yet on display when the read began, so a read racing a push's display
// leaves that notification on screen with no record (a tap on it then does nothing). The app
// reads only when it shows an approval newly settled, while on screen, when machines do not push.

import type { ApprovalView } from "./contract";

/** One approval, across machines. */
export function approvalKey(machine: string, session: string, approval: number): string {
  return `${machine}/${session}/${approval}`;
}

/** The approval a shown notification still asks for, or null: one being decided from the
 *  notification or showing the outcome, another kind of notice, or data this app did not put
 *  there. */
export function askedIn(data: unknown): string | null {
  if (typeof data !== "object" || data === null) return null;
  const { notice, outcome, acting } = data as { notice?: unknown; outcome?: unknown; acting?: unknown };
  if (outcome !== undefined || acting !== undefined || typeof notice !== "object" || notice === null) return null;
  const { kind, machine, session, approval } = notice as Record<string, unknown>;
  if (kind !== "approval" && kind !== "plan") return null;
  if (typeof machine !== "string" || typeof session !== "string") return null;
  const id = (approval as { id?: unknown } | null)?.id;
  return typeof id === "number" ? approvalKey(machine, session, id) : null;
}

/** Whether the app shows `a` as no longer waiting: decided (or being sent from here),
 *  applied, withdrawn or expired. */
export function settled(a: ApprovalView): boolean {
  return Boolean(a.sending) || (a.state !== "requested" && a.state !== "delivered");
}

/** The approvals of `approvals` that settled and were not handled before (`handled` is kept
 *  across views; they are added to it), grouped by session: the tags to look at. */
export function newlySettled(approvals: readonly ApprovalView[], handled: Set<string>): Map<string, Set<string>> {
  const bySession = new Map<string, Set<string>>();
  for (const a of approvals) {
    if (!settled(a)) continue;
    const key = approvalKey(a.machine, a.session, a.approval);
    if (handled.has(key)) continue;
    handled.add(key);
    const keys = bySession.get(a.session) ?? new Set<string>();
    keys.add(key);
    bySession.set(a.session, keys);
  }
  return bySession;
}

/** The notifications of `shown` that still ask for one of `settledKeys`. */
export function stale<N extends { data: unknown }>(shown: readonly N[], settledKeys: ReadonlySet<string>): N[] {
  return shown.filter((n) => {
    const asked = askedIn(n.data);
    return asked !== null && settledKeys.has(asked);
  });
}

/** Approvals whose notifications were looked at already (so each is looked at once). */
const handled = new Set<string>();

/** Close the notifications that still ask for an approval the app now shows settled, while the
 *  app is on screen (call it again when it comes back). Best effort: where there is no service
 *  worker (plain http), there are no notifications. */
export async function closeStale(approvals: readonly ApprovalView[]): Promise<void> {
  if (typeof document === "undefined" || document.visibilityState !== "visible") return;
  const bySession = newlySettled(approvals, handled);
  if (bySession.size === 0 || typeof navigator === "undefined" || !("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.getRegistration();
  if (!registration) return;
  const keys = new Set<string>();
  for (const set of bySession.values()) for (const key of set) keys.add(key);
  // One session (the person decided one approval): only its tag. More (the first view, from
  // the cache): every notification of the app at once.
  const [only] = bySession.keys();
  const shown = bySession.size === 1 && only !== undefined ? await registration.getNotifications({ tag: only }) : await registration.getNotifications();
  for (const notification of stale(shown, keys)) notification.close();
}

/** Close every notification of the app (this browser starts over as a new device). */
export async function closeAll(): Promise<void> {
  if (typeof navigator === "undefined" || !("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.getRegistration();
  for (const notification of (await registration?.getNotifications()) ?? []) notification.close();
}
