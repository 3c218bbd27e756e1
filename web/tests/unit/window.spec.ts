import { expect, test } from "@playwright/test";
import { MAX, STEP, WINDOW, downFrom, indexAt, rangeOf, upFrom } from "../../src/window";

/** Blocks keyed 10, 20, 30, …: keys are the seqs of their first events, with gaps. */
const blocks = (n: number) => Array.from({ length: n }, (_, i) => ({ key: String((i + 1) * 10) }));

test("a key is found by bisection; a missing one gives the next block", () => {
  const b = blocks(1000);
  expect(indexAt(b, 10)).toBe(0);
  expect(indexAt(b, 500)).toBe(49);
  expect(indexAt(b, 505)).toBe(50);
  expect(indexAt(b, 1)).toBe(0);
  expect(indexAt(b, 99_999)).toBe(1000);
  expect(indexAt([], 5)).toBe(0);
});

test("following the end renders the newest WINDOW blocks, or all of a short transcript", () => {
  expect(rangeOf(blocks(10_000), null)).toEqual({ from: 10_000 - WINDOW, to: 10_000 });
  expect(rangeOf(blocks(20), null)).toEqual({ from: 0, to: 20 });
  expect(rangeOf([], null)).toEqual({ from: 0, to: 0 });
});

test("moving up adds STEP above and never renders more than MAX", () => {
  const b = blocks(10_000);
  let range = rangeOf(b, null);
  for (let moves = 0; moves < 200; moves++) {
    const top = upFrom(b, range);
    if (top === null) break;
    const next = rangeOf(b, top);
    expect(next.from).toBe(Math.max(0, range.from - STEP));
    expect(next.to - next.from).toBeLessThanOrEqual(MAX);
    range = next;
  }
  expect(range).toEqual({ from: 0, to: MAX });
  expect(upFrom(b, range)).toBeNull();
});

test("moving down drops STEP above until the newest block is shown", () => {
  const b = blocks(1_000);
  let range = rangeOf(b, 10);
  const seen: number[] = [];
  for (let moves = 0; moves < 100; moves++) {
    const top = downFrom(b, range);
    if (top === null) break;
    range = rangeOf(b, top);
    seen.push(range.from);
    expect(range.to - range.from).toBe(MAX);
  }
  expect(range.to).toBe(1_000);
  expect(seen).toEqual([100, 200, 300, 400, 500, 600]);
  expect(downFrom(b, range)).toBeNull();
});

test("older blocks folded in above keep the window on the same blocks", () => {
  const newer = blocks(1_000).slice(500);
  const top = Number(newer[100]!.key);
  const before = rangeOf(newer, top);
  const after = rangeOf(blocks(1_000), top);
  expect(after.from - before.from).toBe(500);
  expect(after.to - after.from).toBe(before.to - before.from);
});
