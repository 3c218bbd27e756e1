// Settings → Devices end to end: two browser profiles are two devices of one account, both
// paired with the same machine (the second through a fresh `muxagent pair` link, as a person
// adds a phone), against a real relay and daemon on 127.0.0.1. The first to pair is the
// account's owner. In order: the second sees only itself; the owner sees both; the owner makes
// it an owner (a stale tab's second try is refused in the relay's words); the new owner revokes
// the first, which is cut off, says why and starts over; the last revokes itself and is back on
// the pairing screen with nothing kept.

import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { WEB, World, waitFor, type Daemon } from "./harness";

test.describe.configure({ mode: "serial" });

let world: World;
let alpha: Daemon;
let firstContext: BrowserContext;
let secondContext: BrowserContext;
/** The account's first device (its owner) and the one that joins it. */
let first: Page;
let second: Page;
/** Their fingerprints (64 hex digits) and short forms. */
const prints = { first: "", second: "", firstShort: "", secondShort: "" };

const SHOTS = join(WEB, "test-results/screenshots");

async function phone(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: "dark" });
}

test.beforeAll(async ({ browser }) => {
  world = await World.start();
  alpha = await world.daemon("alpha");
  firstContext = await phone(browser);
  secondContext = await phone(browser);
  first = await firstContext.newPage();
  second = await secondContext.newPage();
});

test.afterAll(async () => {
  await firstContext?.close();
  await secondContext?.close();
  await world?.close();
});

const tab = (on: Page, name: string) => on.getByRole("navigation", { name: "Screens" }).getByRole("link", { name });
const devices = (on: Page) => on.getByRole("group", { name: "Devices" });
const row = (on: Page, short: string) => devices(on).getByRole("article", { name: `Device ${short}` });
const rows = (on: Page) => devices(on).getByRole("article", { name: /^Device / });
/** A row's marks: "this device", "owner". */
const chips = (article: ReturnType<typeof row>) => article.locator(".chip");

async function pairWith(on: Page, link: string): Promise<void> {
  await on.goto(world.pageLink(link));
  await expect(on.getByRole("status").filter({ hasText: "Paired with" })).toContainText("alpha");
}

/** This device's fingerprint and short form, from Settings. */
async function whoAmI(on: Page): Promise<{ print: string; short: string }> {
  await tab(on, "Settings").click();
  const print = (await on.getByLabel("This device's fingerprint").textContent()) ?? "";
  const short = (await on.locator(".card .fp-short").first().textContent()) ?? "";
  expect(print).toMatch(/^[0-9a-f]{64}$/);
  return { print, short };
}

/** What the app keeps in IndexedDB: the paired machines and the sessions. */
async function stored(on: Page): Promise<{ machines: number; sessions: number }> {
  return on.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("muxagent");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const tx = db.transaction(["meta", "sessions"], "readonly");
          const book = tx.objectStore("meta").get("book");
          const sessions = tx.objectStore("sessions").count();
          tx.oncomplete = () => {
            const machines = (book.result as { machines?: unknown[] } | undefined)?.machines?.length ?? 0;
            resolve({ machines, sessions: sessions.result });
            db.close();
          };
        };
      }),
  );
}

test("a second device pairs with the same machine: it is no owner and sees only itself", async () => {
  await pairWith(first, await alpha.link());
  await waitFor("alpha to know the first device", () => alpha.status()?.paired_devices === 1);
  const again = await alpha.pairAgain();
  await pairWith(second, again.link);
  expect(await again.done).toBe(0);
  await waitFor("alpha to know both devices", () => alpha.status()?.paired_devices === 2);
  const a = await whoAmI(first);
  const b = await whoAmI(second);
  Object.assign(prints, { first: a.print, firstShort: a.short, second: b.print, secondShort: b.short });

  await expect(devices(second)).toContainText("This device is not an owner: it sees only itself.");
  await expect(rows(second)).toHaveCount(1);
  const me = row(second, prints.secondShort);
  await expect(chips(me)).toHaveText(["this device"]);
  await expect(me).toContainText("Paired with: alpha (online)");
  await expect(me.getByRole("button")).toHaveText(["Revoke this device…"]);
});

test("an owner sees every device: this one, who owns, what each paired with, who is online", async () => {
  await expect(devices(first)).toContainText("This device is an owner");
  await expect(rows(first)).toHaveCount(2);
  await expect(chips(row(first, prints.firstShort))).toHaveText(["this device", "owner"]);
  const other = row(first, prints.secondShort);
  await expect(chips(other)).toHaveText([]);
  await expect(other).toContainText("online");
  await expect(other).toContainText("Paired with: alpha (online)");
  await expect(other.getByRole("button")).toHaveText(["Make owner…", "Revoke…"]);
  mkdirSync(SHOTS, { recursive: true });
  await devices(first).screenshot({ path: join(SHOTS, "30-devices-owner.png") });
});

test("an owner makes another device an owner; a stale tab's second try is refused in words", async () => {
  // A second tab of the owner, its list shown before the grant.
  const stale = await firstContext.newPage();
  await stale.goto(world.relay.url + "/#/settings");
  await expect(row(stale, prints.secondShort).getByRole("button", { name: "Make owner…" })).toBeVisible();

  const other = row(first, prints.secondShort);
  await other.getByRole("button", { name: "Make owner…" }).click();
  await expect(other.getByRole("alertdialog")).toContainText("can revoke any device, including you");
  await devices(first).screenshot({ path: join(SHOTS, "31-devices-grant-confirm.png") });
  await other.getByRole("button", { name: `Make ${prints.secondShort} an owner` }).click();
  await expect(chips(other)).toHaveText(["owner"]);
  await expect(other.getByRole("button")).toHaveText(["Revoke…"]);

  const late = row(stale, prints.secondShort);
  await late.getByRole("button", { name: "Make owner…" }).click();
  await late.getByRole("button", { name: `Make ${prints.secondShort} an owner` }).click();
  await expect(late.getByRole("alert")).toHaveText("the relay refused: that device is an owner already");
  await stale.close();

  // The new owner now sees the whole account.
  await devices(second).getByRole("button", { name: "Refresh" }).click();
  await expect(devices(second)).toContainText("This device is an owner");
  await expect(rows(second)).toHaveCount(2);
});

test("an owner revokes another device: it is cut off at once, says why, and every machine forgets it", async () => {
  const target = row(second, prints.firstShort);
  await target.getByRole("button", { name: "Revoke…" }).click();
  await expect(target.getByRole("alertdialog")).toContainText("cut off at once and every machine forgets it, for good");
  await target.getByRole("button", { name: `Revoke ${prints.firstShort}` }).click();
  await expect(rows(second)).toHaveCount(1);

  await expect(first.getByRole("heading", { name: "This device was revoked" })).toBeVisible();
  await expect(first.getByRole("status", { name: "Connection: Revoked" })).toBeVisible();
  await expect(first.getByRole("alert")).toContainText("The relay said: this device was revoked");
  await first.screenshot({ path: join(SHOTS, "32-revoked.png") });
  await waitFor("alpha to forget the first device", () => {
    const status = alpha.status();
    return status?.paired_devices === 1 && status.revoked_devices?.includes(prints.firstShort);
  });

  // Starting over: nothing of the revoked device is kept, and the browser is a new device.
  await first.getByRole("button", { name: "Erase and pair again" }).click();
  await expect(first.getByRole("heading", { name: "Pair a machine" })).toBeVisible();
  await expect(first.getByRole("status", { name: "Connection: Online" })).toBeVisible();
  expect(await stored(first)).toEqual({ machines: 0, sessions: 0 });
  const fresh = await whoAmI(first);
  expect(fresh.print).not.toBe(prints.first);
});

test("a device revokes itself: this browser loses access and is back on the pairing screen, its data erased", async () => {
  await tab(second, "Settings").click();
  const me = row(second, prints.secondShort);
  await me.getByRole("button", { name: "Revoke this device…" }).click();
  await expect(me.getByRole("alertdialog")).toContainText("This browser loses access at once");
  await expect(me.getByRole("alertdialog")).toContainText("pair again to come back");
  await me.getByRole("button", { name: "Revoke this device" }).click();
  await expect(second).toHaveURL(/#\/pair$/);
  await expect(second.getByRole("heading", { name: "Pair a machine" })).toBeVisible();
  expect(await stored(second)).toEqual({ machines: 0, sessions: 0 });
  expect((await whoAmI(second)).print).not.toBe(prints.second);
  await tab(second, "Machines").click();
  await expect(second.getByText("No machine is paired yet.")).toBeVisible();
  // The machine forgot its last device: it offers pairing again.
  await waitFor("alpha to forget every device", () => alpha.status()?.paired_devices === 0);
});
