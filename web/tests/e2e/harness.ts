// Real processes on 127.0.0.1 for the app's end-to-end tests, as tests/support/mod.rs starts
// them for the Rust ones: a relay (muxagent-relay) with its own data folder, daemons
// (`muxagent daemon start --foreground`) each with its own MUXAGENT_HOME and MUXAGENT_HOSTNAME,
// and agents played by the fake agent (target/debug/examples/fake-agent) from
// agents/fixtures/. Waiting is always for something observable, with a deadline.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer as netServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const REPO = resolve(WEB, "..");
const TARGET = process.env.CARGO_TARGET_DIR ?? join(REPO, "target");
export const DEADLINE_MS = 30_000;

function binary(...candidates: string[]): string {
  for (const path of candidates) if (existsSync(path)) return path;
  throw new Error(`missing ${candidates.join(" or ")}: web/test builds it (cargo build)`);
}

export const MUXAGENT = () => binary(join(TARGET, "debug/muxagent"));
export const RELAY = () => binary(join(TARGET, "debug/muxagent-relay"), join(TARGET, "release/muxagent-relay"));
export const FAKE_AGENT = () => binary(join(TARGET, "debug/examples/fake-agent"));

/** Poll `check` until it returns a value (not undefined/false) or the deadline passes. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = netServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

async function get(url: string): Promise<{ status: number; body: string } | null> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return null;
  }
}

/** A temporary folder for one test file's world, removed at the end. */
export function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), "muxagent-web-"));
}

export class Relay {
  private child: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly args: string[],
  ) {}

  /** `args`: more flags for the relay (`--push-origin …`). */
  static async start(dir: string, args: string[] = []): Promise<Relay> {
    const relay = new Relay(await freePort(), dir, args);
    await relay.restart();
    return relay;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start (again) on the same port and data. */
  async restart(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const log = openSync(join(this.dir, "relay.log"), "a");
    this.child = spawn(RELAY(), ["--listen", `127.0.0.1:${this.port}`, "--data-dir", join(this.dir, "data"), ...this.args], {
      stdio: ["ignore", log, log],
    });
    await waitFor("the relay's /healthz", async () => (await get(this.url + "/healthz"))?.status === 200);
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** Whether this relay serves the web app itself (the embedded web/dist). */
  async servesApp(): Promise<boolean> {
    const page = await get(this.url + "/");
    return Boolean(page && page.status === 200 && page.body.includes('<div id="app">'));
  }
}

export interface DaemonOptions {
  /** The fake agent plays `agents/fixtures/claude/SCENARIO.jsonl` as `claude`. */
  claude?: string;
  /** More environment for the daemon and its agents (`FAKE_AGENT_BENCH=N`: the fake agent asks
   *  for approval N times in a row). */
  env?: Record<string, string>;
}

export class Daemon {
  private child: ChildProcess | null = null;
  readonly home: string;
  readonly state: string;
  private constructor(
    readonly root: string,
    readonly hostname: string,
    readonly relay: string,
    readonly options: DaemonOptions,
  ) {
    this.home = join(root, hostname);
    this.state = join(root, hostname + "-fake");
  }

  static async start(root: string, hostname: string, relay: string, options: DaemonOptions = {}): Promise<Daemon> {
    const daemon = new Daemon(root, hostname, relay, options);
    await daemon.restart();
    return daemon;
  }

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, MUXAGENT_HOME: this.home, MUXAGENT_HOSTNAME: this.hostname };
    if (this.options.claude) {
      mkdirSync(this.state, { recursive: true });
      env.MUXAGENT_CLAUDE = FAKE_AGENT();
      env.FAKE_AGENT_FIXTURE = join(REPO, "agents/fixtures/claude", this.options.claude + ".jsonl");
      env.FAKE_AGENT_STATE = this.state;
    }
    return { ...env, ...this.options.env };
  }

  async restart(): Promise<void> {
    mkdirSync(this.home, { recursive: true });
    const log = openSync(join(this.home, "test-daemon.log"), "a");
    this.child = spawn(MUXAGENT(), ["daemon", "start", "--foreground", "--relay", this.relay], {
      env: this.env(),
      stdio: ["ignore", log, log],
    });
    await waitFor("the daemon to connect", () => this.status()?.connected === true);
  }

  status(): Record<string, any> | undefined {
    try {
      const out = execFileSync(MUXAGENT(), ["daemon", "status", "--json"], { env: this.env(), timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] });
      return JSON.parse(out.toString());
    } catch {
      return undefined;
    }
  }

  /** The pairing link on offer. */
  link(): Promise<string> {
    return waitFor("a pairing link", () => {
      const link = this.status()?.pairing?.link;
      return typeof link === "string" ? link : undefined;
    });
  }

  /** Pairing another device, as a person does on the machine (`muxagent pair`): the fresh
   *  link, and the command's exit code once a device paired with it. */
  async pairAgain(): Promise<{ link: string; done: Promise<number | null> }> {
    const child = spawn(MUXAGENT(), ["pair"], { env: this.env(), stdio: ["ignore", "ignore", "ignore"] });
    const done = new Promise<number | null>((resolve) => child.once("exit", resolve));
    return { link: await this.link(), done };
  }

  /** The fake agent's transcript: every line the daemon sent it. */
  transcript(): string {
    try {
      return readFileSync(join(this.state, "transcript.jsonl"), "utf8");
    } catch {
      return "";
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.home, "test-daemon.log"), "utf8");
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** A world: one relay, which serves the app from the web/dist it was built with. */
export class World {
  readonly daemons: Daemon[] = [];
  private readonly otherRelays: Relay[] = [];
  private constructor(
    readonly root: string,
    readonly relay: Relay,
  ) {}

  /** `relayArgs`: more flags for the relay. */
  static async start(relayArgs: string[] = []): Promise<World> {
    const root = tempRoot();
    const relay = await Relay.start(join(root, "relay"), relayArgs);
    if (!(await relay.servesApp())) throw new Error("the relay does not serve the app: build web/dist (web/build), then the relay");
    return new World(root, relay);
  }

  async daemon(hostname: string, options: DaemonOptions = {}): Promise<Daemon> {
    const daemon = await Daemon.start(this.root, hostname, this.relay.url, options);
    this.daemons.push(daemon);
    return daemon;
  }

  /** A daemon on a relay of its own: its links are for another relay than the app's. */
  async daemonElsewhere(hostname: string): Promise<Daemon> {
    const relay = await Relay.start(join(this.root, `relay-of-${hostname}`));
    this.otherRelays.push(relay);
    const daemon = await Daemon.start(this.root, hostname, relay.url);
    this.daemons.push(daemon);
    return daemon;
  }

  /** The link as the app is opened: the daemon's, on the app's origin. */
  pageLink(link: string): string {
    const url = new URL(link);
    return this.relay.url + url.pathname + url.hash;
  }

  async close(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop()));
    await Promise.all([this.relay, ...this.otherRelays].map((r) => r.kill()));
    if (!process.env.MUXAGENT_KEEP_TEST_DIRS) rmSync(this.root, { recursive: true, force: true });
  }
}

/** `link` with its ticket's expiry moved to 2001. Postcard ends the ticket with `expires_at`,
 *  a varint; 1,000,000,000 takes as many bytes as any time this century, so nothing else moves
 *  and the ticket stays well-formed. */
export function expiredLink(link: string): string {
  const url = new URL(link);
  const bytes = Buffer.from(url.hash.slice(1), "base64url");
  let start = bytes.length - 1;
  while (start > 0 && (bytes[start - 1]! & 0x80) !== 0) start--;
  const past: number[] = [];
  for (let value = 1_000_000_000; ; value = Math.floor(value / 128)) {
    if (value < 128) {
      past.push(value);
      break;
    }
    past.push((value % 128) | 0x80);
  }
  if (bytes.length - start !== past.length) throw new Error("the ticket's expiry is not a 5-byte varint");
  bytes.set(past, start);
  url.hash = bytes.toString("base64url");
  return url.toString();
}
