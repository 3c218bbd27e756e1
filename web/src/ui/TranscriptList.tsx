// A session's transcript as the core follows it, rendered as a window of its blocks (see
// window.ts): the newest while the reader is at the end, following it; a window that moves
// with the reader once they scroll back, fetching older events from the machine at the top.
// Whatever the window does above the reader, the block they are reading stays where it is on
// screen (the browser's scroll anchoring does this where it exists; the layout effect below
// does it where it does not).

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Hex } from "../contract";
import { approvalsOf, core, messageOf } from "../state";
import { Transcript } from "../transcript";
import { downFrom, rangeOf, seqOf, upFrom } from "../window";
import { BlockItem } from "./Blocks";

/** The first block on screen, and where it was. */
interface Anchor {
  key: string;
  top: number;
}

export function TranscriptList({ machine, session }: { machine: Hex; session: Hex }) {
  const model = useRef<Transcript>(new Transcript());
  const [, setVersion] = useState(0);
  // The window's top block (its key as a seq), or null: the newest, following the end.
  const [top, setTop] = useState<number | null>(null);
  const [older, setOlder] = useState<"idle" | "loading" | "start" | string>("idle");
  /** The reader is at the end of the page with the window on the newest blocks: new blocks,
   *  and anything else that grows the page, scroll into view. Set by their scrolling. */
  const stick = useRef(false);
  const anchor = useRef<Anchor | null>(null);
  const list = useRef<HTMLOListElement>(null);
  const above = useRef<HTMLDivElement>(null);
  const below = useRef<HTMLDivElement>(null);
  const blocks = model.current.blocks;
  const range = rangeOf(blocks, top);
  // What the callbacks below read: the latest render's, not the one they were made in.
  const now = useRef({ top, range, length: blocks.length });
  now.current = { top, range, length: blocks.length };

  useEffect(
    () =>
      core().follow(machine, session, (events) => {
        const { top: shownTop, range: shown } = now.current;
        // Whether the reader is at the end is what they last scrolled to, not a measure of
        // now: the page also grows under them (the composer appears when the session starts).
        follow(stick, stick.current && shownTop === null);
        if (!stick.current) {
          // Older events refold the blocks above the reader: note what they read. (Newer ones
          // only add below; measuring the page for each would cost a layout per batch.)
          const last = model.current.lastSeq;
          if (last !== undefined && events.some((e) => e.seq < last)) anchor.current = firstOnScreen(list.current);
          // Reading back while following: hold the window's top so that new blocks extend
          // it below instead of sliding it away from under the reader.
          const first = model.current.blocks[shown.from];
          if (shownTop === null && first) setTop(seqOf(first));
        }
        if (model.current.add(events)) setVersion((v) => v + 1);
      }),
    [machine, session],
  );

  // The first event of every session is `started`: nothing older exists.
  const whole = blocks[0]?.kind === "started" ? "start" : older;

  const move = (to: number | null) => {
    anchor.current = firstOnScreen(list.current);
    follow(stick, false);
    setTop(to);
  };

  const showEarlier = async () => {
    const { range: shown } = now.current;
    const up = upFrom(model.current.blocks, shown);
    if (up !== null) return move(up);
    if (whole === "start" || older === "loading") return;
    // Hold the top where it is, so the older blocks come in above the window.
    const first = model.current.blocks[shown.from];
    if (first) move(seqOf(first));
    setOlder("loading");
    try {
      const more = await core().loadOlder(machine, session);
      setOlder(more ? "idle" : "start");
    } catch (error) {
      setOlder(messageOf(error));
    }
  };

  const showLater = () => {
    const down = downFrom(model.current.blocks, now.current.range);
    if (down !== null) move(down);
  };

  // Open at the end, in the same frame as the first blocks; afterwards keep the block the
  // reader reads in place when the window moved or older blocks came in.
  const opened = useRef(false);
  const scrolled = useRef(false);
  useLayoutEffect(() => {
    if (!opened.current) {
      opened.current = true;
      follow(stick, true);
    }
    if (blocks.length > 0 && !scrolled.current) {
      scrolled.current = true;
      if (stick.current) scrollTo(0, document.documentElement.scrollHeight);
    }
    if (!stick.current && anchor.current) keepInPlace(list.current, anchor.current);
    anchor.current = null;
  });

  // Follow the end while the reader is there: whenever the screen grows (new blocks, the
  // composer appearing), after the browser's layout, so no render forces one of its own.
  useEffect(() => {
    const screen = list.current?.parentElement;
    if (!screen || typeof ResizeObserver === "undefined") return undefined;
    const observer = new ResizeObserver(() => {
      const root = document.documentElement;
      if (stick.current && innerHeight + scrollY < root.scrollHeight - 1) scrollTo(0, root.scrollHeight);
    });
    observer.observe(screen);
    return () => observer.disconnect();
  }, []);

  // The reader's scrolling: up and away from the end stops following it; back at the end with
  // the newest block shown follows it again. Scrolls that are not the reader's (ours to the
  // end, the page clamping when it shrinks) never go up away from the end, so they do not
  // count.
  useEffect(() => {
    let lastY = scrollY;
    const onScroll = () => {
      const { top: shownTop, range: shown, length } = now.current;
      if (atBottom()) {
        if (shownTop === null) follow(stick, true);
        else if (shown.to >= length) {
          follow(stick, true);
          setTop(null);
        }
      } else if (scrollY < lastY) follow(stick, false);
      lastY = scrollY;
    };
    addEventListener("scroll", onScroll, { passive: true });
    return () => {
      removeEventListener("scroll", onScroll);
      follow(stick, false);
    };
  }, []);

  // Move the window when an edge comes within a screen of the viewport. Observed anew after
  // each render, so a reader still at an edge after a move (a fast fling) moves it again.
  useEffect(() => {
    if (typeof IntersectionObserver === "undefined") return undefined;
    const observer = new IntersectionObserver(
      (entries) => {
        const near = new Set(entries.filter((e) => e.isIntersecting).map((e) => e.target));
        if (near.has(above.current!) && near.has(below.current!)) return;
        if (near.has(above.current!) && !stick.current) void showEarlier();
        else if (near.has(below.current!)) showLater();
      },
      { rootMargin: "100% 0px" },
    );
    if (above.current) observer.observe(above.current);
    if (below.current) observer.observe(below.current);
    return () => observer.disconnect();
  });

  const approvals = approvalsOf(machine, session);
  const shown = blocks.slice(range.from, range.to);
  return (
    <>
      <div ref={above} class="older">
        {range.from > 0 || whole === "idle" ? (
          <button type="button" class="small" onClick={showEarlier}>
            Show earlier
          </button>
        ) : whole === "loading" ? (
          <p class="muted small">Loading earlier events…</p>
        ) : whole === "start" ? (
          <p class="muted small">Start of the session</p>
        ) : (
          <p class="error small" role="alert">{whole}</p>
        )}
      </div>
      <ol ref={list} class="transcript" aria-label="Transcript" aria-live="off">
        {shown.map((block) => (
          <BlockItem key={block.key} block={block} approval={block.kind === "approval" ? approvals.get(block.approval) : undefined} />
        ))}
      </ol>
      <div ref={below} class="later">
        {range.to < blocks.length && (
          <button type="button" class="small" onClick={showLater}>
            Show later
          </button>
        )}
      </div>
    </>
  );
}

/** Follow the end or stop. While following, the browser's scroll anchoring is off for the
 *  page (html.following): the window sliding down under a reader at the end would otherwise
 *  look like their scrolling up. */
function follow(stick: { current: boolean }, on: boolean): void {
  stick.current = on;
  document.documentElement.classList.toggle("following", on);
}

function atBottom(): boolean {
  return innerHeight + scrollY >= document.documentElement.scrollHeight - 120;
}

/** The first block at least partly on screen (the rendered blocks are in order: bisect). */
function firstOnScreen(list: HTMLOListElement | null): Anchor | null {
  const items = list?.children;
  if (!items || items.length === 0) return null;
  let low = 0;
  let high = items.length - 1;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (items[middle]!.getBoundingClientRect().bottom > 0) high = middle;
    else low = middle + 1;
  }
  const item = items[low] as HTMLElement;
  const key = item.dataset.key;
  return key === undefined ? null : { key, top: item.getBoundingClientRect().top };
}

/** Scroll so that the anchor's block is where it was (a no-op when the browser's own scroll
 *  anchoring already kept it there, or when the block is gone). */
function keepInPlace(list: HTMLOListElement | null, anchor: Anchor): void {
  const item = list?.querySelector<HTMLElement>(`li[data-key="${anchor.key}"]`);
  if (!item) return;
  const moved = item.getBoundingClientRect().top - anchor.top;
  if (Math.abs(moved) >= 1) scrollBy(0, moved);
}
