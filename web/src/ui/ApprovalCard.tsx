// One approval: what is asked (machine, session, tool, the exact input in full, the plan), the
// three answers, and afterwards the delivery state the machine reported, never a guess. Deny
// sits apart from the two Allow buttons, and every button is disabled from the first tap
// until the machine answers, so a double tap cannot send two decisions.

import { useEffect, useState } from "preact/hooks";
import type { ApprovalView, Decision } from "../contract";
import { href } from "../route";
import { core, now } from "../state";
import { ago } from "../format";
import { revealPlain } from "../text";
import { Action, InputView, Mono, T } from "./common";

const STATE_TEXT: Record<ApprovalView["state"], string> = {
  requested: "Waiting for a decision",
  delivered: "Waiting for a decision",
  decided: "Decided — the machine is telling the agent",
  applied: "Applied — the agent has the answer",
  withdrawn: "Withdrawn — the agent no longer asks",
  expired: "Expired — nobody decided in time; the agent was told no",
};

export function decisionText(decision: Decision): string {
  switch (decision.kind) {
    case "allow_once":
      return "Allowed once";
    case "allow_always":
      return "Allowed always";
    case "deny":
      return decision.message ? `Denied: “${decision.message}”` : "Denied";
  }
}

export function isOpen(a: ApprovalView): boolean {
  return a.state === "requested" || a.state === "delivered";
}

/** A card's buttons stay disabled this long after it appears, so a tap meant for what was
 *  under the finger a moment before does not decide it. */
export const ARM_MS = 400;

/** Inputs longer than this many characters show their beginning and a "Show all" button that
 *  must be opened before Allow is enabled: the person reads (or scrolls past) all of it. */
export const LONG_INPUT_CHARS = 16 * 1024;

function kib(bytes: number): string {
  return `${Math.ceil(bytes / 1024)} KiB`;
}

/** What the card says about an input that came cut. */
function cutText(a: ApprovalView): string {
  if (a.inputError) return `Only the beginning of the input is here, so it cannot be allowed: ${a.inputError}. It can be denied.`;
  if (a.inputLoading && a.inputLoading.total > 0) {
    return `Loading the whole input (${kib(a.inputLoading.have)} of ${kib(a.inputLoading.total)})…`;
  }
  return "Loading the whole input…";
}

export function ApprovalCard({ approval: a, inline = false }: { approval: ApprovalView; inline?: boolean }) {
  const [message, setMessage] = useState("");
  const [tapped, setTapped] = useState(false);
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    const timer = setTimeout(() => setArmed(true), ARM_MS);
    return () => clearTimeout(timer);
  }, [a.requestHash]);
  const long = a.input.length > LONG_INPUT_CHARS;
  // Which whole input the person opened in full (a new one must be opened again).
  const [shownAll, setShownAll] = useState<string | null>(null);
  const seen = !a.inputCut && (!long || shownAll === a.requestHash);
  const open = isOpen(a);
  const locked = !open || !armed || Boolean(a.sending) || tapped;
  const allowLocked = locked || !seen;
  const what = a.kind === "plan" ? "plan" : revealPlain(a.tool);
  const decide = async (decision: Decision) => {
    if (locked || (decision.kind !== "deny" && !seen)) return;
    setTapped(true);
    try {
      // Exactly the string this card rendered below.
      await core().decide(a.machine, a.session, a.approval, a.input, decision);
    } finally {
      setTapped(false);
    }
  };
  return (
    <article class={"card approval" + (open ? " open" : "")} aria-label={`Approval: ${what} on ${revealPlain(a.hostname)}`}>
      {!inline && (
        <header>
          <p class="small muted">
            <T text={a.hostname} /> ·{" "}
            <a href={href({ screen: "session", machine: a.machine, session: a.session })}>
              <T text={a.sessionTitle || a.session.slice(0, 8)} />
            </a>{" "}
            · {ago(a.requestedAt, now.value)}
          </p>
        </header>
      )}
      <h3>{a.kind === "plan" ? "Approve this plan?" : <>Allow <code><T text={a.tool} /></code>?</>}</h3>
      {a.plan !== undefined && <Mono text={a.plan} label="The plan" class="plan" />}
      {long && shownAll !== a.requestHash ? (
        <>
          <Mono text={a.input.slice(0, LONG_INPUT_CHARS)} label={`The beginning of the input of ${what}`} class="input" />
          <p class="small muted">
            Showing the first {kib(LONG_INPUT_CHARS)} of {kib(a.input.length)}
            {!a.inputCut && open && "; open all of it before you allow it"}.
          </p>
          {!a.inputCut && (
            <button type="button" onClick={() => setShownAll(a.requestHash)}>
              Show all {kib(a.input.length)}
            </button>
          )}
        </>
      ) : (
        <InputView input={a.input} label={a.kind === "plan" ? "The request" : `Input of ${what}`} />
      )}
      {a.inputCut && open && (
        <p class={a.inputError ? "error" : "state"} role="status">
          {cutText(a)}
        </p>
      )}
      <p class={"state state-" + a.state} role="status">
        {a.sending ? "Sending your decision…" : STATE_TEXT[a.state]}
        {a.decision && ` · ${decisionText(a.decision)}`}
        {a.decidedBy && ` by ${a.decidedBy}`}
      </p>
      {a.refused && (
        <p class="error" role="alert">
          The machine refused the decision: <T text={a.refused} />
        </p>
      )}
      {open && (
        <div class="decide">
          <div class="row allow">
            <Action class="primary" disabled={allowLocked} onClick={() => decide({ kind: "allow_once" })}>
              Allow once
            </Action>
            <Action disabled={allowLocked} onClick={() => decide({ kind: "allow_always" })}>
              Allow always
            </Action>
          </div>
          <div class="deny-zone">
            <label>
              Message to the agent (optional)
              <input
                type="text"
                value={message}
                onInput={(e) => setMessage(e.currentTarget.value)}
                disabled={locked}
                autocomplete="off"
              />
            </label>
            <Action class="danger" disabled={locked} onClick={() => decide({ kind: "deny", message })}>
              Deny
            </Action>
          </div>
        </div>
      )}
      {a.kind === "plan" && a.state !== "withdrawn" && a.state !== "expired" && a.decision && a.decision.kind !== "deny" && (
        <p class="row">
          <a class="button" href={href({ screen: "handoff", machine: a.machine, session: a.session })}>
            Continue on another machine
          </a>
        </p>
      )}
    </article>
  );
}
