// Settings → Devices: the account's devices as the relay shows them to this device (an owner
// sees all; another device itself), each with its short fingerprint, whether it is this device
// or an owner, the machines it paired with and whether it is online. An owner revokes any device
// and makes owners; any device revokes itself. Each asks first, saying what it does.

import { useEffect } from "preact/hooks";
import type { AccountDeviceView } from "../contract";
import { ASK, isOwner, offered, pairedText } from "../devices";
import { accountDevices, grantOwner, loadDevices, revokeDevice, revokeThisDevice, view } from "../state";
import { Action, Confirm, Dot } from "./common";

export function Devices() {
  const online = view.value?.connection.state === "online";
  // Asked when the screen opens and again whenever the relay connection comes back.
  useEffect(() => {
    if (online) void loadDevices();
  }, [online]);
  const shown = accountDevices.value;
  const rows = shown.state === "idle" ? undefined : shown.rows;
  return (
    <div class="card" role="group" aria-labelledby="devices-h">
      <h3 id="devices-h">Devices</h3>
      {rows && (
        <p class="muted small">
          {isOwner(rows)
            ? "This device is an owner: it sees every device of the account, and may revoke any of them or make owners."
            : "This device is not an owner: it sees only itself. An owner of the account sees and manages every device."}
        </p>
      )}
      {!rows && shown.state !== "failed" && <p class="muted small">{online ? "Asking the relay…" : "Shown once the relay is connected."}</p>}
      {shown.state === "failed" && (
        <p class="error" role="alert">
          {shown.message}
        </p>
      )}
      {rows && (
        <ul class="list" aria-label="Devices of this account">
          {rows.map((row) => (
            <li key={row.fingerprint}>
              <DeviceRow row={row} rows={rows} />
            </li>
          ))}
        </ul>
      )}
      <div class="row">
        <Action class="small" disabled={!online || shown.state === "loading"} onClick={loadDevices}>
          Refresh
        </Action>
      </div>
    </div>
  );
}

function DeviceRow({ row, rows }: { row: AccountDeviceView; rows: AccountDeviceView[] }) {
  const can = offered(row, rows);
  return (
    <article class="device" aria-label={`Device ${row.short}`}>
      <p class="row">
        <span class="fp-short">{row.short}</span>
        {row.you && <span class="chip ok">this device</span>}
        {row.owner && <span class="chip warn">owner</span>}
        <span class="small muted">
          <Dot online={row.online} /> {row.online ? "online" : "offline"}
        </span>
      </p>
      <p class="small">Paired with: {pairedText(row)}</p>
      <div class="row spread">
        {can.grant && (
          <Confirm
            label="Make owner…"
            question={ASK.grant(row.short)}
            confirmLabel={`Make ${row.short} an owner`}
            onConfirm={() => grantOwner(row.fingerprint)}
            danger={false}
          />
        )}
        {can.revoke === "other" && (
          <Confirm
            label="Revoke…"
            question={ASK.revokeOther(row.short)}
            confirmLabel={`Revoke ${row.short}`}
            onConfirm={() => revokeDevice(row.fingerprint)}
          />
        )}
        {can.revoke === "self" && (
          <Confirm label="Revoke this device…" question={ASK.revokeSelf} confirmLabel="Revoke this device" onConfirm={revokeThisDevice} />
        )}
      </div>
    </article>
  );
}
