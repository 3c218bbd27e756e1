// Notifications end to end: the app in Debian's Chromium, a real relay and daemon on 127.0.0.1,
// the fake agent asking for approvals, and a push service played by the test (push-service.ts)
// that the relay may POST to (`--push-origin`).
//
// Two boundaries are crossed by hand, and only these:
// - The browser's push subscription. Chromium's `pushManager.subscribe` talks to the vendor's
//   push service, unreachable offline, so `PushManager.prototype.subscribe/getSubscription` are
//   stubbed in the page to hand the app a subscription for the test's push service, with keys
//   the test made. Everything the app does with it (the relay's VAPID key, PushSubscribe,
//   SetPush to the machine) is real.
// - Delivery to the worker. The test decrypts what the relay POSTed and gives the plaintext to
//   the service worker through CDP (`ServiceWorker.deliverPushMessage`), as the push service
//   would; the worker's `push` handler shows it. A tap on Allow is the worker's
//   `muxagentNotificationAction(tag, action)` (synthetic NotificationEvents cannot waitUntil):
//   the same function the `notificationclick` handler runs.

import { expect, test, type BrowserContext, type CDPSession, type Page, type Worker } from "@playwright/test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Daemon, WEB, World, waitFor } from "./harness";
import { PushService } from "./push-service";

test.describe.configure({ mode: "serial" });

/** Allow-from-a-notification runs measured (the fake agent asks this many times in a row). */
const RUNS = Number(process.env.MUXAGENT_PUSH_RUNS ?? 5);

let world: World;
let push: PushService;
let context: BrowserContext;
let page: Page;
let alpha: Daemon;
let work: string;

test.beforeAll(async ({ browser }) => {
  push = await PushService.start();
  world = await World.start(["--push-origin", push.origin]);
  work = join(world.root, "work");
  mkdirSync(work, { recursive: true });
  context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
    serviceWorkers: "allow",
    permissions: ["notifications"],
  });
  await context.addInitScript(stubPushManager, push.subscription());
  page = await context.newPage();
  page.on("pageerror", (error) => console.log("page error:", error.message));
});

test.afterAll(async () => {
  await context?.close();
  await world?.close();
  await push?.close();
});

/** In the page: a push subscription for the test's push service instead of the vendor's. */
function stubPushManager({ endpoint, p256dh, auth }: { endpoint: string; p256dh: string; auth: string }): void {
  if (typeof PushManager === "undefined") return;
  const bytes = (text: string) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)).buffer;
  const held = () => localStorage.getItem("test-push-subscribed") === "1";
  let key: ArrayBuffer | null = null;
  const subscription = {
    endpoint,
    expirationTime: null,
    get options() {
      return { userVisibleOnly: true, applicationServerKey: key };
    },
    getKey: (name: string) => (name === "p256dh" ? bytes(p256dh) : name === "auth" ? bytes(auth) : null),
    unsubscribe: async () => {
      localStorage.removeItem("test-push-subscribed");
      return true;
    },
    toJSON: () => ({ endpoint, keys: { p256dh, auth } }),
  };
  PushManager.prototype.subscribe = async function (options?: PushSubscriptionOptionsInit) {
    const given: unknown = options?.applicationServerKey;
    if (!(given instanceof Uint8Array) || given.length !== 65) throw new Error("the test's stub wants the relay's 65-byte VAPID key");
    key = given.slice().buffer as ArrayBuffer;
    localStorage.setItem("test-push-subscribed", "1");
    return subscription as unknown as PushSubscription;
  };
  PushManager.prototype.getSubscription = async function () {
    return held() ? (subscription as unknown as PushSubscription) : null;
  };
}

/** How many times the agent was told allow (its transcript holds each line as a JSON string). */
const allowed = (transcript: string) => transcript.split(/behavior\\*"\s*:\s*\\*"allow/).length - 1;

const tab = (name: string | RegExp, on: Page = page) => on.getByRole("navigation", { name: "Screens" }).getByRole("link", { name });
const pushState = (name: string, on: Page = page) => on.getByRole("status", { name: `Notifications from ${name}: state` });

/** The app goes to the background, as when the phone's screen turns off: it tells the machines. */
async function background(on: Page): Promise<void> {
  await on.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
}

/** The app comes back on screen. */
async function foreground(on: Page): Promise<void> {
  await on.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
    document.dispatchEvent(new Event("visibilitychange"));
  });
}

async function startSession(on: Page, machine: string, prompt: string): Promise<string> {
  await tab("New", on).click();
  await on.getByLabel("Machine", { exact: true }).selectOption({ label: machine });
  const runtimes = on.getByLabel("Runtime", { exact: true });
  await expect(runtimes.locator('option[value="claude"]')).toBeEnabled();
  await runtimes.selectOption("claude");
  await on.getByLabel("Working directory").fill(work);
  await on.getByLabel("Prompt", { exact: true }).fill(prompt);
  await on.getByRole("button", { name: "Start session" }).click();
  await expect(on).toHaveURL(/#\/m\/[0-9a-f]+\/s\/[0-9a-f]+$/);
  return new URL(on.url()).hash.split("/").pop()!;
}

/** A CDP session on a page of the context (the ServiceWorker domain acts on the context). */
async function serviceWorkerDomain(on: Page): Promise<{ cdp: CDPSession; registration: string }> {
  const cdp = await context.newCDPSession(on);
  const registration = new Promise<string>((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", (event) => {
      const live = event.registrations.find((r) => !r.isDeleted && r.scopeURL === world.relay.url + "/");
      if (live) resolve(live.registrationId);
    });
  });
  await cdp.send("ServiceWorker.enable");
  return { cdp, registration: await registration };
}

/** Hand the worker a push; once it shows it, the worker's handle (it may have been stopped and
 *  started again). Notifications are read only after: Chromium's getNotifications() deletes one
 *  that is stored but not yet on display, so a read racing the push would lose it (sw.ts). */
async function deliver(on: Page, plaintext: string): Promise<Worker> {
  const { cdp, registration } = await serviceWorkerDomain(on);
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: world.relay.url, registrationId: registration, data: plaintext });
  await cdp.detach();
  return waitFor("the service worker to show the push", async () => {
    for (const worker of context.serviceWorkers().filter((w) => w.url().endsWith("/sw.js"))) {
      const shown = await worker
        .evaluate((text) => (self as unknown as { muxagentShownPushes(): string[] }).muxagentShownPushes().includes(text), plaintext)
        .catch(() => false);
      if (shown) return worker;
    }
    return undefined;
  });
}

interface Shown {
  title: string;
  body: string;
  actions: string[];
}

async function notification(worker: Worker, tag: string, what: (n: Shown) => boolean): Promise<Shown> {
  return waitFor(`a notification tagged ${tag}`, async () => {
    const shown: Shown[] = await worker.evaluate(async (tag) => {
      type Shown = { title: string; body: string; actions?: { action: string }[] };
      const scope = self as unknown as { registration: { getNotifications(filter: { tag: string }): Promise<Shown[]> } };
      const list = await scope.registration.getNotifications({ tag });
      return list.map((n) => ({ title: n.title, body: n.body, actions: (n.actions ?? []).map((a) => a.action) }));
    }, tag);
    return shown.find(what);
  });
}

/** Tap Allow or Deny on the notification tagged `tag`. */
async function act(worker: Worker, tag: string, action: "allow" | "deny"): Promise<{ state: string; host: string; message?: string }> {
  return worker.evaluate(
    ([tag, action]) => (self as unknown as { muxagentNotificationAction(tag: string, action: string): Promise<{ state: string; host: string; message?: string }> }).muxagentNotificationAction(tag, action),
    [tag, action] as const,
  );
}

test("turning notifications on: the relay holds the endpoint, the machine confirms, a test notification is pushed", async () => {
  alpha = await world.daemon("alpha", { claude: "approve" });
  await page.goto(world.pageLink(await alpha.link()));
  await expect(page.getByRole("status").filter({ hasText: "Paired with" })).toContainText("alpha");
  await tab("Settings").click();
  await page.getByRole("button", { name: "Turn on notifications" }).click();
  await expect(pushState("alpha")).toContainText("On — it confirmed");
  const before = push.posts.length;
  await page.getByRole("button", { name: "Send test notification" }).click();
  await expect(page.getByText("alpha sent a test notification")).toBeVisible();
  mkdirSync(join(WEB, "test-results/screenshots"), { recursive: true });
  await page.getByRole("group", { name: "Notifications", exact: true }).screenshot({ path: join(WEB, "test-results/screenshots/20-notifications-on.png") });
  const { notice, post } = await push.notice("the test notification", before, (n) => n.kind === "test");
  expect(notice).toMatchObject({ v: 1, kind: "test", host: "alpha", session: null, approval: null });
  expect(post.path).toBe("/push/device-1");
  expect(post.headers["content-encoding"]).toBe("aes128gcm");
});

test("an approval while the app is closed: the notification's Allow decides it with no page open", async () => {
  await background(page);
  const before = push.posts.length;
  const session = await startSession(page, "alpha", "touch approved.txt");
  const { text, notice } = await push.notice("the approval's notice", before, (n) => n.kind === "approval" && n.session === session);
  expect(notice.approval).toMatchObject({ tool: "Bash" });
  expect(JSON.parse(notice.approval.input)).toMatchObject({ command: "touch approved.txt" });
  await page.close();
  // Only a blank page, to reach the browser over CDP: no page of the app is open.
  const blank = await context.newPage();
  const worker = await deliver(blank, text);
  const shown = await notification(worker, session, (n) => n.actions.length > 0);
  expect(shown.title).toMatch(/^alpha: /);
  expect(shown.body).toContain("touch approved.txt");
  expect(shown.actions).toEqual(["allow", "deny"]);
  const outcome = await act(worker, session, "allow");
  expect(outcome).toMatchObject({ state: "applied", host: "alpha" });
  await waitFor("the agent to hear allow", () => allowed(alpha.transcript()) === 1);
  await notification(worker, session, (n) => n.title === "Allowed — applied on alpha" && n.actions.length === 0);
  // A second tap (another device decided first, or a stale notification): said, not hidden.
  await worker.evaluate(
    async ([tag, body]) => {
      const scope = self as unknown as { registration: ServiceWorkerRegistration };
      await scope.registration.showNotification("again", { tag, data: { notice: JSON.parse(body) } });
    },
    [session, text] as const,
  );
  expect(await act(worker, session, "deny")).toMatchObject({ state: "taken" });
  await notification(worker, session, (n) => n.title === "Already decided elsewhere");
  page = blank;
});

test(`time from a notification's Allow to the decision applied (${RUNS} runs)`, async () => {
  test.setTimeout(60_000 + RUNS * 10_000);
  // A machine whose agent asks RUNS times in a row, each ask as soon as the last is answered:
  // each ask is one push (its rate allows a burst of 10, then one per 6 s).
  const beta = await world.daemon("beta", { claude: "approve", env: { FAKE_AGENT_BENCH: String(RUNS) } });
  await page.goto(world.pageLink(await beta.link()));
  await expect(page.getByRole("status").filter({ hasText: "Paired with" })).toContainText("beta");
  await tab("Settings").click();
  await expect(pushState("beta")).toContainText("On — it confirmed");
  await background(page);
  const session = await startSession(page, "beta", "ask away");
  const took: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const { text } = await push.notice(`ask ${run + 1}`, 0, (n) => n.session === session && n.approval?.id === run + 1);
    const worker = await deliver(page, text);
    await notification(worker, session, (n) => n.actions.length > 0 && n.body.includes(`true ${run}`));
    const start = performance.now();
    const outcome = await act(worker, session, "allow");
    took.push(performance.now() - start);
    expect(outcome.state, outcome.message).toBe("applied");
  }
  const sorted = [...took].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const summary = { runs: RUNS, p50_ms: Math.round(rank(50)), p99_ms: Math.round(rank(99)), max_ms: Math.round(sorted[sorted.length - 1]!), all_ms: took.map(Math.round) };
  console.log("notification Allow → applied:", JSON.stringify(summary));
  mkdirSync(join(WEB, "test-results"), { recursive: true });
  writeFileSync(join(WEB, "test-results/push-latency.json"), JSON.stringify(summary, null, 2) + "\n");
});

test("what a machine notifies of is chosen per machine and kept across a reload", async () => {
  await tab("Settings").click();
  const alphaKinds = page.getByRole("group", { name: "Notifications from alpha" });
  await alphaKinds.getByLabel("Plans").uncheck();
  await expect(pushState("alpha")).toContainText("On — it confirmed");
  await page.reload();
  await expect(pushState("alpha")).toContainText("On — it confirmed");
  await expect(alphaKinds.getByLabel("Plans")).not.toBeChecked();
  await expect(alphaKinds.getByLabel("Approvals")).toBeChecked();
  await expect(page.getByRole("group", { name: "Notifications from beta" }).getByLabel("Plans")).toBeChecked();
});

test("an approval decided in the app closes its notification left in the tray", async () => {
  // A machine of its own: the fake agent plays its recording once per state folder.
  const gamma = await world.daemon("gamma", { claude: "approve" });
  await page.goto(world.pageLink(await gamma.link()));
  await expect(page.getByRole("status").filter({ hasText: "Paired with" })).toContainText("gamma");
  await tab("Settings").click();
  await expect(pushState("gamma")).toContainText("On — it confirmed");
  await background(page);
  const before = push.posts.length;
  const session = await startSession(page, "gamma", "touch tray.txt");
  const { text } = await push.notice("the approval's notice", before, (n) => n.kind === "approval" && n.session === session);
  const worker = await deliver(page, text);
  await notification(worker, session, (n) => n.actions.length > 0);
  // The person opens the app instead and decides there: the machine pushes nothing while the
  // app is on screen, so the notification is the app's to close.
  await foreground(page);
  await tab(/Approvals/).click();
  const card = page.getByRole("list", { name: "Waiting" }).getByRole("article", { name: "Approval: Bash on gamma" });
  await card.getByRole("button", { name: "Allow once" }).click();
  await expect(page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on gamma" })).toContainText("Applied");
  await waitFor("the notification to be closed", async () => {
    const left = await worker.evaluate(async (tag) => {
      const scope = self as unknown as { registration: ServiceWorkerRegistration };
      return (await scope.registration.getNotifications({ tag })).length;
    }, session);
    return left === 0;
  });
});

test("turning notifications off: the relay and the machine forget it, the browser unsubscribes", async () => {
  await tab("Settings").click();
  await page.getByRole("button", { name: "Turn off notifications" }).click();
  await expect(page.getByRole("button", { name: "Turn on notifications" })).toBeVisible();
  expect(await page.evaluate(() => localStorage.getItem("test-push-subscribed"))).toBeNull();
});

test("over plain http from a network address, Settings says notifications need https", async ({ browser }) => {
  const lan = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    const phone = await lan.newPage();
    await phone.goto(world.relay.url.replace("127.0.0.1", "insecure.test") + "/#/settings");
    await expect(phone.getByRole("group", { name: "Notifications", exact: true })).toContainText("Notifications need the app over https (or on localhost)");
    await expect(phone.getByRole("button", { name: "Turn on notifications" })).toHaveCount(0);
  } finally {
    await lan.close();
  }
});
