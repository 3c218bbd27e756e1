// A session's events folded into the blocks the transcript shows: streamed text merged into
// one block, a command's output merged per stream, a tool call's start/updates/finish in one
// card, an approval's request/state/decision (and its plan) in one card. Folding is
// incremental (new events touch only the last blocks), blocks are immutable values (a changed
// block is a new object, so unchanged ones are not re-rendered), and each seq counts once
// however often it is delivered.

import type { ApprovalState, Decision, TranscriptEvent } from "./contract";

export type Block =
  | { key: string; kind: "started"; runtime: string; args: string[]; cwd: string; title: string }
  | { key: string; kind: "prompt"; text: string }
  | { key: string; kind: "text"; text: string }
  | { key: string; kind: "thinking"; text: string }
  | { key: string; kind: "output"; stream: "stdout" | "stderr"; text: string }
  | {
      key: string;
      kind: "tool";
      toolCall: string;
      name: string;
      input: string;
      updates: string[];
      status: "running" | "ok" | "failed";
      output?: string;
      diff?: string;
    }
  | {
      key: string;
      kind: "approval";
      approval: number;
      approvalKind: "tool" | "plan";
      tool: string;
      input: string;
      plan?: string;
      state: ApprovalState;
      decision?: Decision;
    }
  | { key: string; kind: "turn"; reason: string }
  | { key: string; kind: "error"; message: string }
  | { key: string; kind: "exited"; code?: number; signal?: number }
  | { key: string; kind: "opaque"; source: string; raw: string };

type ApprovalBlock = Extract<Block, { kind: "approval" }>;
type ToolBlock = Extract<Block, { kind: "tool" }>;

/** Characters of streamed text or output in one block before the next block begins: a long
 *  build log becomes many small blocks (each rendered once) instead of one that grows and is
 *  re-rendered whole with every chunk. */
export const BLOCK_CHARS = 8192;

/** Most tool-update lines kept per tool card (the newest); the output has the rest. */
export const TOOL_UPDATES_KEPT = 50;

export class Transcript {
  /** The blocks, oldest first. */
  blocks: Block[] = [];
  /** Events held, ascending seq. */
  private events: TranscriptEvent[] = [];
  private seen = new Set<number>();
  private tools = new Map<string, number>();
  private approvals = new Map<number, number>();
  /** A plan that arrived before its approval request. */
  private plans = new Map<number, string>();
  /** Whether the last block still takes streamed text / output. */
  private open = false;

  /** The lowest seq held, or undefined. */
  get firstSeq(): number | undefined {
    return this.events[0]?.seq;
  }

  /** The highest seq held, or undefined. */
  get lastSeq(): number | undefined {
    return this.events[this.events.length - 1]?.seq;
  }

  get size(): number {
    return this.events.length;
  }

  /** Add a batch; returns whether anything changed. Events older than the newest held one
   *  (from `loadOlder`) refold the whole transcript. */
  add(batch: TranscriptEvent[]): boolean {
    const fresh = batch.filter((event) => !this.seen.has(event.seq));
    if (fresh.length === 0) return false;
    for (const event of fresh) this.seen.add(event.seq);
    const last = this.events.length ? this.events[this.events.length - 1]!.seq : -Infinity;
    const inOrder = fresh.every((event, i) => event.seq > (i === 0 ? last : fresh[i - 1]!.seq));
    if (inOrder) {
      this.events.push(...fresh);
      for (const event of fresh) this.apply(event);
      return true;
    }
    this.events = this.events.concat(fresh).sort((a, b) => a.seq - b.seq);
    this.blocks = [];
    this.tools.clear();
    this.approvals.clear();
    this.plans.clear();
    this.open = false;
    for (const event of this.events) this.apply(event);
    return true;
  }

  private push(block: Block, open = false): void {
    this.blocks.push(block);
    this.open = open;
  }

  private replace(index: number, block: Block): void {
    this.blocks[index] = block;
  }

  private apply(event: TranscriptEvent): void {
    const key = String(event.seq);
    const tail = this.blocks[this.blocks.length - 1];
    switch (event.kind) {
      case "started":
        this.push({ key, kind: "started", runtime: event.runtime, args: event.args, cwd: event.cwd, title: event.title });
        return;
      case "prompt":
        this.push({ key, kind: "prompt", text: event.text });
        return;
      case "text":
      case "text_delta":
        if (this.open && tail?.kind === "text" && tail.text.length + event.text.length <= BLOCK_CHARS) {
          this.replace(this.blocks.length - 1, { ...tail, text: tail.text + event.text });
          this.open = true;
        } else {
          this.push({ key, kind: "text", text: event.text }, true);
        }
        return;
      case "output":
        if (this.open && tail?.kind === "output" && tail.stream === event.stream && tail.text.length + event.text.length <= BLOCK_CHARS) {
          this.replace(this.blocks.length - 1, { ...tail, text: tail.text + event.text });
          this.open = true;
        } else {
          this.push({ key, kind: "output", stream: event.stream, text: event.text }, true);
        }
        return;
      case "thinking":
        this.push({ key, kind: "thinking", text: event.text });
        return;
      case "tool_started":
        this.tools.set(event.toolCall, this.blocks.length);
        this.push({ key, kind: "tool", toolCall: event.toolCall, name: event.name, input: event.input, updates: [], status: "running" });
        return;
      case "tool_updated":
        this.updateTool(event.toolCall, (tool) => ({
          ...tool,
          updates: [...tool.updates, event.detail].slice(-TOOL_UPDATES_KEPT),
        }));
        return;
      case "tool_finished":
        this.updateTool(event.toolCall, (tool) => {
          const done: ToolBlock = { ...tool, status: event.ok ? "ok" : "failed", output: event.output };
          if (event.diff !== undefined) done.diff = event.diff;
          return done;
        });
        return;
      case "approval_requested": {
        this.approvals.set(event.approval, this.blocks.length);
        const block: ApprovalBlock = {
          key,
          kind: "approval",
          approval: event.approval,
          approvalKind: event.approvalKind,
          tool: event.tool,
          input: event.input,
          state: "requested",
        };
        const plan = this.plans.get(event.approval);
        if (plan !== undefined) block.plan = plan;
        this.push(block);
        return;
      }
      case "plan_proposed":
        this.plans.set(event.approval, event.plan);
        this.updateApproval(event.approval, (block) => ({ ...block, plan: event.plan }));
        return;
      case "approval_state":
        this.updateApproval(event.approval, (block) => ({ ...block, state: event.state }));
        return;
      case "approval_resolved":
        this.updateApproval(event.approval, (block) => ({ ...block, decision: event.decision }));
        return;
      case "turn_finished":
        this.push({ key, kind: "turn", reason: event.reason });
        return;
      case "error":
        this.push({ key, kind: "error", message: event.message });
        return;
      case "exited": {
        const block: Block = { key, kind: "exited" };
        if (event.code !== undefined) block.code = event.code;
        if (event.signal !== undefined) block.signal = event.signal;
        this.push(block);
        return;
      }
      case "opaque":
        this.push({ key, kind: "opaque", source: event.source, raw: event.raw });
        return;
      // Shown elsewhere (the session header) or not at all; they do not end a text block.
      case "usage":
      case "status":
      case "agent_session":
        return;
    }
  }

  private updateTool(toolCall: string, change: (tool: ToolBlock) => ToolBlock): void {
    const index = this.tools.get(toolCall);
    const block = index === undefined ? undefined : this.blocks[index];
    if (block?.kind === "tool") this.replace(index!, change(block));
  }

  private updateApproval(approval: number, change: (block: ApprovalBlock) => ApprovalBlock): void {
    const index = this.approvals.get(approval);
    const block = index === undefined ? undefined : this.blocks[index];
    if (block?.kind === "approval") this.replace(index!, change(block));
  }
}
