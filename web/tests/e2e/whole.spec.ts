// Approvals whose input is longer than one event carries: the card fetches the whole input from
// the machine, says how far it got, shows the beginning with a "Show all" that must be opened
// before Allow is enabled, and allows over the whole. An input longer than a device fetches can
// only be denied, and Deny works on it at once.

import { expect, test, type BrowserContext, type Locator, type Page } from "@playwright/test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WEB, World, waitFor } from "./harness";

test.describe.configure({ mode: "serial" });

let world: World;
let context: BrowserContext;
let page: Page;
let work: string;

test.beforeAll(async ({ browser }) => {
  world = await World.start();
  work = join(world.root, "work");
  mkdirSync(work, { recursive: true });
  context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  page = await context.newPage();
  page.on("pageerror", (error) => console.log("page error:", error.message));
});

test.afterAll(async () => {
  await context?.close();
  await world?.close();
});

const tab = (name: string | RegExp) => page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name });

/** Pair a machine whose agent asks once, with an input of about `len` bytes. */
async function pairAsker(hostname: string, len: number): Promise<void> {
  const daemon = await world.daemon(hostname, { claude: "approve", env: { FAKE_AGENT_BENCH: "1", FAKE_AGENT_INPUT_LEN: String(len) } });
  await page.goto(world.pageLink(await daemon.link()));
  await expect(page.getByRole("status").filter({ hasText: "Paired with" })).toContainText(hostname);
  await waitFor("the daemon to count the device", () => daemon.status()?.paired_devices === 1);
}

async function startSession(machine: string): Promise<void> {
  await tab("New").click();
  await page.getByLabel("Machine", { exact: true }).selectOption({ label: machine });
  const runtimes = page.getByLabel("Runtime", { exact: true });
  await expect(runtimes.locator('option[value="claude"]')).toBeEnabled();
  await runtimes.selectOption("claude");
  await page.getByLabel("Working directory").fill(work);
  await page.getByLabel("Prompt", { exact: true }).fill("write the big file");
  await page.getByRole("button", { name: "Start session" }).click();
  await expect(page).toHaveURL(/#\/m\/[0-9a-f]+\/s\/[0-9a-f]+$/);
}

async function waitingCard(machine: string): Promise<Locator> {
  await tab(/Approvals/).click();
  const card = page.getByRole("list", { name: "Waiting" }).getByRole("article", { name: `Approval: Bash on ${machine}` });
  await expect(card).toBeVisible();
  return card;
}

test("a 1 MiB input is fetched whole, must be opened in full, and is allowed", async () => {
  // ~1000 KiB of text as the agent's JSON: the event carries 24 KiB of it.
  await pairAsker("big", 1_000_000);
  const started = performance.now();
  await startSession("big");
  const card = await waitingCard("big");
  const allow = card.getByRole("button", { name: "Allow once" });
  const showAll = card.getByRole("button", { name: /^Show all \d+ KiB$/ });
  await expect(showAll).toBeVisible({ timeout: 60_000 });
  const fetched = performance.now();
  // Whole, but not yet opened: Allow stays off.
  await expect(allow).toBeDisabled();
  await expect(card).toContainText("open all of it before you allow it");
  await showAll.click();
  const input = (await card.locator("pre.input").textContent()) ?? "";
  const shown = performance.now();
  const command = JSON.parse(input) as { command: string };
  expect(command.command.startsWith("true 0écrire une ligne")).toBe(true);
  expect(input.length).toBeGreaterThan(900_000);
  await expect(allow).toBeEnabled();
  await allow.click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on big" });
  await expect(decided).toContainText("Applied — the agent has the answer");
  const summary = { bytes: input.length, ask_to_whole_ms: Math.round(fetched - started), show_all_ms: Math.round(shown - fetched) };
  console.log("1 MiB input:", JSON.stringify(summary));
  mkdirSync(join(WEB, "test-results"), { recursive: true });
  writeFileSync(join(WEB, "test-results/whole-input.json"), JSON.stringify(summary, null, 2) + "\n");
});

test("an input longer than a device fetches cannot be allowed, and is denied at once", async () => {
  await pairAsker("huge", 1_200_000);
  await startSession("huge");
  const card = await waitingCard("huge");
  await expect(card.getByRole("status").filter({ hasText: "cannot be allowed" })).toBeVisible();
  await expect(card.getByRole("button", { name: "Allow once" })).toBeDisabled();
  await expect(card.getByRole("button", { name: /^Show all/ })).toHaveCount(0);
  await card.getByRole("button", { name: "Deny" }).click();
  const decided = page.getByRole("list", { name: "Recent decisions" }).getByRole("article", { name: "Approval: Bash on huge" });
  await expect(decided).toContainText("Denied");
});
