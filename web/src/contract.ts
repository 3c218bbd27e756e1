// The one interface between the Rust protocol core (web/core, compiled to wasm32 with
// wasm-bindgen) and the TypeScript UI. The core owns every key, the Noise channels, the relay
// WebSocket and the IndexedDB store; the UI only ever sees the plain values below.
//
// Ids are lowercase hex: a fingerprint is 64 digits, a session id 32, a request hash 64.
// Times are Unix milliseconds. Every string that came from an agent or a machine is untrusted
// text: the UI renders it as text (never as HTML) with control and bidi characters made visible.

export type Hex = string;

/** The relay connection, as the person should see it. `revoked`: the relay revoked this device
 *  (an owner did, or the device itself); it stays disconnected for good (`forget` then lets
 *  the browser start over as a new device). */
export interface Connection {
  state: "connecting" | "online" | "reconnecting" | "offline" | "revoked";
  /** Why the last attempt failed, for people ("the relay does not answer", …); when revoked,
   *  what the relay said. */
  detail?: string;
  /** When the next attempt starts (Unix ms), while reconnecting. */
  retryAt?: number;
}

export type SessionStatus = "idle" | "running" | "waiting_approval" | "done" | "error" | "stopped";

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  /** Only when the agent reported a cost; never estimated. */
  costUsdMicros?: number;
}

export interface SessionView {
  machine: Hex;
  id: Hex;
  runtime: string;
  cwd: string;
  title: string;
  status: SessionStatus;
  createdAt: number;
  updatedAt: number;
  usage: Usage;
  pendingApprovals: number;
  lastSeq: number;
  /** The newest permission mode the device knows of, if any. */
  mode?: string;
}

export interface MachineView {
  fingerprint: Hex;
  /** The short, readable form people compare (as `muxagent auth status` prints it). */
  short: string;
  /** As the machine named itself in the pairing (or since, over its end-to-end channel). */
  hostname: string;
  /** The relay's presence names it otherwise: the relay's word only, shown as such. */
  relayHostname?: string;
  /** Live, from relay presence. */
  online: boolean;
  /** The end-to-end channel: closed, handshaking, syncing (replaying), or live. */
  channel: "closed" | "handshaking" | "syncing" | "live";
  pairedAt: number;
  sessions: SessionView[];
  pendingApprovals: number;
}

export type ApprovalState = "requested" | "delivered" | "decided" | "applied" | "withdrawn" | "expired";

export type Decision =
  | { kind: "allow_once" }
  | { kind: "allow_always" }
  | { kind: "deny"; message: string };

export interface ApprovalView {
  machine: Hex;
  hostname: string;
  session: Hex;
  sessionTitle: string;
  approval: number;
  kind: "tool" | "plan";
  tool: string;
  /** The exact input the agent sent, never shortened. */
  input: string;
  /** For a plan approval, the plan text. */
  plan?: string;
  requestHash: Hex;
  requestedAt: number;
  /** From the session's events only, never guessed. */
  state: ApprovalState;
  decision?: Decision;
  /** Short fingerprint of the device that decided. */
  decidedBy?: string;
  /** This device sent a decision the machine has not answered yet. */
  sending?: boolean;
  /** The machine refused this device's decision, with its reason. */
  refused?: string;
  /** `input` is cut: the approval's event carried less than the agent asked, and the whole is
   *  not here (yet). It cannot be allowed until it is; it can be denied. */
  inputCut?: boolean;
  /** The whole input is being fetched from the machine: bytes so far and in all (0 until the
   *  first page). */
  inputLoading?: { have: number; total: number };
  /** Why the whole input could not be fetched (too long for a device, or the machine's pages
   *  did not give the hash): it can only be denied. */
  inputError?: string;
}

/** One machine's notifications to this device. */
export interface PushMachineView {
  machine: Hex;
  /** The kinds it notifies of (kept in IndexedDB by the core; all on for a new machine). */
  approvals: boolean;
  /** Sessions that finished or failed. */
  ended: boolean;
  plans: boolean;
  /** What the machine said of the keys: `off` (notifications off, or every kind off for it),
   *  `sending`, `on` (it confirmed), `waiting` (offline: it hears them when it connects), or
   *  `refused` (`detail` says why). */
  state: "off" | "sending" | "on" | "waiting" | "refused";
  detail?: string;
}

/** Notifications: whether this device has a push subscription with the relay, and per machine
 *  what it sends. The browser's side (permission, the subscription itself) is the UI's. */
export interface PushView {
  enabled: boolean;
  /** One per paired machine. */
  machines: PushMachineView[];
  /** The relay no longer holds the subscription (checked at each login) and refused it again. */
  problem?: string;
}

/** The relay's answer about push (RFC 8292 VAPID key, and the endpoint it holds for this device). */
export interface PushState {
  /** An uncompressed P-256 point: `applicationServerKey` for `pushManager.subscribe`. */
  vapidPublicKey: Uint8Array<ArrayBuffer>;
  endpoint?: string;
}

/** A machine a device of the account paired with. */
export interface PairedMachineView {
  fingerprint: Hex;
  /** As the machine announced it: untrusted text. */
  hostname: string;
  online: boolean;
}

/** One device of the account, as the relay shows it to this device: an owner is shown every
 *  device, another device only itself. This device comes first. */
export interface AccountDeviceView {
  fingerprint: Hex;
  short: string;
  /** This device. */
  you: boolean;
  /** It reaches every machine of the account and may revoke any device or make owners. */
  owner: boolean;
  /** Connected to the relay now. */
  online: boolean;
  paired: PairedMachineView[];
}

/** The whole state the UI renders. Replaced as a unit on every change. */
export interface View {
  device: { fingerprint: Hex; short: string };
  relay: string;
  connection: Connection;
  machines: MachineView[];
  /** Pending approvals across all machines, newest first. */
  inbox: ApprovalView[];
  /** Every approval the device knows of, newest first (decided ones show their outcome). */
  approvals: ApprovalView[];
  /** True once the cached state has been loaded (first paint). */
  loaded: boolean;
  push: PushView;
}

/** One event of a session's transcript, as the machine logged it. */
export type EventBody =
  | { kind: "started"; runtime: string; args: string[]; cwd: string; title: string; device: Hex }
  | { kind: "prompt"; text: string }
  | { kind: "text"; text: string }
  | { kind: "text_delta"; text: string }
  | { kind: "thinking"; text: string }
  | { kind: "output"; stream: "stdout" | "stderr"; text: string }
  | { kind: "tool_started"; toolCall: string; name: string; input: string }
  | { kind: "tool_updated"; toolCall: string; detail: string }
  | { kind: "tool_finished"; toolCall: string; ok: boolean; output: string; diff?: string }
  | { kind: "approval_requested"; approval: number; approvalKind: "tool" | "plan"; tool: string; input: string }
  | { kind: "approval_state"; approval: number; state: ApprovalState }
  | { kind: "approval_resolved"; approval: number; decision: Decision; device: Hex }
  | { kind: "plan_proposed"; approval: number; plan: string }
  | { kind: "usage"; usage: Usage }
  | { kind: "status"; status: SessionStatus }
  | { kind: "turn_finished"; reason: string }
  | { kind: "error"; message: string }
  | { kind: "exited"; code?: number; signal?: number }
  | { kind: "opaque"; source: string; raw: string }
  | { kind: "agent_session"; id: string };

export type TranscriptEvent = { seq: number; at: number } & EventBody;

export interface RuntimeView {
  name: string;
  available: boolean;
  /** A version, or why it is unavailable. */
  detail: string;
}

export interface StartRequest {
  runtime: string;
  cwd: string;
  title?: string;
  mode?: string;
  /** The first prompt; for `command`, the line the machine runs with `sh -c`. */
  prompt: string;
  /** The agent's command line for `acp`. */
  args?: string[];
}

/**
 * What the wasm core exports (web/core). Every method that talks to a machine resolves when the
 * machine acknowledged, and rejects with an Error whose message is written for people.
 */
export interface Core {
  /** Subscribe to the view; called at once with the current one. Returns an unsubscribe. */
  watch(onView: (view: View) => void): () => void;
  /** Follow one session: called with the cached events at once, then with each batch of new
   *  ones (ascending seq, each seq delivered exactly once). Returns an unsubscribe. */
  follow(machine: Hex, session: Hex, onEvents: (events: TranscriptEvent[]) => void): () => void;
  /** Fetch events older than the oldest cached one (the cache keeps only the newest). Resolves
   *  to false when the session's first event is already held. */
  loadOlder(machine: Hex, session: Hex): Promise<boolean>;
  /** Pair with the machine of a `/pair#…` link (or the bare ticket). */
  pair(link: string): Promise<MachineView>;
  runtimes(machine: Hex): Promise<RuntimeView[]>;
  /** Resolves to the new session's id. */
  start(machine: Hex, request: StartRequest): Promise<Hex>;
  /** Start on `machine` with the plan approved in `fromMachine`'s session `fromSession`. */
  startFromPlan(machine: Hex, fromMachine: Hex, fromSession: Hex, request: Omit<StartRequest, "prompt">): Promise<Hex>;
  send(machine: Hex, session: Hex, text: string): Promise<void>;
  interrupt(machine: Hex, session: Hex): Promise<void>;
  stop(machine: Hex, session: Hex): Promise<void>;
  setMode(machine: Hex, session: Hex, mode: string): Promise<void>;
  /** Sign and send a decision. `shownInput` is exactly the input the card displayed: the core
   *  recomputes the request hash from it and refuses to sign if it differs. */
  decide(machine: Hex, session: Hex, approval: number, shownInput: string, decision: Decision): Promise<void>;
  /** Remove the machine from the account (the relay refuses it from then on) and forget it. */
  revoke(machine: Hex): Promise<void>;
  /** Ask the machine to forget this device (it stays in the account), then forget it here. */
  unpair(machine: Hex): Promise<void>;
  /** Reconnect now (the page became visible, the browser came online). */
  wake(): void;
  /** Whether the page is on screen; every machine hears it and does not push meanwhile. */
  setForeground(visible: boolean): void;
  /** Ask the relay for its push key and the subscription it holds for this device. */
  pushState(): Promise<PushState>;
  /** Notifications on with the browser's subscription: the relay gets the endpoint, every
   *  machine the keys (now, or once it connects). Rejects when the relay refuses the endpoint. */
  enablePush(endpoint: string, p256dh: Uint8Array, auth: Uint8Array): Promise<void>;
  /** Notifications off: the relay drops the endpoint, every machine the keys. */
  disablePush(): Promise<void>;
  /** Which kinds `machine` notifies this device of. */
  setPushKinds(machine: Hex, approvals: boolean, ended: boolean, plans: boolean): Promise<void>;
  /** Ask `machine` for a test notification now; resolves when it handed it to the relay. */
  testPush(machine: Hex): Promise<void>;
  /** The account's devices, as the relay shows them to this device. */
  devices(): Promise<AccountDeviceView[]>;
  /** Revoke `device` (this one, or as an owner any): the relay cuts it off at once and bars
   *  its key for good, and every machine forgets it. Resolves when the relay stored it; this
   *  device, revoked, is `revoked` from then on. A refusal rejects with the relay's reason. */
  revokeDevice(device: Hex): Promise<void>;
  /** Make `device` an owner (this device must be one). */
  grantOwner(device: Hex): Promise<void>;
  /** Once revoked: stop, and erase everything this browser keeps of the device (its key,
   *  machines, sessions, events, notification settings). Load the page again to start over as
   *  a new device. Rejects while the device is not revoked. */
  forget(): Promise<void>;
  /** Write the store changes that wait (at most `STORE_FLUSH_MS`, 50 ms) now: the page is
   *  hidden or going away. */
  flush(): void;
}

/** What came of deciding from a notification (the service worker's `actOnNotice`). */
export interface NoticeOutcome {
  /** `applied`: the agent has the answer; `sent`: the machine accepted it (not applied yet when
   *  the wait ended); `withdrawn`, `expired`; `taken`: decided elsewhere or no longer pending;
   *  `failed`: `message` says why. */
  state: "applied" | "sent" | "withdrawn" | "expired" | "taken" | "failed";
  host: string;
  message?: string;
}

/**
 * The wasm module (web/pkg/muxagent_web.js, made by web/build-core) exports, besides its
 * default `init` (call and await it first):
 *
 * ```ts
 * import init, { start } from "./core/muxagent_web.js";
 * await init();
 * const core: Core = await start();
 * ```
 *
 * `start()` opens IndexedDB (database `muxagent`; without it — a private window — the app works
 * for this visit only), makes the device key the first time, loads the paired machines and the
 * cached sessions and events, asks for persistent storage, and starts connecting to the relay of
 * the page's own origin (`ws(s)://<host>/relay`). It resolves once the cache is loaded, so the
 * first `watch` call paints it (`loaded: true`) while the connection and resync follow. Call it
 * once per page.
 *
 * Notes on the methods above, as the core implements them:
 * - `follow` also delivers the events `loadOlder` fetches, as their own batch (ascending, all
 *   below what was delivered before): insert them in seq order.
 * - `pair` rejects at once for a link of another relay than the page's origin, an expired or
 *   damaged one; a used or claimed one and a wrong secret reject when the relay or the machine
 *   answers. Nothing is stored unless it resolves.
 * - `decide` rejects without sending when the approval is no longer pending, or when
 *   `shownInput` is not exactly the input the request's hash covers.
 */
export type StartCore = () => Promise<Core>;
