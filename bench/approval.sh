#!/usr/bin/env bash
# Measures one approval's round trip on loopback, in release mode: from the moment the agent
# prints its ask to the moment it reads the answer, through daemon → relay → controller (which
# signs the decision) → relay → daemon → agent. The agent is the fake agent in bench mode (it
# speaks Claude Code's stream-json protocol and times each ask itself); the controller is
# `muxagent ctl bench-approvals`, which stays connected like a phone and approves each ask as
# soon as it sees it. Prints the median, p90 and max of N asks (default 100).
#
#   bench/approval.sh [N]
#
# Runs everything on 127.0.0.1 in a temporary folder and cleans up after itself. Not part of
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100}

cargo build --release -q --bin muxagent -p muxagent -p muxagent-relay --example fake-agent
mux=$PWD/target/release/muxagent
relay_bin=$PWD/target/release/muxagent-relay
fake=$PWD/target/release/examples/fake-agent
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_until() { # description command...
  local what=$1
  shift
  for _ in $(seq 1 600); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "timed out waiting for $what" >&2
  exit 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
relay_url=http://127.0.0.1:$port
"$relay_bin" --listen "127.0.0.1:$port" --data-dir "$work/relay" 2>>"$work/relay.log" &
pids+=($!)
wait_until "the relay" curl -sf "$relay_url/healthz"

export MUXAGENT_HOSTNAME=bench
machine=$work/machine
controller=$work/controller
mkdir -p "$work/fake" "$work/cwd"
MUXAGENT_HOME=$machine MUXAGENT_CLAUDE=$fake FAKE_AGENT_BENCH=$count FAKE_AGENT_STATE=$work/fake \
  "$mux" daemon start --foreground --relay "$relay_url" 2>"$work/daemon.log" &
pids+=($!)
link_of() { MUXAGENT_HOME=$machine "$mux" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pairing"]["link"])'; }
wait_until "a pairing link" link_of
MUXAGENT_HOME=$controller "$mux" ctl pair "$(link_of)" >/dev/null
paired() { MUXAGENT_HOME=$machine "$mux" daemon status --json | grep -q '"paired_devices":1'; }
wait_until "the pairing" paired
online() { MUXAGENT_HOME=$controller "$mux" ctl machines --json | grep -q '"online":true'; }
wait_until "the machine online" online

session=$(MUXAGENT_HOME=$controller "$mux" ctl start bench --runtime claude --cwd "$work/cwd" \
  --prompt "ask $count times" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
MUXAGENT_HOME=$controller "$mux" ctl bench-approvals bench "$session" --count "$count" >/dev/null
wait_until "the agent's timings" test -s "$work/fake/bench.json"

python3 - "$work/fake/bench.json" <<'PY'
import json, statistics, sys
times = sorted(t / 1000 for t in json.load(open(sys.argv[1])))
p90 = times[int(len(times) * 0.9) - 1]
print(f"approval round trip, agent ask -> agent receipt, {len(times)} asks on loopback:")
print(f"  median {statistics.median(times):.2f} ms   p90 {p90:.2f} ms   min {times[0]:.2f} ms   max {times[-1]:.2f} ms")
PY
