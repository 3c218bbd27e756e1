// One session live: its header (status, runtime, mode, usage), the transcript the core follows
// (TranscriptList), and the controls (prompt, interrupt, stop, mode).

import { useState } from "preact/hooks";
import type { Hex, SessionStatus } from "../contract";
import { dollars, statusLabel, tokens } from "../format";
import { href } from "../route";
import { core, machine as machineOf, messageOf, session as sessionOf } from "../state";
import { revealPlain } from "../text";
import { Action, Confirm, T } from "./common";
import { TranscriptList } from "./TranscriptList";

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
      <TranscriptList machine={machine} session={session} />
      {s && live && <Composer machine={machine} session={session} command={s.runtime === "command"} />}
    </section>
  );
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
