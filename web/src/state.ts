// The app's state, in one place: the core's latest View, the route, a clock for "in N s"
// countdowns, what to announce to screen readers, pairing, and the account's devices. Screens
// read these signals and call the actions below; nothing else holds state that outlives a
// component.

import { signal, computed } from "@preact/signals";
import type { AccountDeviceView, ApprovalView, Core, Hex, MachineView, SessionView, View } from "./contract";
import { dropBrowserSubscription } from "./push";
import { parseRoute, href, type Route } from "./route";
import { closeAll, closeStale } from "./tray";

export const view = signal<View | null>(null);
export const route = signal<Route>(parseRoute(location.hash));
/** Ticks every second while something counts down. */
export const now = signal(Date.now());
/** The browser says it has no network. */
export const browserOffline = signal(typeof navigator !== "undefined" && !navigator.onLine);
/** The core failed to load (no wasm, no IndexedDB): nothing else works. */
export const fatal = signal<string | null>(null);
/** Said once by the polite live region (new approvals). */
export const announcement = signal("");
/** Pairing from a link or the scanner: its progress, or its one clear failure. */
export const pairing = signal<
  { state: "idle" } | { state: "pairing" } | { state: "paired"; machine: MachineView } | { state: "failed"; message: string }
>({ state: "idle" });

/** Settings → Devices: the account's devices as the relay last showed them, or why not. */
export const accountDevices = signal<
  { state: "idle" } | { state: "loading"; rows?: AccountDeviceView[] } | { state: "shown"; rows: AccountDeviceView[] } | { state: "failed"; message: string; rows?: AccountDeviceView[] }
>({ state: "idle" });

let theCore: Core | null = null;

export function core(): Core {
  if (!theCore) throw new Error("The app is still loading.");
  return theCore;
}

export const inboxCount = computed(() => view.value?.inbox.length ?? 0);

export function machine(fingerprint: Hex): MachineView | undefined {
  return view.value?.machines.find((m) => m.fingerprint === fingerprint);
}

export function session(machineFp: Hex, id: Hex): SessionView | undefined {
  return machine(machineFp)?.sessions.find((s) => s.id === id);
}

export function approvalsOf(machineFp: Hex, sessionId: Hex): Map<number, ApprovalView> {
  const out = new Map<number, ApprovalView>();
  for (const approval of view.value?.approvals ?? []) {
    if (approval.machine === machineFp && approval.session === sessionId) out.set(approval.approval, approval);
  }
  return out;
}

export function navigate(to: string): void {
  if (location.hash !== to) location.hash = to;
}

/** Connect the UI to a loaded core. */
export function start(loaded: Core): void {
  theCore = loaded;
  const known = new Set<string>();
  let first = true;
  loaded.watch((next) => {
    // Announce approvals that appeared since the last view (not the ones already cached).
    const fresh = next.inbox.filter((a) => !known.has(a.requestHash));
    for (const a of next.inbox) known.add(a.requestHash);
    if (!first && fresh.length > 0) {
      announcement.value = fresh
        .map((a) => `Approval needed on ${a.hostname}: ${a.kind === "plan" ? "a plan" : a.tool} in ${a.sessionTitle}`)
        .join(". ");
    }
    first = first && !next.loaded;
    view.value = next;
    // The machine does not push while the app shows: notifications it sent before are the
    // app's to close once it shows their approval settled.
    closeStaleOf(next);
  });
  const wake = () => loaded.wake();
  addEventListener("online", () => {
    browserOffline.value = false;
    wake();
  });
  addEventListener("offline", () => {
    browserOffline.value = true;
  });
  // Every machine hears whether the app is on screen: it does not push what the app shows.
  loaded.setForeground(document.visibilityState === "visible");
  document.addEventListener("visibilitychange", () => {
    const visible = document.visibilityState === "visible";
    loaded.setForeground(visible);
    if (visible) {
      wake();
      if (view.value) closeStaleOf(view.value);
    }
    // A hidden page may be discarded without another word: store what waits now.
    else loaded.flush();
  });
  addEventListener("pagehide", () => loaded.flush());
}

addEventListener("hashchange", () => {
  route.value = parseRoute(location.hash);
});

setInterval(() => {
  now.value = Date.now();
}, 1000);

/** Pair with a link or ticket; the failure, if any, is the core's message for people. */
export async function pairWith(link: string): Promise<void> {
  pairing.value = { state: "pairing" };
  try {
    const paired = await core().pair(link.trim());
    pairing.value = { state: "paired", machine: paired };
  } catch (error) {
    pairing.value = { state: "failed", message: messageOf(error) };
  }
}

export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : "Something went wrong.";
}

function closeStaleOf(shown: View): void {
  void closeStale(shown.approvals).catch(() => undefined);
}

/** Ask the relay for the account's devices (the rows shown stay while it answers). */
export async function loadDevices(): Promise<void> {
  const before = accountDevices.value;
  const rows = before.state === "idle" ? undefined : before.rows;
  accountDevices.value = { state: "loading", rows };
  try {
    accountDevices.value = { state: "shown", rows: await core().devices() };
  } catch (error) {
    accountDevices.value = { state: "failed", message: messageOf(error), rows };
  }
}

/** Revoke another device of the account (this one is an owner), then show the list again. */
export async function revokeDevice(device: Hex): Promise<void> {
  await core().revokeDevice(device);
  await loadDevices();
}

/** Make a device an owner, then show the list again. */
export async function grantOwner(device: Hex): Promise<void> {
  await core().grantOwner(device);
  await loadDevices();
}

/** Revoke this device, then start over: its data here is erased and the pairing screen shows. */
export async function revokeThisDevice(): Promise<void> {
  const me = view.value?.device.fingerprint;
  if (!me) throw new Error("The app is still loading.");
  await core().revokeDevice(me);
  await startOver();
}

/** A revoked device: erase what this browser keeps of it (the core's store, the push
 *  subscription, its notifications), then load the app again on the pairing screen, as a new
 *  device. */
export async function startOver(): Promise<void> {
  await core().forget();
  // Best effort: the relay already forgot the subscription and its pushes.
  await Promise.allSettled([dropBrowserSubscription(), closeAll()]);
  history.replaceState(null, "", "/" + href({ screen: "pair" }));
  location.reload();
}
