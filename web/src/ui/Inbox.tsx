// Every approval waiting across all machines, newest first, then the recent decided ones with
// their outcome. Opened from a notification, the waiting cards of its session are marked and
// the first is scrolled into view.

import { useEffect } from "preact/hooks";
import { view } from "../state";
import { ApprovalCard, isOpen } from "./ApprovalCard";

/** Decided approvals listed below the waiting ones. */
const RECENT = 20;

export function Inbox({ focus }: { focus?: { machine: string; session: string } | undefined }) {
  const v = view.value;
  const waiting = v?.inbox ?? [];
  const focused = (a: { machine: string; session: string }) => focus !== undefined && a.machine === focus.machine && a.session === focus.session;
  const present = waiting.some(focused);
  useEffect(() => {
    if (present) document.querySelector(".focus")?.scrollIntoView({ block: "start" });
  }, [focus?.machine, focus?.session, present]);
  const recent = (v?.approvals ?? []).filter((a) => !isOpen(a)).slice(0, RECENT);
  return (
    <section class="screen" aria-labelledby="inbox-h">
      <h2 id="inbox-h">Approvals</h2>
      {waiting.length === 0 && <p class="muted">Nothing waiting for you.</p>}
      <ul class="list" aria-label="Waiting">
        {waiting.map((a) => (
          <li key={a.requestHash} class={focused(a) ? "focus" : undefined}>
            <ApprovalCard approval={a} />
          </li>
        ))}
      </ul>
      {recent.length > 0 && (
        <>
          <h2>Recent</h2>
          <ul class="list" aria-label="Recent decisions">
            {recent.map((a) => (
              <li key={a.requestHash}>
                <ApprovalCard approval={a} />
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
