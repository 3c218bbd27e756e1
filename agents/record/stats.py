#!/usr/bin/env python3
"""Timings from the recorded fixtures (the "ms" of each line).

    python3 agents/record/stats.py [agents/fixtures]

Per agent, over all its scenarios (median, and min-max):
  ready   first reply to the first request (initialize): process start-up
  ask     the prompt line sent -> the approval request seen (one mock model round trip)
  react   approval answered -> the CLI's next stdout line
  turn    approval answered -> end of the turn (result / turn/completed / prompt response)
"""

import glob
import json
import os
import statistics
import sys

ASK = ('"can_use_tool"', '"item/commandExecution/requestApproval"', '"item/fileChange/requestApproval"',
       '"session/request_permission"')
PROMPT = ('"type":"user"', '"turn/start"', '"session/prompt"')
END = ('"type":"result"', '"turn/completed"', '"stopReason"')


def main(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "*.jsonl"))):
        agent = os.path.basename(os.path.dirname(path))
        recs = [json.loads(l) for l in open(path)]
        # Only the first process of a fixture (resume fixtures hold two).
        if any(r["dir"] == "meta" for r in recs):
            recs = recs[:[r["dir"] for r in recs].index("meta")]
        st = out.setdefault(agent, {"ready": [], "ask": [], "react": [], "turn": []})
        outs = [r for r in recs if r["dir"] == "out"]
        if outs:
            st["ready"].append(outs[0]["ms"])
        last_prompt = None
        for i, r in enumerate(recs):
            line = r["line"]
            if r["dir"] == "in" and any(p in line for p in PROMPT):
                last_prompt = r["ms"]
            if r["dir"] == "out" and any(a in line for a in ASK):
                if last_prompt is not None:
                    st["ask"].append(r["ms"] - last_prompt)
                ans = next((x for x in recs[i + 1:] if x["dir"] == "in"), None)
                if ans is None:
                    continue
                j = recs.index(ans)
                nxt = next((x for x in recs[j + 1:] if x["dir"] == "out"), None)
                if nxt:
                    st["react"].append(nxt["ms"] - ans["ms"])
                end = next((x for x in recs[j + 1:] if x["dir"] == "out" and any(e in x["line"] for e in END)), None)
                if end:
                    st["turn"].append(end["ms"] - ans["ms"])
    for agent, st in out.items():
        parts = []
        for k in ("ready", "ask", "react", "turn"):
            v = st[k]
            if v:
                parts.append("%s %d ms (%d-%d, n=%d)" % (k, statistics.median(v), min(v), max(v), len(v)))
        print("%-7s %s" % (agent, "; ".join(parts)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "fixtures"))
