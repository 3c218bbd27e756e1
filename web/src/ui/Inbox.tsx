// Every approval waiting across all machines, newest first, then the recent decided ones with
// their outcome.

import { view } from "../state";
import { ApprovalCard, isOpen } from "./ApprovalCard";

/** Decided approvals listed below the waiting ones. */
const RECENT = 20;

export function Inbox() {
  const v = view.value;
  const waiting = v?.inbox ?? [];
  const recent = (v?.approvals ?? []).filter((a) => !isOpen(a)).slice(0, RECENT);
  return (
    <section class="screen" aria-labelledby="inbox-h">
      <h2 id="inbox-h">Approvals</h2>
      {waiting.length === 0 && <p class="muted">Nothing waiting for you.</p>}
      <ul class="list" aria-label="Waiting">
        {waiting.map((a) => (
          <li key={a.requestHash}>
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
