// Notifications, the browser's half: whether this browser can receive them, asking permission,
// and the push subscription (`pushManager.subscribe` with the relay's VAPID key). The core does
// the rest and keeps the state (IndexedDB): the relay gets the endpoint, each machine the keys
// and which kinds to send. Every failure is an Error with a message for people.

import { core } from "./state";

/** How long the service worker may take to be ready (it is registered at start). */
const WORKER_READY_MS = 10_000;

/** Why this browser cannot receive notifications here, or null when it can. */
export function pushUnsupported(): string | null {
  if (!window.isSecureContext) {
    return "Notifications need the app over https (or on localhost). This page is plain http from a network address, where browsers offer no push: open the relay's https address.";
  }
  if (!("serviceWorker" in navigator)) return "This browser has no service workers, so it cannot receive notifications.";
  if (!("PushManager" in window) || !("Notification" in window)) {
    return "This browser cannot receive push notifications. On an iPhone, add the app to the home screen first (Share, then Add to Home Screen) and open it from there.";
  }
  return null;
}

/** Permission blocked in the browser's settings: the app can no longer ask. */
export function pushBlocked(): boolean {
  return "Notification" in window && Notification.permission === "denied";
}

async function registration(): Promise<ServiceWorkerRegistration> {
  let timer = 0;
  const late = new Promise<never>((_, reject) => {
    timer = window.setTimeout(() => reject(new Error("The app's service worker did not start; reload the page and try again.")), WORKER_READY_MS);
  });
  try {
    return await Promise.race([navigator.serviceWorker.ready, late]);
  } finally {
    clearTimeout(timer);
  }
}

function sameKey(a: ArrayBuffer | null, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const bytes = new Uint8Array(a);
  return bytes.every((byte, i) => byte === b[i]);
}

/** Turn notifications on: permission, the subscription, then the core tells the relay and
 *  every machine. Safe to repeat (a subscription for the relay's current key is reused). */
export async function enableNotifications(): Promise<void> {
  const unsupported = pushUnsupported();
  if (unsupported) throw new Error(unsupported);
  const permission = await Notification.requestPermission();
  if (permission === "denied") throw new Error("Notifications are blocked for this site. Allow them in the browser's site settings, then try again.");
  if (permission !== "granted") throw new Error("Notifications were not allowed (the question was dismissed). Try again and choose Allow.");
  const worker = await registration();
  const relay = await core().pushState();
  let subscription = await worker.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, relay.vapidPublicKey)) {
    // Made for another key (the relay's changed): a push service refuses a second one.
    await subscription.unsubscribe();
    subscription = null;
  }
  if (!subscription) {
    try {
      subscription = await worker.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: relay.vapidPublicKey });
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new Error(`The browser's push service did not give a subscription: ${why}`);
    }
  }
  const p256dh = subscription.getKey("p256dh");
  const auth = subscription.getKey("auth");
  if (!p256dh || !auth) throw new Error("The browser's push subscription has no encryption keys.");
  await core().enablePush(subscription.endpoint, new Uint8Array(p256dh), new Uint8Array(auth));
}

/** Turn notifications off: the relay and every machine forget the subscription, then the
 *  browser drops it. */
export async function disableNotifications(): Promise<void> {
  await core().disablePush();
  const worker = await navigator.serviceWorker?.getRegistration();
  const subscription = await worker?.pushManager?.getSubscription();
  await subscription?.unsubscribe();
}

/** Whether the browser still holds a push subscription (it may drop one on its own). */
export async function browserSubscribed(): Promise<boolean> {
  if (pushUnsupported()) return false;
  const worker = await navigator.serviceWorker.getRegistration();
  return Boolean(await worker?.pushManager.getSubscription());
}

/** Drop the browser's push subscription without telling anyone (the relay forgot this device). */
export async function dropBrowserSubscription(): Promise<void> {
  if (pushUnsupported()) return;
  const worker = await navigator.serviceWorker.getRegistration();
  const subscription = await worker?.pushManager?.getSubscription();
  await subscription?.unsubscribe();
}
