// Starting a session, and (Handoff) starting one from an approved plan: pick the machine, a
// runtime it offers (unavailable ones disabled, with the reason), the working directory, a
// title and a permission mode.

import { useEffect, useState } from "preact/hooks";
import type { Hex, RuntimeView, StartRequest } from "../contract";
import { href } from "../route";
import { core, messageOf, navigate, view } from "../state";
import { revealPlain } from "../text";
import { splitWords } from "../words";
import { MODES } from "./Session";

/** The runtimes a machine offers, loaded when the machine is picked. */
function useRuntimes(machine: Hex | "") {
  const [state, setState] = useState<{ machine: Hex; runtimes: RuntimeView[] } | { machine: Hex; error: string } | null>(null);
  useEffect(() => {
    if (!machine) return undefined;
    let current = true;
    setState(null);
    core()
      .runtimes(machine)
      .then(
        (runtimes) => current && setState({ machine, runtimes }),
        (error) => current && setState({ machine, error: messageOf(error) }),
      );
    return () => {
      current = false;
    };
  }, [machine]);
  return state && state.machine === machine ? state : null;
}

export interface Target {
  machine: Hex;
  runtime: string;
  cwd: string;
  title: string;
  mode: string;
}

/** Machine, runtime, directory, title, mode. */
/** `update` takes a function of the latest target: an effect may run after the person changed
 *  the form, and must not write back the target it saw. */
function TargetFields({ target, update, exclude }: { target: Target; update: (change: (t: Target) => Target) => void; exclude?: Hex }) {
  const machines = view.value?.machines ?? [];
  const runtimes = useRuntimes(target.machine);
  useEffect(() => {
    // Pick the first available runtime once the list arrives.
    if (runtimes && "runtimes" in runtimes && !runtimes.runtimes.some((r) => r.name === target.runtime && r.available)) {
      const first = runtimes.runtimes.find((r) => r.available);
      const machine = target.machine;
      if (first) update((t) => (t.machine === machine ? { ...t, runtime: first.name } : t));
    }
  }, [runtimes]);
  // Read the value in the handler: the event is gone when the update runs.
  const setMachine = (machine: Hex) => update((t) => ({ ...t, machine, runtime: "" }));
  const setRuntime = (runtime: string) => update((t) => ({ ...t, runtime }));
  const setCwd = (cwd: string) => update((t) => ({ ...t, cwd }));
  const setTitle = (title: string) => update((t) => ({ ...t, title }));
  const setMode = (mode: string) => update((t) => ({ ...t, mode }));
  const ordered = exclude ? [...machines.filter((m) => m.fingerprint !== exclude), ...machines.filter((m) => m.fingerprint === exclude)] : machines;
  return (
    <>
      {/* aria-label: a label that wraps a select would take the chosen option into its name. */}
      <label>
        Machine
        <select aria-label="Machine" value={target.machine} onChange={(e) => setMachine(e.currentTarget.value)} required>
          <option value="" disabled>
            Choose a machine
          </option>
          {ordered.map((m) => (
            <option key={m.fingerprint} value={m.fingerprint}>
              {revealPlain(m.hostname)}
              {m.online ? "" : " (offline)"}
            </option>
          ))}
        </select>
      </label>
      <label>
        Runtime
        <select
          aria-label="Runtime"
          value={target.runtime}
          onChange={(e) => setRuntime(e.currentTarget.value)}
          required
          disabled={!runtimes || "error" in runtimes}
        >
          <option value="" disabled>
            {target.machine ? (runtimes ? "Choose a runtime" : "Asking the machine…") : "Choose a machine first"}
          </option>
          {runtimes &&
            "runtimes" in runtimes &&
            runtimes.runtimes.map((r) => (
              <option key={r.name} value={r.name} disabled={!r.available}>
                {r.name} — {revealPlain(r.detail)}
                {r.available ? "" : " (unavailable)"}
              </option>
            ))}
        </select>
      </label>
      {runtimes && "error" in runtimes && (
        <p class="error" role="alert">
          {runtimes.error}
        </p>
      )}
      <label>
        Working directory
        <input
          type="text"
          value={target.cwd}
          onInput={(e) => setCwd(e.currentTarget.value)}
          required
          autocomplete="off"
          autocapitalize="off"
          spellcheck={false}
          placeholder="/home/me/project"
        />
      </label>
      <label>
        Title (optional)
        <input type="text" value={target.title} onInput={(e) => setTitle(e.currentTarget.value)} autocomplete="off" />
      </label>
      {target.runtime !== "command" && (
        <label>
          Permission mode (optional)
          <input
            type="text"
            list="new-modes"
            value={target.mode}
            onInput={(e) => setMode(e.currentTarget.value)}
            autocomplete="off"
            autocapitalize="off"
          />
          <datalist id="new-modes">
            {(MODES[target.runtime] ?? []).map((m) => (
              <option key={m} value={m} />
            ))}
          </datalist>
        </label>
      )}
    </>
  );
}

function base(target: Target): Omit<StartRequest, "prompt"> {
  const request: Omit<StartRequest, "prompt"> = { runtime: target.runtime, cwd: target.cwd.trim() };
  if (target.title.trim()) request.title = target.title.trim();
  if (target.mode.trim() && target.runtime !== "command") request.mode = target.mode.trim();
  return request;
}

function firstMachine(preferred?: Hex, avoid?: Hex): Hex {
  const machines = view.value?.machines ?? [];
  if (preferred && machines.some((m) => m.fingerprint === preferred)) return preferred;
  const pick = machines.find((m) => m.fingerprint !== avoid && m.online) ?? machines.find((m) => m.fingerprint !== avoid) ?? machines[0];
  return pick?.fingerprint ?? "";
}

export function NewSession({ machine }: { machine?: Hex | undefined }) {
  const [target, setTarget] = useState<Target>({ machine: firstMachine(machine), runtime: "", cwd: "", title: "", mode: "" });
  const [prompt, setPrompt] = useState("");
  const [commandLine, setCommandLine] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const takesCommand = target.runtime === "command" || target.runtime === "acp";
  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setError(null);
    const request: StartRequest = { ...base(target), prompt };
    if (target.runtime === "command") {
      // The daemon runs a command session's first prompt with `sh -c`, as `ctl start` sends it.
      request.prompt = commandLine;
    } else if (target.runtime === "acp") {
      const words = splitWords(commandLine);
      if ("error" in words) return setError(`The command line: ${words.error}.`);
      request.args = words;
    }
    setBusy(true);
    try {
      const id = await core().start(target.machine, request);
      navigate(href({ screen: "session", machine: target.machine, session: id }));
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  if ((view.value?.machines.length ?? 0) === 0) {
    return (
      <section class="screen">
        <h2>New session</h2>
        <p>
          Pair a machine first. <a href={href({ screen: "pair" })}>Pair a machine</a>
        </p>
      </section>
    );
  }
  return (
    <section class="screen" aria-labelledby="new-h">
      <h2 id="new-h">New session</h2>
      <form class="form" onSubmit={submit}>
        <TargetFields target={target} update={setTarget} />
        {takesCommand && (
          <label>
            {target.runtime === "command" ? "Command (run with sh -c)" : "Agent command line"}
            <input
              type="text"
              class="mono-input"
              value={commandLine}
              onInput={(e) => setCommandLine(e.currentTarget.value)}
              required
              autocomplete="off"
              autocapitalize="off"
              spellcheck={false}
            />
          </label>
        )}
        {target.runtime !== "command" && (
          <label>
            Prompt
            <textarea rows={5} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} required={target.runtime !== "acp"} />
          </label>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || !target.machine || !target.runtime}>
          {busy ? "Starting…" : "Start session"}
        </button>
      </form>
    </section>
  );
}

/** Continue an approved plan on another machine. */
export function Handoff({ machine: fromMachine, session: fromSession }: { machine: Hex; session: Hex }) {
  const from = view.value?.machines.find((m) => m.fingerprint === fromMachine);
  const fromTitle = from?.sessions.find((s) => s.id === fromSession)?.title ?? fromSession.slice(0, 8);
  const [target, setTarget] = useState<Target>({ machine: firstMachine(undefined, fromMachine), runtime: "", cwd: "", title: "", mode: "" });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const id = await core().startFromPlan(target.machine, fromMachine, fromSession, base(target));
      navigate(href({ screen: "session", machine: target.machine, session: id }));
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="screen" aria-labelledby="handoff-h">
      <h2 id="handoff-h">Continue the plan on another machine</h2>
      <p class="muted">
        The plan approved in “{revealPlain(fromTitle)}” on {revealPlain(from?.hostname ?? fromMachine.slice(0, 8))} becomes the new
        session's prompt.
      </p>
      <form class="form" onSubmit={submit}>
        <TargetFields target={target} update={setTarget} exclude={fromMachine} />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || !target.machine || !target.runtime}>
          {busy ? "Starting…" : "Start from the plan"}
        </button>
      </form>
    </section>
  );
}
