// One transcript block as a list item, and what each kind of block looks like. An item
// re-renders only when its block (an immutable value: a changed block is a new object) or its
// approval's view changed, so a new event re-renders the block it touched, not the window.

import { Component } from "preact";
import type { ApprovalView } from "../contract";
import { diffLines } from "../diff";
import { revealPlain } from "../text";
import type { Block } from "../transcript";
import { ApprovalCard, decisionText } from "./ApprovalCard";
import { DiffView, InputView, Mono, T } from "./common";

interface ItemProps {
  block: Block;
  /** The live view of an approval block's approval, when the device holds one. */
  approval: ApprovalView | undefined;
}

export class BlockItem extends Component<ItemProps> {
  shouldComponentUpdate(next: ItemProps): boolean {
    return next.block !== this.props.block || next.approval !== this.props.approval;
  }

  render({ block, approval }: ItemProps) {
    return (
      <li data-key={block.key} class={"b b-" + block.kind}>
        {block.kind === "approval" && approval ? <ApprovalCard approval={approval} inline /> : <BlockView block={block} />}
      </li>
    );
  }
}

function BlockView({ block }: { block: Block }) {
  switch (block.kind) {
    case "started":
      return (
        <p class="small muted">
          ▶ Started {block.runtime}
          {block.args.length > 0 ? (
            <>
              : <code><T text={block.args.join(" ")} /></code>
            </>
          ) : null}{" "}
          in <code><T text={block.cwd} /></code>
        </p>
      );
    case "prompt":
      return (
        <div class="prompt" aria-label="Your prompt">
          <T text={block.text} />
        </div>
      );
    case "text":
      return (
        <div class="text">
          <T text={block.text} />
        </div>
      );
    case "thinking":
      return (
        <details>
          <summary>Thinking</summary>
          <div class="text muted">
            <T text={block.text} />
          </div>
        </details>
      );
    case "output":
      return <Mono text={block.text} class={"output " + block.stream} label={block.stream} />;
    case "tool":
      return (
        <article class="card tool" aria-label={`Tool ${revealPlain(block.name)}`}>
          <header class="row spread">
            <code class="tool-name"><T text={block.name} /></code>
            <span class={"chip tool-" + block.status}>{block.status === "running" ? "running" : block.status === "ok" ? "done" : "failed"}</span>
          </header>
          <InputView input={block.input} label={`Input of ${revealPlain(block.name)}`} />
          {block.updates.length > 0 && <Mono text={block.updates.join("\n")} class="updates" label="Progress" />}
          {block.diff && <DiffView lines={diffLines(block.diff)} label="Diff" />}
          {block.output !== undefined && block.output !== "" && (
            <details open={block.output.length < 400}>
              <summary>Output</summary>
              <Mono text={block.output} label={`Output of ${revealPlain(block.name)}`} />
            </details>
          )}
        </article>
      );
    case "approval":
      return <ApprovalBlock block={block} />;
    case "turn":
      return <p class="turn small muted">Turn finished{block.reason ? <>: <T text={block.reason} /></> : null}</p>;
    case "error":
      return (
        <p class="error">
          <T text={block.message} />
        </p>
      );
    case "exited":
      return (
        <p class="exited small">
          {block.signal !== undefined
            ? `Ended by signal ${block.signal}`
            : block.code !== undefined
              ? `Exited with code ${block.code}`
              : "Exited"}
        </p>
      );
    case "opaque":
      return (
        <details class="opaque">
          <summary>
            A message from <T text={block.source} /> muxagent does not know
          </summary>
          <Mono text={block.raw} />
        </details>
      );
  }
}

/** An approval the device holds no view of (an old one): what the events say. */
function ApprovalBlock({ block }: { block: Extract<Block, { kind: "approval" }> }) {
  return (
    <article class="card approval" aria-label={`Approval: ${block.approvalKind === "plan" ? "plan" : revealPlain(block.tool)}`}>
      <h3>{block.approvalKind === "plan" ? "Plan" : <>Asked to use <code><T text={block.tool} /></code></>}</h3>
      {block.plan !== undefined && <Mono text={block.plan} label="The plan" class="plan" />}
      <InputView input={block.input} label="Input" />
      <p class="state small">
        {block.state}
        {block.decision && ` · ${decisionText(block.decision)}`}
      </p>
    </article>
  );
}
