// Every paired machine: its name, whether it is online (live, from relay presence), its
// end-to-end channel, its sessions and the approvals waiting on it.

import type { MachineView, SessionView } from "../contract";
import { ago, statusLabel } from "../format";
import { href } from "../route";
import { browserOffline, now, view } from "../state";
import { revealPlain } from "../text";
import { Dot, T } from "./common";

export function Machines() {
  const machines = view.value?.machines ?? [];
  return (
    <section class="screen" aria-labelledby="machines-h">
      <h2 id="machines-h">Machines</h2>
      {machines.length === 0 && (
        <div class="card empty">
          <p>No machine is paired yet.</p>
          <p class="muted">
            Run <code>muxagent daemon start</code> on a machine and open the link it prints, or scan its QR code.
          </p>
        </div>
      )}
      <ul class="list">
        {machines.map((m) => (
          <li key={m.fingerprint}>
            <MachineCard machine={m} />
          </li>
        ))}
      </ul>
      <p class="row">
        <a class="button" href={href({ screen: "pair" })}>
          Pair a machine
        </a>
      </p>
    </section>
  );
}

const CHANNEL: Record<MachineView["channel"], string> = {
  closed: "not connected",
  handshaking: "securing the channel",
  syncing: "catching up",
  live: "live",
};

function MachineCard({ machine: m }: { machine: MachineView }) {
  const name = revealPlain(m.hostname);
  // Presence comes from the relay: without a connection to it, nobody is known to be online.
  const online = m.online && view.value?.connection.state === "online" && !browserOffline.value;
  return (
    <article class="card machine" aria-label={`Machine ${name}`}>
      <header class="row spread">
        <h3>
          <Dot online={online} />
          <T text={m.hostname} />
        </h3>
        <span class={"chip " + (online ? "ok" : "muted")}>{online ? "online" : m.online ? "last seen online" : "offline"}</span>
      </header>
      <p class="muted small">
        {m.short} · {CHANNEL[m.channel]}
      </p>
      {m.relayHostname !== undefined && (
        <p class="error small" role="note">
          The relay calls this machine “<T text={m.relayHostname} />”, not the name it gave when it paired. The relay's name is
          not checked; this card uses the paired one.
        </p>
      )}
      {m.pendingApprovals > 0 && (
        <a class="waiting" href={href({ screen: "inbox" })}>
          {m.pendingApprovals === 1 ? "1 approval waiting" : `${m.pendingApprovals} approvals waiting`}
        </a>
      )}
      {m.sessions.length > 0 ? (
        <ul class="sessions" aria-label={`Sessions on ${name}`}>
          {[...m.sessions]
            .sort((a, b) => b.updatedAt - a.updatedAt)
            .map((s) => (
              <li key={s.id}>
                <SessionRow session={s} />
              </li>
            ))}
        </ul>
      ) : (
        <p class="muted small">No sessions.</p>
      )}
      <p class="row">
        <a class="button small" href={href({ screen: "new", machine: m.fingerprint })} aria-label={`New session on ${name}`}>
          New session
        </a>
      </p>
    </article>
  );
}

function SessionRow({ session: s }: { session: SessionView }) {
  return (
    <a class="session-row" href={href({ screen: "session", machine: s.machine, session: s.id })}>
      <span class="title">
        <T text={s.title || s.id.slice(0, 8)} />
      </span>
      <span class="meta">
        <span class={"chip status-" + s.status}>{statusLabel(s.status)}</span>
        <span>{s.runtime}</span>
        <span>{ago(s.updatedAt, now.value)}</span>
        {s.pendingApprovals > 0 && <span class="chip warn">{s.pendingApprovals} waiting</span>}
      </span>
    </a>
  );
}
