// This device, the relay, notifications, the account's devices, and every paired machine with
// its fingerprint, Revoke (remove it from the account: the relay refuses it from then on) and
// Unpair (the machine forgets this device).

import { core, view } from "../state";
import { revealPlain } from "../text";
import { Confirm, T } from "./common";
import { Devices } from "./Devices";
import { Notifications } from "./Notifications";

export function Settings() {
  const v = view.value;
  if (!v) return null;
  return (
    <section class="screen" aria-labelledby="settings-h">
      <h2 id="settings-h">Settings</h2>
      <div class="card">
        <h3>This device</h3>
        <p class="fp-short">{v.device.short}</p>
        <p class="mono small fp" aria-label="This device's fingerprint">{v.device.fingerprint}</p>
        <h3>Relay</h3>
        <p class="mono small">{v.relay ? <T text={v.relay} /> : "none yet (pair a machine)"}</p>
      </div>
      <Notifications />
      <Devices />
      <h2>Machines</h2>
      {v.machines.length === 0 && <p class="muted">No machine is paired.</p>}
      <ul class="list">
        {v.machines.map((m) => {
          const name = revealPlain(m.hostname);
          return (
            <li key={m.fingerprint}>
              <article class="card" aria-label={`Machine ${name}`}>
                <h3>
                  <T text={m.hostname} />
                </h3>
                <p class="fp-short">{m.short}</p>
                <p class="mono small fp" aria-label={`Fingerprint of ${name}`}>{m.fingerprint}</p>
                <div class="row spread">
                  <Confirm
                    label="Unpair…"
                    question={`Unpair ${name}? It forgets this device; pair again with a new link.`}
                    confirmLabel={`Unpair ${name}`}
                    onConfirm={() => core().unpair(m.fingerprint)}
                  />
                  <Confirm
                    label="Revoke…"
                    question={`Revoke ${name}? The relay refuses it from then on, for every device of this account.`}
                    confirmLabel={`Revoke ${name}`}
                    onConfirm={() => core().revoke(m.fingerprint)}
                  />
                </div>
              </article>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
