// Settings → Devices, the words and the rules: what this device may do to each device of the
// account (the relay decides; this only offers what it would allow), and what each action does,
// said plainly before it is done.

import type { AccountDeviceView } from "./contract";
import { revealPlain } from "./text";

/** What this device is offered for `row`, given every row the relay showed. An owner may revoke
 *  any device and make a device that is not one an owner; any device may revoke itself. */
export function offered(row: AccountDeviceView, rows: readonly AccountDeviceView[]): { revoke: "self" | "other" | null; grant: boolean } {
  const owner = rows.some((r) => r.you && r.owner);
  if (row.you) return { revoke: "self", grant: false };
  return { revoke: owner ? "other" : null, grant: owner && !row.owner };
}

/** Whether this device is an owner, by the relay's answer. */
export function isOwner(rows: readonly AccountDeviceView[]): boolean {
  return rows.some((r) => r.you && r.owner);
}

/** "alpha (online), beta", or that it paired with none. Hostnames are untrusted: hidden
 *  characters shown. */
export function pairedText(row: AccountDeviceView): string {
  if (row.paired.length === 0) return "No machine";
  return row.paired.map((m) => revealPlain(m.hostname) + (m.online ? " (online)" : "")).join(", ");
}

/** The confirmations, in plain words. */
export const ASK = {
  revokeSelf:
    "Revoke this device? This browser loses access at once, every machine forgets it, and its saved data here is cleared. It cannot be undone: pair again to come back, as a new device.",
  revokeOther: (short: string) =>
    `Revoke device ${short}? It is cut off at once and every machine forgets it, for good. It can come back only by pairing again, as a new device.`,
  grant: (short: string) =>
    `Make ${short} an owner? An owner reaches every machine of this account and can revoke any device, including you, and make other owners.`,
};
