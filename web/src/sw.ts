// The service worker: precache the app shell (the page, its hashed assets, the manifest and
// icons) at install; answer hashed assets from the cache first (their names change with their
// content); the page from the network first, falling back to the cached copy when the network
// fails or is slow, so the installed app opens offline. Everything else (the relay's WebSocket,
// /healthz, /metrics) is left to the network.
//
// Notifications: a push is a machine's notice (src/notice.ts reads it strictly and makes the
// notification). Allow/Deny on it runs the wasm core right here, with no page open: the core
// loads the device key and the machine from IndexedDB, connects to the relay, opens the channel,
// sends the decision signed over the hash it recomputes from the notice's exact input, waits for
// the answer, and closes; the notification is then replaced by the outcome. The glue is bundled
// into this (classic) worker, so browsers without module service workers run it too.

import init, { actOnNotice } from "muxagent-core";
import type { NoticeOutcome } from "./contract";
import { notificationFor, outcomeText, parseNotice, type Notice } from "./notice";

/** Filled in by the build: every URL of the app shell, and a hash of them all. */
declare const PRECACHE: string[];
declare const VERSION: string;
/** Filled in by the build: the wasm core's hashed URL (precached). */
declare const CORE_WASM_URL: string;

/** How long a notification's Allow/Deny may take from the tap to the outcome shown: loading the
 *  core, connecting and logging in, the channel's handshake, the machine's answer, and a few
 *  seconds to see it applied. Each step also has its own timeout in the core; this bounds the
 *  whole, well inside the minutes a browser keeps a worker alive for a notification click. */
const NOTIFICATION_ACTION_TIMEOUT_MS = 30_000;
/** Margin for the JS guard over the core's own deadline (loading the wasm is outside it). */
const NOTIFICATION_ACTION_GUARD_MS = 5_000;

const sw = self as unknown as ServiceWorkerGlobalScope;
const CACHE = "muxagent-" + VERSION;
/** How long the page may take from the network before the cached copy is used. */
const PAGE_TIMEOUT_MS = 3000;
/** The paths that are the page. */
const PAGES = new Set(["/", "/index.html", "/pair"]);

sw.addEventListener("install", (event: ExtendableEvent) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE))
      .then(() => sw.skipWaiting()),
  );
});

sw.addEventListener("activate", (event: ExtendableEvent) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key.startsWith("muxagent-") && key !== CACHE).map((key) => caches.delete(key))))
      .then(() => sw.clients.claim()),
  );
});

sw.addEventListener("fetch", (event: FetchEvent) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== sw.location.origin) return;
  if (request.mode === "navigate" || PAGES.has(url.pathname)) {
    event.respondWith(page(request));
  } else if (url.pathname.startsWith("/assets/") || PRECACHE.includes(url.pathname)) {
    event.respondWith(asset(request));
  }
});

async function page(request: Request): Promise<Response> {
  const cache = await caches.open(CACHE);
  try {
    const response = await withTimeout(fetch(request), PAGE_TIMEOUT_MS);
    if (response.ok) await cache.put("/", response.clone());
    return response;
  } catch {
    const cached = await cache.match("/");
    return cached ?? Response.error();
  }
}

async function asset(request: Request): Promise<Response> {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request, { ignoreSearch: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok && new URL(request.url).pathname.startsWith("/assets/")) await cache.put(request, response.clone());
  return response;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(ms / 1000)} s`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

// ---- notifications ----

sw.addEventListener("push", (event: PushEvent) => {
  event.waitUntil(showNotice(event.data));
});

/** Show the notice a push carries. One that cannot be read still shows (a push must), saying so. */
async function showNotice(data: PushMessageData | null): Promise<void> {
  const text = data ? data.text() : "";
  let notice: Notice;
  try {
    notice = parseNotice(text);
  } catch (error) {
    await sw.registration.showNotification("muxagent", { body: messageOf(error), tag: "unreadable" });
    return;
  }
  const spec = notificationFor(notice, maxActions());
  await sw.registration.showNotification(spec.title, spec.options as NotificationOptions);
  shownPushes.push(text);
  if (shownPushes.length > SHOWN_PUSHES_KEPT) shownPushes.shift();
}

/** The last pushes (their plaintext) whose notification is on display, for the end-to-end test:
 *  Chromium's getNotifications() deletes a notification stored but not yet on display when the
 *  read began (platform_notification_context_impl.cc), so a read racing a push's display loses
 *  it for good; the test reads only once its push is here. */
const shownPushes: string[] = [];
const SHOWN_PUSHES_KEPT = 8;

/** How many actions this platform shows on a notification (0 where it shows none). */
function maxActions(): number {
  const max = (sw as unknown as { Notification?: { maxActions?: unknown } }).Notification?.maxActions;
  return typeof max === "number" ? max : 0;
}

sw.addEventListener("notificationclick", (event: NotificationEvent) => {
  const action = event.action;
  if (action === "allow" || action === "deny") {
    event.waitUntil(decideFrom(event.notification, action));
    return;
  }
  const url = (event.notification.data as { url?: unknown } | null)?.url;
  event.notification.close();
  event.waitUntil(openApp(typeof url === "string" && url.startsWith("/#/") ? url : "/"));
});

/** Focus an open window of the app on `url` (the page switches its route on the message), or
 *  open one. */
async function openApp(url: string): Promise<void> {
  const windows = await sw.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === sw.location.origin);
  if (open) {
    open.postMessage({ type: "muxagent-open", hash: url.slice(1) });
    await open.focus();
    return;
  }
  await sw.clients.openWindow(url);
}

let core: Promise<unknown> | null = null;

/** The wasm core, loaded once per worker, from the precache when it is there. */
function loadCore(): Promise<unknown> {
  core ??= init({ module_or_path: caches.match(CORE_WASM_URL).then((cached) => cached ?? fetch(CORE_WASM_URL)) }).catch((error: unknown) => {
    core = null;
    throw error;
  });
  return core;
}

/** Allow or deny the approval of `notification`, then replace it with the outcome. */
async function decideFrom(notification: Notification, action: "allow" | "deny"): Promise<NoticeOutcome> {
  const data = notification.data as { notice?: unknown } | null;
  let outcome: NoticeOutcome;
  let notice: Notice | null = null;
  try {
    notice = parseNotice(data?.notice);
    const doing = action === "allow" ? "Allowing" : "Denying";
    // `acting`: the page leaves it to this worker (src/tray.ts).
    await sw.registration.showNotification(`${doing} on ${notice.host}…`, {
      body: notification.body,
      tag: notification.tag,
      data: { ...(notification.data as object | null), acting: action },
    });
    const decided = loadCore().then(() => actOnNotice(notice, action === "allow", NOTIFICATION_ACTION_TIMEOUT_MS));
    outcome = await withTimeout(decided, NOTIFICATION_ACTION_TIMEOUT_MS + NOTIFICATION_ACTION_GUARD_MS);
  } catch (error) {
    outcome = { state: "failed", host: notice?.host ?? "the machine", message: messageOf(error) };
  }
  const shown = outcomeText(action, outcome);
  await sw.registration.showNotification(shown.title, {
    body: shown.body,
    tag: notification.tag,
    data: { ...(notification.data as object | null), outcome },
  });
  return outcome;
}

/** A test seam: synthetic NotificationEvents cannot call waitUntil, so the end-to-end
 *  test calls this (through CDP) with the tag of a shown notification and the action, as a tap
 *  on Allow or Deny would. Resolves to the outcome. */
async function notificationAction(tag: string, action: "allow" | "deny"): Promise<NoticeOutcome> {
  const [notification] = await sw.registration.getNotifications({ tag });
  if (!notification) throw new Error(`no notification with tag ${tag}`);
  return decideFrom(notification, action);
}
(sw as unknown as { muxagentNotificationAction: typeof notificationAction }).muxagentNotificationAction = notificationAction;
(sw as unknown as { muxagentShownPushes(): string[] }).muxagentShownPushes = () => [...shownPushes];

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : "something went wrong";
}
