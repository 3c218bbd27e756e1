// One session live: its header (status, runtime, mode, usage), the transcript the core follows,
// and the controls (prompt, interrupt, stop, mode). The transcript renders a window of the
// newest blocks and grows it when the top comes into view; once every held block is shown, the
// top asks the core for older events. Unchanged blocks keep their vnodes, so a new delta
// re-renders one block, not ten thousand.

import type { VNode } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Hex, SessionStatus } from "../contract";
import { dollars, statusLabel, tokens } from "../format";
import { href } from "../route";
import { approvalsOf, core, machine as machineOf, messageOf, session as sessionOf } from "../state";
import { Transcript, type Block } from "../transcript";
import { revealPlain } from "../text";
import { ApprovalCard, decisionText } from "./ApprovalCard";
import { Action, Confirm, DiffView, InputView, Mono, T } from "./common";
import { diffLines } from "../diff";

/** Blocks rendered at first, and added each time the top comes into view. */
export const WINDOW = 150;

/** Suggested permission modes per runtime (any other the agent knows may be typed). */
export const MODES: Record<string, string[]> = {
  claude: ["default", "acceptEdits", "plan", "bypassPermissions"],
  codex: ["untrusted", "on-request", "on-failure", "never"],
  gemini: ["default", "autoEdit", "yolo"],
};

const LIVE: SessionStatus[] = ["idle", "running", "waiting_approval"];

export function SessionScreen({ machine, session }: { machine: Hex; session: Hex }) {
  const s = sessionOf(machine, session);
  const m = machineOf(machine);
  const model = useRef<Transcript>(new Transcript());
  const [version, setVersion] = useState(0);
  const [shown, setShown] = useState(WINDOW);
  const [older, setOlder] = useState<"idle" | "loading" | "start" | string>("idle");
  const stick = useRef(true);
  const keep = useRef<number | null>(null);
  const top = useRef<HTMLDivElement>(null);
  const cache = useRef(new WeakMap<Block, VNode>());

  useEffect(
    () =>
      core().follow(machine, session, (events) => {
        stick.current = atBottom();
        if (model.current.add(events)) setVersion((v) => v + 1);
      }),
    [machine, session],
  );

  const blocks = model.current.blocks;
  const start = Math.max(0, blocks.length - shown);
  // The first event of every session is `started`: nothing older exists.
  const whole = blocks[0]?.kind === "started" ? "start" : older;

  const showOlder = async () => {
    if (older === "loading") return;
    keep.current = document.documentElement.scrollHeight - scrollY;
    if (start > 0) {
      setShown((n) => n + WINDOW);
      return;
    }
    if (whole === "start") return;
    setOlder("loading");
    try {
      const more = await core().loadOlder(machine, session);
      setShown((n) => n + WINDOW);
      setOlder(more ? "idle" : "start");
    } catch (error) {
      setOlder(messageOf(error));
    }
  };

  // Keep the reader's place when blocks are added above, follow the end when they were there.
  useLayoutEffect(() => {
    if (keep.current !== null) {
      scrollTo(0, document.documentElement.scrollHeight - keep.current);
      keep.current = null;
    } else if (stick.current) {
      scrollTo(0, document.documentElement.scrollHeight);
    }
  }, [version, shown]);

  useEffect(() => {
    const node = top.current;
    if (!node || typeof IntersectionObserver === "undefined") return undefined;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !stick.current) void showOlder();
    });
    observer.observe(node);
    return () => observer.disconnect();
  });

  const approvals = approvalsOf(machine, session);
  const rendered = blocks.slice(start).map((block) => {
    if (block.kind === "approval") {
      const view = approvals.get(block.approval);
      return <li key={block.key} class="b b-approval">{view ? <ApprovalCard approval={view} inline /> : <ApprovalBlock block={block} />}</li>;
    }
    let vnode = cache.current.get(block);
    if (!vnode) {
      vnode = (
        <li key={block.key} class={"b b-" + block.kind}>
          <BlockView block={block} />
        </li>
      );
      cache.current.set(block, vnode);
    }
    return vnode;
  });

  const title = s?.title || session.slice(0, 8);
  const live = s ? LIVE.includes(s.status) : false;
  return (
    <section class="screen session" aria-label={`Session ${revealPlain(title)}`}>
      <header class="session-head">
        <p class="small">
          <a href={href({ screen: "machines" })}>Machines</a> › <T text={m?.hostname ?? machine.slice(0, 8)} />
        </p>
        <h2>
          <T text={title} />
        </h2>
        {s ? (
          <p class="meta small">
            <span class={"chip status-" + s.status}>{statusLabel(s.status)}</span> <span>{s.runtime}</span>{" "}
            {s.mode && <span>mode {s.mode}</span>} <span class="mono-inline" title={s.cwd}><T text={s.cwd} /></span>
          </p>
        ) : (
          <p class="muted small">Loading the session…</p>
        )}
        {s && (
          <p class="usage small" aria-label="Usage">
            {tokens(s.usage)}
            {dollars(s.usage) && ` · ${dollars(s.usage)}`}
          </p>
        )}
        {s && live && <Controls machine={machine} session={session} runtime={s.runtime} mode={s.mode} />}
      </header>
      <div ref={top} class="older">
        {start > 0 || whole === "idle" ? (
          <button type="button" class="small" onClick={showOlder}>
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
      <ol class="transcript" aria-label="Transcript" aria-live="off">
        {rendered}
      </ol>
      {s && live && <Composer machine={machine} session={session} command={s.runtime === "command"} />}
    </section>
  );
}

function atBottom(): boolean {
  return innerHeight + scrollY >= document.documentElement.scrollHeight - 120;
}

function Controls({ machine, session, runtime, mode }: { machine: Hex; session: Hex; runtime: string; mode: string | undefined }) {
  const [next, setNext] = useState(mode ?? "");
  const suggestions = MODES[runtime] ?? [];
  return (
    <div class="controls">
      <form
        class="row mode"
        onSubmit={(e) => {
          e.preventDefault();
        }}
      >
        <label>
          Permission mode
          <input
            list={`modes-${runtime}`}
            value={next}
            onInput={(e) => setNext(e.currentTarget.value)}
            autocomplete="off"
            autocapitalize="off"
          />
        </label>
        <datalist id={`modes-${runtime}`}>
          {suggestions.map((m) => (
            <option key={m} value={m} />
          ))}
        </datalist>
        <Action disabled={!next.trim() || next === mode} onClick={() => core().setMode(machine, session, next.trim())}>
          Set mode
        </Action>
      </form>
      <div class="row spread">
        <Action onClick={() => core().interrupt(machine, session)}>Interrupt</Action>
        <Confirm
          label="Stop…"
          question="Stop this session? Its agent and every process it started are ended."
          confirmLabel="Stop session"
          onConfirm={() => core().stop(machine, session)}
        />
      </div>
    </div>
  );
}

function Composer({ machine, session, command }: { machine: Hex; session: Hex; command: boolean }) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const send = async () => {
    if (!text.trim() || busy) return;
    setBusy(true);
    setError(null);
    try {
      await core().send(machine, session, text);
      setText("");
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
    >
      {error && <p class="error" role="alert">{error}</p>}
      <div class="row">
        <textarea
          aria-label={command ? "Input line" : "Prompt"}
          placeholder={command ? "A line for the command's stdin" : "Tell the agent…"}
          rows={2}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              void send();
            }
          }}
        />
        <button type="submit" class="primary" disabled={busy || !text.trim()}>
          Send
        </button>
      </div>
    </form>
  );
}

function BlockView({ block }: { block: Block }) {
  switch (block.kind) {
    case "started":
      return (
        <p class="small muted">
          ▶ Started {block.runtime}
          {block.args.length > 0 ? (
            <>
              : <code><T text={block.args.join(" ")} /></code>
            </>
          ) : null}{" "}
          in <code><T text={block.cwd} /></code>
        </p>
      );
    case "prompt":
      return (
        <div class="prompt" aria-label="Your prompt">
          <T text={block.text} />
        </div>
      );
    case "text":
      return (
        <div class="text">
          <T text={block.text} />
        </div>
      );
    case "thinking":
      return (
        <details>
          <summary>Thinking</summary>
          <div class="text muted">
            <T text={block.text} />
          </div>
        </details>
      );
    case "output":
      return <Mono text={block.text} class={"output " + block.stream} label={block.stream} />;
    case "tool":
      return (
        <article class="card tool" aria-label={`Tool ${revealPlain(block.name)}`}>
          <header class="row spread">
            <code class="tool-name"><T text={block.name} /></code>
            <span class={"chip tool-" + block.status}>{block.status === "running" ? "running" : block.status === "ok" ? "done" : "failed"}</span>
          </header>
          <InputView input={block.input} label={`Input of ${revealPlain(block.name)}`} />
          {block.updates.length > 0 && <Mono text={block.updates.join("\n")} class="updates" label="Progress" />}
          {block.diff && <DiffView lines={diffLines(block.diff)} label="Diff" />}
          {block.output !== undefined && block.output !== "" && (
            <details open={block.output.length < 400}>
              <summary>Output</summary>
              <Mono text={block.output} label={`Output of ${revealPlain(block.name)}`} />
            </details>
          )}
        </article>
      );
    case "approval":
      return <ApprovalBlock block={block} />;
    case "turn":
      return <p class="turn small muted">Turn finished{block.reason ? <>: <T text={block.reason} /></> : null}</p>;
    case "error":
      return (
        <p class="error">
          <T text={block.message} />
        </p>
      );
    case "exited":
      return (
        <p class="exited small">
          {block.signal !== undefined
            ? `Ended by signal ${block.signal}`
            : block.code !== undefined
              ? `Exited with code ${block.code}`
              : "Exited"}
        </p>
      );
    case "opaque":
      return (
        <details class="opaque">
          <summary>
            A message from <T text={block.source} /> muxagent does not know
          </summary>
          <Mono text={block.raw} />
        </details>
      );
  }
}

/** An approval the device holds no view of (an old one): what the events say. */
function ApprovalBlock({ block }: { block: Extract<Block, { kind: "approval" }> }) {
  return (
    <article class="card approval" aria-label={`Approval: ${block.approvalKind === "plan" ? "plan" : revealPlain(block.tool)}`}>
      <h3>{block.approvalKind === "plan" ? "Plan" : <>Asked to use <code><T text={block.tool} /></code></>}</h3>
      {block.plan !== undefined && <Mono text={block.plan} label="The plan" class="plan" />}
      <InputView input={block.input} label="Input" />
      <p class="state small">
        {block.state}
        {block.decision && ` · ${decisionText(block.decision)}`}
      </p>
    </article>
  );
}
