// Settings → Notifications: turn push notifications on or off for this device, choose per
// machine what it notifies of (approvals, sessions that finished or failed, plans), see what
// each machine answered, and send a test notification. What the browser cannot do (plain http,
// no push, blocked) is said, never silently skipped.

import { useEffect, useState } from "preact/hooks";
import type { MachineView, PushMachineView } from "../contract";
import { browserSubscribed, disableNotifications, enableNotifications, pushBlocked, pushUnsupported } from "../push";
import { core, view } from "../state";
import { revealPlain } from "../text";
import { Action, T } from "./common";

const STATE_TEXT: Record<PushMachineView["state"], string> = {
  off: "Off",
  sending: "Sending the keys…",
  on: "On — it confirmed",
  waiting: "Waiting — it hears of it when it connects",
  refused: "Refused",
};

export function Notifications() {
  const v = view.value;
  const [dropped, setDropped] = useState(false);
  const enabled = Boolean(v?.push.enabled);
  useEffect(() => {
    if (!enabled) return;
    let live = true;
    void browserSubscribed().then((held) => live && setDropped(!held));
    return () => {
      live = false;
    };
  }, [enabled]);
  if (!v) return null;
  const unsupported = pushUnsupported();
  const blocked = pushBlocked();
  return (
    <div class="card" role="group" aria-labelledby="notifications-h">
      <h3 id="notifications-h">Notifications</h3>
      {unsupported ? (
        <p class="error" role="note">
          {unsupported}
        </p>
      ) : (
        <>
          <p class="muted small">
            {enabled
              ? "On: your machines notify this device when an approval waits, a session ends, or a plan is ready, while the app is not on screen."
              : "Get a notification when an approval waits, a session ends, or a plan is ready, while the app is not on screen."}
          </p>
          {blocked && (
            <p class="error" role="note">
              Notifications are blocked for this site. Allow them in the browser's site settings.
            </p>
          )}
          {enabled && v.push.problem && (
            <p class="error" role="note">
              <T text={v.push.problem} />. Turn notifications off and on again.
            </p>
          )}
          {enabled && dropped && (
            <p class="error" role="note">
              This browser dropped its push subscription. Turn notifications off and on again.
            </p>
          )}
          <div class="row">
            {enabled ? (
              <Action onClick={disableNotifications}>Turn off notifications</Action>
            ) : (
              <Action class="primary" disabled={blocked} onClick={enableNotifications}>
                Turn on notifications
              </Action>
            )}
          </div>
        </>
      )}
      {enabled && (
        <ul class="list">
          {v.push.machines.map((p) => {
            const m = v.machines.find((known) => known.fingerprint === p.machine);
            return m ? (
              <li key={p.machine}>
                <MachinePush machine={m} push={p} />
              </li>
            ) : null;
          })}
        </ul>
      )}
    </div>
  );
}

function MachinePush({ machine: m, push: p }: { machine: MachineView; push: PushMachineView }) {
  const name = revealPlain(m.hostname);
  const [tested, setTested] = useState<string | null>(null);
  const set = (change: Partial<Pick<PushMachineView, "approvals" | "ended" | "plans">>) => {
    const next = { approvals: p.approvals, ended: p.ended, plans: p.plans, ...change };
    return core().setPushKinds(m.fingerprint, next.approvals, next.ended, next.plans);
  };
  const box = (key: "approvals" | "ended" | "plans", label: string) => (
    <label class="check">
      <input type="checkbox" checked={p[key]} onChange={(e) => void set({ [key]: (e.currentTarget as HTMLInputElement).checked })} />
      {label}
    </label>
  );
  return (
    <fieldset class="push-machine" aria-label={`Notifications from ${name}`}>
      <legend>
        <T text={m.hostname} />
      </legend>
      {box("approvals", "Approvals")}
      {box("ended", "Finished or failed sessions")}
      {box("plans", "Plans")}
      <p class="small" role="status" aria-label={`Notifications from ${name}: state`}>
        {STATE_TEXT[p.state]}
        {p.detail && (
          <>
            : <T text={p.detail} />
          </>
        )}
      </p>
      <div class="row">
        <Action
          class="small"
          disabled={p.state === "off"}
          onClick={async () => {
            setTested(null);
            await core().testPush(m.fingerprint);
            setTested(`${name} sent a test notification; it should appear in a moment.`);
          }}
        >
          Send test notification
        </Action>
      </div>
      {tested && (
        <p class="small" role="status">
          {tested}
        </p>
      )}
    </fieldset>
  );
}
