// What web/bench measures in the page, and how it sums the samples up. The page-side functions
// are passed to Playwright's evaluate/addInitScript, so each is self-contained (no closures).
// Times are the page's performance.now(): from its navigation start, which for a link opened
// or a reload is the moment the person opened it.

import type { CDPSession, Page } from "@playwright/test";

/** Something to time: the first frame in which `selector` matches (and holds `text`). */
export interface Watch {
  name: string;
  selector: string;
  text?: string;
}

/** Init script: from the document's start, check the watches every frame; when one first
 *  matches, note the time just after that frame is painted (a task queued from the frame's
 *  rAF runs after its paint). Stops after a minute. */
export function installWatches(watches: Watch[]): void {
  const marks: Record<string, number> = {};
  (window as unknown as { __benchMarks: Record<string, number> }).__benchMarks = marks;
  const started = performance.now();
  const tick = () => {
    for (const watch of watches) {
      if (watch.name in marks) continue;
      const node = document.querySelector(watch.selector);
      if (node && (!watch.text || (node.textContent ?? "").includes(watch.text))) {
        marks[watch.name] = -1;
        setTimeout(() => {
          marks[watch.name] = performance.now();
        }, 0);
      }
    }
    if (watches.some((w) => !(w.name in marks)) && performance.now() - started < 60_000) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

/** The time of a watch's mark, once it is set. */
export async function mark(page: Page, name: string): Promise<number> {
  const handle = await page.waitForFunction(
    (n) => {
      const at = (window as unknown as { __benchMarks?: Record<string, number> }).__benchMarks?.[n];
      return at !== undefined && at > 0 ? at : false;
    },
    name,
    { timeout: 60_000, polling: 50 },
  );
  return (await handle.jsonValue()) as number;
}

/** First contentful paint of the current document, ms. */
export async function firstContentfulPaint(page: Page): Promise<number> {
  return page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN);
}

/** Frames seen by a recorder: intervals between successive rAF times (a frame whose main
 *  thread work runs long delays the next), and the long animation frames (> 50 ms) Chromium
 *  reported. */
export interface Frames {
  frames: number[];
  long: number[];
}

/** Start recording frames in the page until `stopFrames`. */
/** In the page before the app: count IndexedDB write transactions (`__benchWrites`). */
export function countWrites(): void {
  if (typeof IDBDatabase === "undefined") return;
  const counter = { transactions: 0 };
  (window as unknown as { __benchWrites: typeof counter }).__benchWrites = counter;
  const original = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (this: IDBDatabase, ...args: Parameters<typeof original>) {
    if (args[1] === "readwrite") counter.transactions++;
    return original.apply(this, args);
  } as typeof original;
}

/** IndexedDB write transactions the page made so far. */
export function writesSoFar(): number {
  return (window as unknown as { __benchWrites?: { transactions: number } }).__benchWrites?.transactions ?? 0;
}

/** The renderer's main-thread time so far, in seconds (CDP `Performance` metrics). */
export async function busy(cdp: CDPSession): Promise<{ task: number; script: number }> {
  const { metrics } = (await cdp.send("Performance.getMetrics")) as { metrics: { name: string; value: number }[] };
  const value = (name: string) => metrics.find((m) => m.name === name)?.value ?? 0;
  return { task: value("TaskDuration"), script: value("ScriptDuration") };
}

export function startFrames(): void {
  const rec = { frames: [] as number[], long: [] as number[], on: true, last: 0, observer: null as PerformanceObserver | null };
  (window as unknown as { __benchFrames: typeof rec }).__benchFrames = rec;
  const loop = (t: number) => {
    if (rec.last) rec.frames.push(t - rec.last);
    rec.last = t;
    if (rec.on) requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  try {
    rec.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) rec.long.push(entry.duration);
    });
    rec.observer.observe({ type: "long-animation-frame" });
  } catch {
    rec.observer = null;
  }
}

export function stopFrames(): Frames {
  const rec = (window as unknown as { __benchFrames: { frames: number[]; long: number[]; on: boolean; observer: PerformanceObserver | null } })
    .__benchFrames;
  rec.on = false;
  rec.observer?.disconnect();
  return { frames: rec.frames, long: rec.long };
}

/** Scroll the page by `step` px every frame, up to the session's start (tapping "Show
 *  earlier" when the top holds one, as a person would) or down to its end. Returns the frames
 *  and whether the end was reached within `maxFrames`. */
export async function scrollThrough({ up, step, maxFrames }: { up: boolean; step: number; maxFrames: number }): Promise<Frames & { done: boolean; ms: number }> {
  const nextFrame = () => new Promise<number>((resolve) => requestAnimationFrame(resolve));
  const long: number[] = [];
  let observer: PerformanceObserver | null = null;
  try {
    observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) long.push(entry.duration);
    });
    observer.observe({ type: "long-animation-frame" });
  } catch {
    observer = null;
  }
  const frames: number[] = [];
  const first = await nextFrame();
  let last = first;
  let done = false;
  const root = document.documentElement;
  for (let i = 0; i < maxFrames && !done; i++) {
    scrollBy(0, up ? -step : step);
    const t = await nextFrame();
    frames.push(t - last);
    last = t;
    if (up && scrollY <= 0) {
      const older = document.querySelector(".older");
      if ((older?.textContent ?? "").includes("Start of the session")) done = true;
      else {
        const button = older?.querySelector("button");
        if (button && (button.textContent ?? "").includes("Show earlier")) button.click();
      }
    } else if (!up && innerHeight + scrollY >= root.scrollHeight - 2) {
      const end = document.querySelector("ol.transcript > li:last-child");
      done = (end?.textContent ?? "").includes("Exited") && !document.querySelector(".later button");
    }
  }
  observer?.disconnect();
  return { frames, long, done, ms: last - first };
}

export interface Memory {
  /** JS heap in use after a full GC (CDP Runtime.getHeapUsage), bytes. */
  jsHeap: number;
  /** performance.memory.usedJSHeapSize (precise with --enable-precise-memory-info), bytes. */
  perfMemory: number;
  /** The wasm core's linear memory, bytes. */
  wasm: number;
  /** DOM nodes alive (CDP Memory.getDOMCounters). */
  nodes: number;
}

export async function memory(page: Page, cdp: CDPSession): Promise<Memory> {
  await cdp.send("HeapProfiler.enable");
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("HeapProfiler.collectGarbage");
  const usage = await cdp.send("Runtime.getHeapUsage");
  const counters = await cdp.send("Memory.getDOMCounters");
  const perfMemory = await page.evaluate(
    () => (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? NaN,
  );
  // The core's WebAssembly.Memory is not reachable from the page's globals: ask the heap.
  let wasm = NaN;
  const proto = await cdp.send("Runtime.evaluate", { expression: "WebAssembly.Memory.prototype" });
  if (proto.result.objectId) {
    const found = await cdp.send("Runtime.queryObjects", { prototypeObjectId: proto.result.objectId });
    if (found.objects.objectId) {
      const sizes = await cdp.send("Runtime.callFunctionOn", {
        objectId: found.objects.objectId,
        functionDeclaration: "function () { return this.reduce((sum, m) => sum + m.buffer.byteLength, 0); }",
        returnByValue: true,
      });
      wasm = Number(sizes.result.value);
    }
  }
  return { jsHeap: usage.usedSize, perfMemory, wasm, nodes: counters.nodes };
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** A 60 Hz frame's budget; an interval past 1.5 of it means at least one frame was missed. */
export const FRAME_MS = 1000 / 60;

/** p50 / p95 / max of the frame intervals, the share that missed a frame, and the long
 *  animation frames. */
export function frameSummary({ frames, long }: Frames): string {
  const missed = frames.filter((f) => f > FRAME_MS * 1.5).length;
  const share = frames.length ? Math.round((100 * missed) / frames.length) : 0;
  return (
    `p50 ${ms(median(frames))} · p95 ${ms(percentile(frames, 95))} · max ${ms(Math.max(...frames))} ms/frame; ` +
    `${share}% missed of ${frames.length}; ${long.length} long (>50 ms)`
  );
}

export const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(value < 100 ? 1 : 0) : "–");
export const mb = (bytes: number) => (Number.isFinite(bytes) ? (bytes / 1024 / 1024).toFixed(1) + " MB" : "–");
export const kb = (bytes: number) => (bytes / 1024).toFixed(1) + " KB";

/** The table, as rows of (what, number, how). */
export function table(rows: [string, string, string][]): string {
  const width = [0, 1].map((c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map(([what, value, how]) => `${what.padEnd(width[0]!)}  ${value.padStart(width[1]!)}  ${how}`).join("\n");
}
