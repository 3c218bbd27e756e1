// Numbers and times as people read them.

import type { Usage } from "./contract";

const integer = new Intl.NumberFormat("en-US");

export function tokens(usage: Usage): string {
  const parts = [
    `${integer.format(usage.inputTokens)} in`,
    `${integer.format(usage.outputTokens)} out`,
  ];
  if (usage.cachedTokens) parts.push(`${integer.format(usage.cachedTokens)} cached`);
  return parts.join(" · ") + " tokens";
}

/** Dollars only when the agent reported them. */
export function dollars(usage: Usage): string | null {
  if (usage.costUsdMicros === undefined) return null;
  return "$" + (usage.costUsdMicros / 1e6).toFixed(usage.costUsdMicros < 10_000_000 ? 4 : 2);
}

/** "just now", "5 min ago", "3 h ago", or a date. */
export function ago(at: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(at).toISOString().slice(0, 10);
}

export function statusLabel(status: string): string {
  return status === "waiting_approval" ? "waiting for approval" : status;
}
