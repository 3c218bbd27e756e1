// Which blocks of a transcript are in the DOM. A session can hold tens of thousands of blocks
// (each event of a command alternating stdout and stderr is one), and a list that only ever
// grows makes every render diff all of them and keeps every node alive. So the list renders a
// window: the newest WINDOW blocks while it follows the end, and at most MAX once the reader
// scrolls back, moved by STEP as either edge of the window comes near the screen. The window's
// top is held as a block's key (its first event's seq), not an index, because older events
// fetched from the machine are folded in above and shift every index.

import type { Block } from "./transcript";

/** Blocks rendered while following the end (a phone screen shows a few dozen). */
export const WINDOW = 150;
/** Blocks added at one edge (and, past MAX, dropped at the other) as the reader scrolls. */
export const STEP = 100;
/** Most blocks in the DOM at once: ~5 nodes each, so ~2,000 nodes however long the session. */
export const MAX = 400;

/** The rendered blocks, `blocks.slice(from, to)`. */
export interface Range {
  from: number;
  to: number;
}

/** The key of a block as a number (keys are seqs, ascending). */
export const seqOf = (block: Pick<Block, "key">): number => Number(block.key);

/** Index of the first block whose key is at least `seq` (blocks.length when none is). */
export function indexAt(blocks: readonly Pick<Block, "key">[], seq: number): number {
  let low = 0;
  let high = blocks.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (seqOf(blocks[middle]!) < seq) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The window: the newest WINDOW blocks when `top` is null (following the end), else up to MAX
 *  blocks from the one keyed `top`. */
export function rangeOf(blocks: readonly Pick<Block, "key">[], top: number | null): Range {
  const length = blocks.length;
  if (top === null) return { from: Math.max(0, length - WINDOW), to: length };
  const from = Math.min(indexAt(blocks, top), Math.max(0, length - 1));
  return { from, to: Math.min(length, from + MAX) };
}

/** The window's new top after moving up by STEP, or null when it shows the first block. */
export function upFrom(blocks: readonly Pick<Block, "key">[], range: Range): number | null {
  if (range.from === 0) return null;
  return seqOf(blocks[Math.max(0, range.from - STEP)]!);
}

/** The window's new top after moving down by STEP, or null when it shows the last block. */
export function downFrom(blocks: readonly Pick<Block, "key">[], range: Range): number | null {
  if (range.to >= blocks.length) return null;
  return seqOf(blocks[Math.min(range.from + STEP, Math.max(0, blocks.length - MAX))]!);
}
