// Small pieces every screen uses: untrusted text, monospace blocks, diffs, and buttons that
// run one action at a time and show its failure.

import type { ButtonHTMLAttributes, ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { diffLines, editDiff, isDiff, type DiffLine } from "../diff";
import { messageOf } from "../state";
import { reveal } from "../text";

/** Untrusted text: rendered as text, with hidden characters shown as marks. */
export function T({ text }: { text: string }) {
  return (
    <>
      {reveal(text).map((piece) =>
        typeof piece === "string" ? piece : <span class="mark" title={piece.mark}>{`⟪${piece.mark}⟫`}</span>,
      )}
    </>
  );
}

/** A scrollable monospace block of untrusted text, never truncated. */
export function Mono({ text, label, class: extra }: { text: string; label?: string; class?: string }) {
  return (
    <pre class={"mono" + (extra ? " " + extra : "")} tabIndex={0} aria-label={label}>
      <T text={text} />
    </pre>
  );
}

export function DiffView({ lines, label }: { lines: DiffLine[]; label?: string }) {
  return (
    <pre class="mono diff" tabIndex={0} aria-label={label}>
      {lines.map((line, i) => (
        <span key={i} class={"d-" + line.kind}>
          <T text={line.text} />
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

/** A tool's exact input, in full; a diff input coloured as one, and an edit's old/new text as
 *  a diff below it. */
export function InputView({ input, label }: { input: string; label: string }) {
  if (isDiff(input)) return <DiffView lines={diffLines(input)} label={label} />;
  const derived = editDiff(input);
  return (
    <>
      <Mono text={input} label={label} class="input" />
      {derived && <DiffView lines={derived} label={`${label}: the change as a diff`} />}
    </>
  );
}

type ButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, "onClick"> & {
  onClick: () => Promise<unknown> | void;
  children: ComponentChildren;
};

/** A button whose action runs once at a time: disabled while it runs, its failure shown next
 *  to it (role=alert). */
export function Action({ onClick, children, disabled, ...rest }: ButtonProps) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await onClick();
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" {...rest} disabled={Boolean(disabled) || busy} aria-busy={busy} onClick={run}>
        {children}
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </>
  );
}

/** A button that asks first: the first tap opens an inline confirmation with the consequence
 *  spelled out, the second (on a different button, away from the first) does it. */
export function Confirm({
  label,
  question,
  confirmLabel,
  onConfirm,
  danger = true,
}: {
  label: string;
  question: string;
  confirmLabel: string;
  onConfirm: () => Promise<unknown>;
  danger?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" class={danger ? "danger" : ""} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  }
  return (
    <div class="confirm" role="alertdialog" aria-label={question}>
      <p>{question}</p>
      <div class="row spread">
        <button type="button" onClick={() => setAsking(false)}>
          Cancel
        </button>
        <Action class={danger ? "danger" : "primary"} onClick={async () => {
          await onConfirm();
          setAsking(false);
        }}>
          {confirmLabel}
        </Action>
      </div>
    </div>
  );
}

export function Dot({ online }: { online: boolean }) {
  return <span class={"dot " + (online ? "on" : "off")} aria-hidden="true" />;
}
