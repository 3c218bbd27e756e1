// The numbers for issue 13's closing note, from Debian's Chromium at phone size against real
// relay, daemon and command processes on 127.0.0.1 (tests/e2e/harness.ts), in one run:
//
// - a pairing link opened → the machine shown paired (fresh browser profile each time);
// - reload → first paint from the IndexedDB cache (the session screen, the machines screen);
// - a session of BENCH_EVENTS (10,000) events: frames while it streams in (and the main
//   thread's busy time and IndexedDB write transactions meanwhile), rendered when opened,
//   frames while scrolled from its end to its start and back;
// - the JS heap (and the wasm core's memory, DOM nodes) after those events;
// - the app's size gzipped, from web/dist.
//
// Each measurement is repeated (BENCH_REPEAT, 5) and the median printed; frame numbers are
// over every frame of every pass. The session is a `command` whose lines alternate stdout and
// stderr, paced so that each line is its own event and its own transcript block: the most
// blocks 10,000 events can make (an agent's tool cards come close; a build log's chunks merge
// into fewer, larger blocks).

import { test, expect, type Browser, type BrowserContext, type Page } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { MUXAGENT, WEB, World, type Daemon } from "../e2e/harness";
import {
  FRAME_MS,
  busy,
  countWrites,
  writesSoFar,
  firstContentfulPaint,
  frameSummary,
  installWatches,
  kb,
  mark,
  mb,
  median,
  memory,
  ms,
  scrollThrough,
  startFrames,
  stopFrames,
  table,
  type Frames,
  type Memory,
  type Watch,
} from "./measure";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 10_000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
/** Scroll passes (start and back) over the big session. */
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
/** Pixels scrolled per frame: a quick fling, 24,000 px/s at 60 Hz. */
const STEP = 400;
/** Frames one scroll pass may take before it counts as stuck. */
const MAX_FRAMES = 20_000;

const WATCHES: Watch[] = [
  { name: "paired", selector: ".card.ok[role=status]", text: "Paired with" },
  { name: "machine", selector: "article.machine" },
  { name: "end", selector: "ol.transcript > li:last-child", text: "Exited" },
  { name: "online", selector: '[role=status][aria-label="Connection: Online"]' },
];

type Row = [string, string, string];

async function phone(browser: Browser): Promise<BrowserContext> {
  const use = test.info().project.use;
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    colorScheme: "dark",
    serviceWorkers: "allow",
    ...(use.userAgent ? { userAgent: use.userAgent } : {}),
  });
  await context.addInitScript(installWatches, WATCHES);
  await context.addInitScript(countWrites);
  return context;
}

/** A command printing `count` lines, alternating stdout and stderr. Before each line it waits
 *  until the daemon has read both pipes empty (FIONREAD, 0x541B on Linux), so each line is one
 *  read, one event and one block, as fast as the daemon takes them. */
function command(count: number): string {
  return (
    `perl -e 'use Time::HiRes qw(sleep); $| = 1; ` +
    `sub waiting { my $n = pack("L", 0); ioctl($_[0], 0x541B, $n) or return 0; unpack("L", $n) } ` +
    `for my $i (1..${count}) { sleep 0.0002 while waiting(*STDOUT) || waiting(*STDERR); ` +
    `my $fh = $i % 2 ? *STDOUT : *STDERR; print $fh "event $i of ${count}: " . ("lorem ipsum " x ($i % 9)) . "\\n" }'`
  );
}

function lastSeq(daemon: Daemon): number {
  const out = execFileSync(MUXAGENT(), ["sessions", "--json"], { env: daemon.env(), timeout: 10_000 });
  const parsed = JSON.parse(out.toString()) as { sessions?: { last_seq: number; title: string }[] } | { last_seq: number; title: string }[];
  const sessions = Array.isArray(parsed) ? parsed : (parsed.sessions ?? []);
  return Math.max(0, ...sessions.map((s) => s.last_seq));
}

/** The session screen opened from the machines screen: from the tap to the transcript's end
 *  painted. */
async function openSession(page: Page, hash: string): Promise<number> {
  await page.evaluate(() => (location.hash = "#/"));
  await expect(page.locator("article.machine").first()).toBeVisible();
  return page.evaluate(
    (to) =>
      new Promise<number>((resolve) => {
        const t0 = performance.now();
        location.hash = to;
        const tick = () => {
          const end = document.querySelector("ol.transcript > li:last-child");
          if ((end?.textContent ?? "").includes("Exited")) setTimeout(() => resolve(performance.now() - t0), 0);
          else requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }),
    hash,
  );
}

/** Reload `page` REPEAT times; the medians of the marks named. */
async function reloads(page: Page, names: string[]): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = { fcp: [] };
  for (const name of names) samples[name] = [];
  for (let i = 0; i < REPEAT; i++) {
    await page.reload();
    for (const name of names) samples[name]!.push(await mark(page, name));
    samples.fcp!.push(await firstContentfulPaint(page));
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

function scrollPasses(page: Page, passes: number): Promise<{ up: Frames & { ms: number[] }; down: Frames & { ms: number[] } }> {
  return (async () => {
    const up = { frames: [] as number[], long: [] as number[], ms: [] as number[] };
    const down = { frames: [] as number[], long: [] as number[], ms: [] as number[] };
    for (let i = 0; i < passes; i++) {
      for (const [into, isUp] of [
        [up, true],
        [down, false],
      ] as const) {
        const pass = await page.evaluate(scrollThrough, { up: isUp, step: STEP, maxFrames: MAX_FRAMES });
        expect(pass.done, `scroll pass ${i + 1} ${isUp ? "up" : "down"} reached the end`).toBe(true);
        into.frames.push(...pass.frames);
        into.long.push(...pass.long);
        into.ms.push(pass.ms);
        console.log(`  scroll pass ${i + 1} ${isUp ? "up" : "down"}: ${(pass.ms / 1000).toFixed(1)} s, ${pass.frames.length} frames`);
      }
    }
    return { up, down };
  })();
}

function memoryRow(what: string, samples: Memory[]): Row {
  const pick = (f: (m: Memory) => number) => median(samples.map(f));
  return [
    what,
    mb(pick((m) => m.jsHeap)),
    `JS heap after GC (performance.memory ${mb(pick((m) => m.perfMemory))}); wasm memory ${mb(pick((m) => m.wasm))}; ${pick((m) => m.nodes)} DOM nodes`,
  ];
}

/** web/dist's gzipped files by kind, as the relay serves them. */
function sizes(): Row[] {
  const dist = join(WEB, "dist");
  const assets = readdirSync(join(dist, "assets")).filter((f) => f.endsWith(".gz"));
  const size = (files: string[]) => files.reduce((sum, f) => sum + statSync(join(dist, "assets", f)).size, 0);
  const wasm = assets.filter((f) => f.endsWith(".wasm.gz"));
  const lazy = assets.filter((f) => /^qr-.*\.js\.gz$/.test(f));
  const js = assets.filter((f) => f.endsWith(".js.gz") && !lazy.includes(f));
  const css = assets.filter((f) => f.endsWith(".css.gz"));
  let total = 0;
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".gz") && name !== "SOURCE.gz") total += statSync(path).size;
    }
  };
  walk(dist);
  return [
    ["size: wasm core", kb(size(wasm)), "gzip, web/dist/assets"],
    ["size: JS at start", kb(size(js)), "gzip (app + chunks)"],
    ["size: JS on demand", kb(size(lazy)), "gzip (the QR decoder, for the camera scanner without BarcodeDetector)"],
    ["size: CSS", kb(size(css)), "gzip"],
    ["size: whole app", kb(total), "gzip, every file served (web/check's budget: 250 KB)"],
  ];
}

test("the numbers for the closing note", async ({ browser }) => {
  const world = await World.start();
  const rows: Row[] = [];
  const began = Date.now();
  // Each number as it comes (a long run shows its progress), the table at the end.
  const row = (...r: Row[]) => {
    rows.push(...r);
    for (const [what, value, how] of r) console.log(`[${((Date.now() - began) / 1000).toFixed(0)} s] ${what}: ${value} — ${how}`);
  };
  const contexts: BrowserContext[] = [];
  try {
    // 1. Pairing: each time a machine's fresh link in a browser that never opened the app.
    const paired: number[] = [];
    let page: Page | null = null;
    let daemon: Daemon | null = null;
    for (let i = 1; i <= REPEAT; i++) {
      const machine = await world.daemon(`bench-${i}`);
      const context = await phone(browser);
      contexts.push(context);
      const tab = await context.newPage();
      await tab.goto(world.pageLink(await machine.link()));
      paired.push(await mark(tab, "paired"));
      if (i === 1) {
        page = tab;
        daemon = machine;
      } else {
        await context.close();
        await machine.stop();
      }
    }
    row(["pairing link → machine paired", ms(median(paired)), `ms, median of ${paired.length} (${paired.map(ms).join(", ")})`]);
    if (!page || !daemon) throw new Error("no pairing");
    page.on("pageerror", (error) => console.log("page error:", error.message));
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Performance.enable");

    // 2. The big session, followed live from its start.
    const work = join(world.root, "work");
    mkdirSync(work, { recursive: true });
    await page.evaluate(() => (location.hash = "#/new"));
    await page.getByLabel("Machine", { exact: true }).selectOption({ label: "bench-1" });
    const runtimes = page.getByLabel("Runtime", { exact: true });
    await expect(runtimes.locator('option[value="command"]')).toBeEnabled();
    await runtimes.selectOption("command");
    await page.getByLabel("Working directory").fill(work);
    await page.getByLabel("Title (optional)").fill(`${EVENTS} events`);
    await page.getByLabel(/^Command/).fill(command(EVENTS));
    await page.evaluate(startFrames);
    const busyBefore = await busy(cdp);
    const writesBefore = await page.evaluate(writesSoFar);
    const streamStart = Date.now();
    await page.getByRole("button", { name: "Start session" }).click();
    await expect(page).toHaveURL(/#\/m\/[0-9a-f]+\/s\/[0-9a-f]+$/);
    const hash = new URL(page.url()).hash;
    await expect(page.locator("ol.transcript > li:last-child")).toContainText("Exited with code 0", { timeout: 10 * 60_000 });
    const streamMs = Date.now() - streamStart;
    const live = await page.evaluate(stopFrames);
    const busyAfter = await busy(cdp);
    const writes = (await page.evaluate(writesSoFar)) - writesBefore;
    const events = lastSeq(daemon);
    row([`${EVENTS}-line session streamed`, ms(median(live.frames)), `ms/frame p50 while ${events} events arrived in ${(streamMs / 1000).toFixed(1)} s; ${frameSummary(live)}`]);
    const task = busyAfter.task - busyBefore.task;
    row([
      "main thread while streaming",
      `${((100 * task) / (streamMs / 1000)).toFixed(0)} %`,
      `busy ${task.toFixed(1)} s of ${(streamMs / 1000).toFixed(1)} s (script ${(busyAfter.script - busyBefore.script).toFixed(1)} s); ${writes} IndexedDB write transactions`,
    ]);

    // 3. Scrolled from its end to its start and back, every event held in the page.
    const blocksBefore = await page.locator("ol.transcript > li").count();
    const scrolled = await scrollPasses(page, PASSES);
    row([
      `scroll to start (${events} events)`,
      ms(median(scrolled.up.frames)),
      `${frameSummary(scrolled.up)}; pass ${(median(scrolled.up.ms) / 1000).toFixed(1)} s at ${STEP} px/frame`,
    ]);
    row(["scroll back to end", ms(median(scrolled.down.frames)), `${frameSummary(scrolled.down)}; pass ${(median(scrolled.down.ms) / 1000).toFixed(1)} s`]);
    const blocksAfter = await page.locator("ol.transcript > li").count();

    // 4. Memory with every event held and scrolled through.
    const held: Memory[] = [];
    for (let i = 0; i < 3; i++) held.push(await memory(page, cdp));
    row(memoryRow(`memory after ${events} events`, held));
    row(["transcript items in the DOM", String(blocksAfter), `at the end before scrolling ${blocksBefore}; after scrolling to the start and back`]);

    // 5. Opened from the machines screen (the core's cached newest events).
    const opened: number[] = [];
    for (let i = 0; i < REPEAT; i++) opened.push(await openSession(page, hash));
    row(["open the session (from the list)", ms(median(opened)), `ms tap → transcript end painted, median of ${opened.length}`]);

    // 6. Reload → first paint from the cache.
    const session = await reloads(page, ["end", "online"]);
    row(["reload → session from cache", ms(session.end!), `ms navigation → transcript end painted; FCP ${ms(session.fcp!)}; online ${ms(session.online!)} (medians of ${REPEAT})`]);
    await page.evaluate(() => (location.hash = "#/"));
    const machines = await reloads(page, ["machine", "online"]);
    row(["reload → machines from cache", ms(machines.machine!), `ms navigation → machine card painted; FCP ${ms(machines.fcp!)}; online ${ms(machines.online!)}`]);

    // 7. After a reload the page holds the cached newest events; scrolling to the start fetches
    //    the older ones from the machine.
    await page.evaluate((to) => (location.hash = to), hash);
    await expect(page.locator("ol.transcript > li:last-child")).toContainText("Exited");
    await page.evaluate(() => scrollTo(0, document.documentElement.scrollHeight));
    const fetched = await page.evaluate(scrollThrough, { up: true, step: STEP, maxFrames: MAX_FRAMES * 2 });
    expect(fetched.done, "scrolled to the start after a reload").toBe(true);
    row([
      "after reload: scroll to start",
      ms(median(fetched.frames)),
      `${frameSummary(fetched)}; ${(fetched.ms / 1000).toFixed(1)} s incl. fetching older events`,
    ]);
    const refetched: Memory[] = [];
    for (let i = 0; i < 3; i++) refetched.push(await memory(page, cdp));
    row(memoryRow("memory after that", refetched));

    row(...sizes());
    console.log(
      `\nmuxagent web bench: Chromium ${browser.version()}, 390×844 @2x, ${events} events; frame budget ${ms(FRAME_MS)} ms\n` +
        table([["what", "number", "how"], ...rows]) +
        "\n",
    );
  } finally {
    for (const context of contexts) await context.close().catch(() => undefined);
    await world.close();
  }
});
