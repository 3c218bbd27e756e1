// What a revoked device shows instead of every screen: that it was revoked, what that means,
// and the one way on: erase what this browser keeps of it and pair again, as a new device.

import { startOver, view } from "../state";
import { Action, T } from "./common";

export function Revoked() {
  const detail = view.value?.connection.detail;
  return (
    <section class="screen" aria-labelledby="revoked-h">
      <h2 id="revoked-h">This device was revoked</h2>
      <div class="card error" role="alert">
        <p>
          The relay refuses this device: it was revoked, by an owner of your account or from this device itself. It can no longer reach any
          machine, and every machine has forgotten it, for good.
        </p>
        {detail && (
          <p class="small muted">
            The relay said: <T text={detail} />
          </p>
        )}
      </div>
      <p>To use muxagent in this browser again, erase what it keeps of this device (its key, machines and saved sessions), then pair a machine again as a new device.</p>
      <div class="row">
        <Action class="primary" onClick={startOver}>
          Erase and pair again
        </Action>
      </div>
    </section>
  );
}
