// The phone app end to end: Debian's Chromium at 390×844 with touch, the app from web/dist,
// and real relay, daemons and (fake) agents on 127.0.0.1. One browser profile goes through the
// scenarios in order, as one person would: pair, watch, approve, deny, hand off, lose the
// network, revoke.

import { chromium, expect, test, type BrowserContext, type Locator, type Page } from "@playwright/test";
import { mkdirSync, writeFileSync } from "node:fs";
import encodeQR from "qr";
import { join } from "node:path";
import { Daemon, WEB, World, expiredLink, waitFor } from "./harness";

test.describe.configure({ mode: "serial" });

let world: World;
let context: BrowserContext;
let page: Page;
let work: string;
const links = new Map<string, string>();
const daemons = new Map<string, Daemon>();

const SHOTS = join(WEB, "test-results/screenshots");

async function shot(name: string, on: Page = page): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await on.screenshot({ path: join(SHOTS, name + ".png") });
}

test.beforeAll(async ({ browser }) => {
  world = await World.start();
  work = join(world.root, "work");
  mkdirSync(work, { recursive: true });
  const use = test.info().project.use;
  context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    colorScheme: use.colorScheme ?? "dark",
    serviceWorkers: "allow",
    ...(use.userAgent ? { userAgent: use.userAgent } : {}),
  });
  page = await context.newPage();
  page.on("pageerror", (error) => console.log("page error:", error.message));
});

test.afterAll(async () => {
  await context?.close();
  await world?.close();
});

const machineCard = (name: string, on: Page = page) => on.getByRole("article", { name: `Machine ${name}` });
const tab = (name: string | RegExp, on: Page = page) => on.getByRole("navigation", { name: "Screens" }).getByRole("link", { name });
const transcript = (on: Page = page) => on.getByRole("list", { name: "Transcript" });

async function pairMachine(hostname: string, claude?: string): Promise<Daemon> {
  const daemon = await world.daemon(hostname, claude ? { claude } : {});
  daemons.set(hostname, daemon);
  const link = await daemon.link();
  links.set(hostname, link);
  await page.goto(world.pageLink(link));
  await expect(page.getByRole("status").filter({ hasText: "Paired with" })).toContainText(hostname);
  await waitFor("the daemon to count the device", () => daemon.status()?.paired_devices === 1);
  await tab("Machines").click();
  await expect(machineCard(hostname).getByText("online", { exact: true })).toBeVisible();
  return daemon;
}

async function startSession(machine: string, runtime: string, fields: { command?: string; prompt?: string; mode?: string; title?: string }): Promise<void> {
  await tab("New").click();
  await page.getByLabel("Machine", { exact: true }).selectOption({ label: machine });
  const runtimes = page.getByLabel("Runtime", { exact: true });
  await expect(runtimes.locator(`option[value="${runtime}"]`)).toBeEnabled();
  await runtimes.selectOption(runtime);
  await page.getByLabel("Working directory").fill(work);
  if (fields.title) await page.getByLabel("Title (optional)").fill(fields.title);
  if (fields.mode) await page.getByLabel("Permission mode (optional)").fill(fields.mode);
  if (fields.command !== undefined) await page.getByLabel(/^(Command|Agent command line)/).fill(fields.command);
  if (fields.prompt !== undefined) await page.getByLabel("Prompt", { exact: true }).fill(fields.prompt);
  await page.getByRole("button", { name: "Start session" }).click();
  // The new session's screen: the form's route is #/new, so any session route is the new one.
  await expect(page).toHaveURL(/#\/m\/[0-9a-f]+\/s\/[0-9a-f]+$/);
}

/** The card waiting in the inbox for `tool` on `machine`. */
async function waitingCard(machine: string, tool: string): Promise<Locator> {
  await tab(/Approvals/).click();
  const card = page.getByRole("list", { name: "Waiting" }).getByRole("article", { name: `Approval: ${tool} on ${machine}` });
  await expect(card).toBeVisible();
  return card;
}

function countOf(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

test("a daemon's link pairs at once; the machine is listed online", async () => {
  await pairMachine("alpha", "approve");
  await expect(machineCard("alpha")).toContainText("No sessions.");
  await shot("01-machines-one");
});

test("a second machine", async () => {
  await pairMachine("beta", "deny");
  await expect(machineCard("alpha")).toBeVisible();
  await expect(machineCard("beta")).toBeVisible();
  await shot("02-machines-two");
});

test("a command session from the form streams its output to the end", async () => {
  await tab("New").click();
  await shot("03-new-session");
  await startSession("alpha", "command", { command: "for i in 1 2 3; do echo out-$i; done; echo err >&2", title: "three lines" });
  await expect(transcript()).toContainText("out-3");
  await expect(transcript()).toContainText("Exited with code 0");
  await expect(page.getByRole("heading", { name: "three lines" })).toBeVisible();
  await expect(page.locator(".session-head .chip")).toHaveText("done");
  await shot("04-session-command");
});

test("an agent asks: the card shows the full input; Allow once lets it continue", async () => {
  await startSession("alpha", "claude", { prompt: "touch approved.txt" });
  const card = await waitingCard("alpha", "Bash");
  const input = await card.locator("pre.input").textContent();
  expect(JSON.parse(input ?? "")).toMatchObject({ command: "touch approved.txt" });
  await shot("05-inbox-approval");
  await card.getByRole("button", { name: "Allow once" }).click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on alpha" });
  await expect(decided).toContainText("Applied — the agent has the answer");
  await expect(decided).toContainText("Allowed once");
  await shot("06-approval-applied");
  await decided.getByRole("link").first().click();
  await expect(page.locator(".session-head .chip")).toHaveText("idle");
  await expect(transcript()).toContainText("Turn finished");
  await shot("07-session-agent");
});

test("Deny with a message: the message reaches the agent", async () => {
  await startSession("beta", "claude", { prompt: "touch denied.txt" });
  const card = await waitingCard("beta", "Bash");
  await card.getByLabel("Message to the agent (optional)").fill("The user said no: not now.");
  await shot("08-deny");
  await card.getByRole("button", { name: "Deny" }).click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on beta" });
  await expect(decided).toContainText("Applied");
  await expect(decided).toContainText("Denied: “The user said no: not now.”");
  await waitFor("the deny message in the agent's transcript", () => daemons.get("beta")!.transcript().includes("The user said no: not now."));
});

test("Allow always: the agent does not ask again", async () => {
  await pairMachine("gamma", "allow_always");
  await startSession("gamma", "claude", { prompt: "touch always.txt" });
  const card = await waitingCard("gamma", "Bash");
  await card.getByRole("button", { name: "Allow always" }).click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on gamma" });
  await expect(decided).toContainText("Allowed always");
  await expect(decided).toContainText("Applied");
  await decided.getByRole("link").first().click();
  await expect(page.locator(".session-head .chip")).toHaveText("idle");
  await page.getByRole("textbox", { name: "Prompt", exact: true }).fill("again");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(transcript().locator(".b-prompt")).toHaveCount(2);
  await expect(transcript().locator(".b-turn")).toHaveCount(2);
  await expect(transcript().locator(".b-approval")).toHaveCount(1);
});

test("a plan, approved, continues on another machine", async () => {
  await pairMachine("delta", "plan");
  await pairMachine("epsilon", "approve");
  await startSession("delta", "claude", { prompt: "plan it", mode: "plan" });
  const card = await waitingCard("delta", "plan");
  await expect(card.getByLabel("The plan")).toContainText("Create plan.txt");
  await shot("09-plan");
  await card.getByRole("button", { name: "Allow once" }).click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: plan on delta" });
  await expect(decided).toContainText("Applied");
  await decided.getByRole("link", { name: "Continue on another machine" }).click();
  await page.getByLabel("Machine", { exact: true }).selectOption({ label: "epsilon" });
  await expect(page.getByLabel("Runtime", { exact: true }).locator('option[value="claude"]')).toBeEnabled();
  await page.getByLabel("Runtime", { exact: true }).selectOption("claude");
  await page.getByLabel("Working directory").fill(work);
  await shot("10-handoff");
  await page.getByRole("button", { name: "Start from the plan" }).click();
  await expect(page).toHaveURL(/#\/m\/[0-9a-f]+\/s\/[0-9a-f]+$/);
  await expect(transcript().locator(".b-prompt")).toContainText("Create plan.txt");
});

test("a reload mid-stream shows the cached transcript at once, every line exactly once", async () => {
  await startSession("alpha", "command", { command: "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done", title: "slow" });
  await expect(transcript()).toContainText("line-5");
  // Reloaded without a network, what shows can only come from the app's own cache.
  await context.setOffline(true);
  try {
    await page.reload();
    await expect(page.getByRole("status", { name: /Connection: Offline/ })).toBeVisible();
    await expect(transcript()).toContainText("line-5");
  } finally {
    await context.setOffline(false);
  }
  await expect(transcript()).toContainText("Exited with code 0");
  const text = (await transcript().textContent()) ?? "";
  for (let i = 1; i <= 40; i++) expect(countOf(text, `line-${i}\n`), `line-${i}`).toBe(1);
});

/** The core's `STORE_FLUSH_MS`: how long store writes wait to be written together. */
const STORE_FLUSH_MS = 50;

test("a reload right after a fast stream shows every event from the cache", async () => {
  // The store writes events together (every STORE_FLUSH_MS) and at once when the page goes
  // away. So that the second is what is tested, this page's flush timers never fire (until the
  // reload): everything streamed below reaches IndexedDB only when the page is hidden.
  await page.evaluate((ms) => {
    const native = window.setTimeout.bind(window);
    const held = (handler: TimerHandler, delay?: number, ...args: unknown[]) => (delay === ms ? 0 : native(handler, delay, ...args));
    window.setTimeout = held as typeof window.setTimeout;
  }, STORE_FLUSH_MS);
  await startSession("alpha", "command", { command: "for i in $(seq 1 150); do echo fast-$i; sleep 0.01; done", title: "fast" });
  await expect(transcript()).toContainText("Exited with code 0");
  await context.setOffline(true);
  try {
    await page.reload();
    await expect(page.getByRole("status", { name: /Connection: Offline/ })).toBeVisible();
    await expect(transcript()).toContainText("Exited with code 0");
    const text = (await transcript().textContent()) ?? "";
    for (let i = 1; i <= 150; i++) expect(countOf(text, `fast-${i}\n`), `fast-${i}`).toBe(1);
  } finally {
    await context.setOffline(false);
  }
  await expect(page.getByRole("status", { name: "Connection: Online" })).toBeVisible();
});

test("the relay killed and restarted: reconnecting, then caught up", async () => {
  await startSession("alpha", "command", { command: "for i in $(seq 1 50); do echo tick-$i; sleep 0.1; done", title: "through an outage" });
  await expect(transcript()).toContainText("tick-2");
  await world.relay.kill();
  await expect(page.getByRole("status", { name: /Connection: (Reconnecting|Connecting)/ })).toBeVisible();
  await shot("11-reconnecting");
  await world.relay.restart();
  await expect(page.getByRole("status", { name: "Connection: Online" })).toBeVisible();
  await expect(transcript()).toContainText("Exited with code 0");
  const text = (await transcript().textContent()) ?? "";
  for (let i = 1; i <= 50; i++) expect(countOf(text, `tick-${i}\n`), `tick-${i}`).toBe(1);
});

test("two tabs are both live", async () => {
  const second = await context.newPage();
  await second.goto(world.relay.url + "/#/");
  await expect(machineCard("alpha", second)).toBeVisible();
  await startSession("alpha", "command", { command: "echo from-the-first-tab", title: "two tabs" });
  await expect(transcript()).toContainText("from-the-first-tab");
  await expect(machineCard("alpha", second).getByRole("link", { name: /two tabs/ })).toBeVisible();
  await machineCard("alpha", second).getByRole("link", { name: /two tabs/ }).click();
  await expect(transcript(second)).toContainText("from-the-first-tab");
  await expect(second.getByRole("status", { name: "Connection: Online" })).toBeVisible();
  await expect(page.getByRole("status", { name: "Connection: Online" })).toBeVisible();
  await shot("12-second-tab", second);
  await second.close();
});

test("offline, the app opens from its cache and says so", async () => {
  await tab("Machines").click();
  await expect(machineCard("alpha")).toBeVisible();
  await context.setOffline(true);
  try {
    await page.reload();
    await expect(page.getByRole("status", { name: /Connection: Offline/ })).toBeVisible();
    await expect(machineCard("alpha")).toBeVisible();
    await shot("13-offline");
  } finally {
    await context.setOffline(false);
  }
  await expect(page.getByRole("status", { name: "Connection: Online" })).toBeVisible();
});

test("revoke removes a machine", async () => {
  await tab("Settings").click();
  await shot("14-settings");
  const card = machineCard("beta");
  await card.getByRole("button", { name: "Revoke…" }).click();
  await shot("15-revoke-confirm");
  await card.getByRole("button", { name: "Revoke beta" }).click();
  await expect(machineCard("beta")).toHaveCount(0);
  await tab("Machines").click();
  await expect(machineCard("beta")).toHaveCount(0);
  await expect(machineCard("alpha")).toBeVisible();
  await waitFor("the relay to refuse beta", () => daemons.get("beta")!.status()?.revoked === true);
});

test("bad links: one clear message, nothing stored", async () => {
  const used = links.get("alpha")!;
  const url = new URL(used);
  const ticket = url.hash.slice(1);
  const middle = Math.floor(ticket.length / 2);
  const tampered = ticket.slice(0, middle) + (ticket[middle] === "A" ? "B" : "A") + ticket.slice(middle + 1);
  await tab("Machines").click();
  const before = await page.getByRole("article", { name: /^Machine / }).count();
  const fresh = await world.daemon("eta");
  const elsewhere = await world.daemonElsewhere("theta");
  for (const [name, link, reason] of [
    ["used", used, /used|claimed|no longer/i],
    ["tampered", `${url.origin}/pair#${tampered}`, /./],
    ["garbage", `${url.origin}/pair#not-a-ticket`, /./],
    ["expired", expiredLink(await fresh.link()), /expired/i],
    ["another relay", await elsewhere.link(), /for the relay at/],
  ] as const) {
    // Each link as it was made, on the app's own origin (the other relay's link keeps naming
    // its relay inside the ticket).
    await page.goto(world.pageLink(link));
    const alert = page.getByRole("alert");
    await expect(alert).toContainText("This link cannot pair");
    await expect(alert, name).toContainText(reason);
    if (name === "tampered") await shot("16-bad-link");
    await tab("Machines").click();
    await expect(page.getByRole("article", { name: /^Machine / })).toHaveCount(before);
  }
  expect(fresh.status()?.paired_devices).toBe(0);
});

test("over plain http from a network address (no secure context), the app starts and connects", async ({ browser }) => {
  // playwright.config.ts maps insecure.test to 127.0.0.1: a host name that is not localhost,
  // as a phone on the LAN sees the relay, so the browser withholds https-only features.
  const lan = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    const phone = await lan.newPage();
    const errors: string[] = [];
    phone.on("pageerror", (error) => errors.push(error.message));
    await phone.goto(world.relay.url.replace("127.0.0.1", "insecure.test") + "/");
    expect(await phone.evaluate(() => window.isSecureContext)).toBe(false);
    await expect(phone.getByText("No machine is paired yet.")).toBeVisible();
    await expect(phone.getByRole("status", { name: "Connection: Online" })).toBeVisible();
    await phone.getByRole("link", { name: "Pair a machine" }).click();
    await phone.getByRole("button", { name: "Scan a QR code" }).click();
    await expect(phone.getByRole("alert")).toContainText("needs the app over https");
    expect(errors).toEqual([]);
  } finally {
    await lan.close();
  }
});

/** A Y4M video (what Chromium's fake camera plays) of `text` as a QR code on a white page. */
function qrVideo(path: string, text: string): void {
  const width = 640;
  const height = 480;
  const modules = encodeQR(text, "raw");
  const scale = Math.floor(360 / modules.length);
  const left = (width - modules.length * scale) >> 1;
  const top = (height - modules.length * scale) >> 1;
  const luma = Buffer.alloc(width * height, 235);
  modules.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (!dark) return;
      for (let dy = 0; dy < scale; dy++) luma.fill(16, (top + y * scale + dy) * width + left + x * scale, (top + y * scale + dy) * width + left + (x + 1) * scale);
    }),
  );
  const chroma = Buffer.alloc((width / 2) * (height / 2) * 2, 128);
  writeFileSync(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), luma, chroma]));
}

test("pairing from the camera: the app's own QR decoder reads the code", async () => {
  // Chromium here has no BarcodeDetector (and it is removed to be sure): the scanner decodes
  // the camera's frames itself, with src/qr.ts loaded on demand.
  const daemon = await world.daemon("kappa");
  const video = join(world.root, "camera.y4m");
  qrVideo(video, await daemon.link());
  const use = test.info().project.use;
  const camera = await chromium.launch({
    ...use.launchOptions,
    args: [...(use.launchOptions?.args ?? []), "--use-fake-device-for-media-stream", `--use-file-for-fake-video-capture=${video}`],
  });
  try {
    const phone = await camera.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, permissions: ["camera"] });
    await phone.addInitScript(() => delete (globalThis as { BarcodeDetector?: unknown }).BarcodeDetector);
    const tab = await phone.newPage();
    await tab.goto(world.relay.url + "/");
    await tab.getByRole("link", { name: "Pair a machine" }).click();
    const decoder = tab.waitForRequest(/\/assets\/qr-\w+\.js$/);
    await tab.getByRole("button", { name: "Scan a QR code" }).click();
    await decoder;
    await expect(tab.getByRole("status").filter({ hasText: "Paired with" })).toContainText("kappa");
    await waitFor("the daemon to count the device", () => daemon.status()?.paired_devices === 1);
  } finally {
    await camera.close();
  }
});
