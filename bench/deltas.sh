#!/usr/bin/env bash
# Measures how fast the daemon logs a chatty agent's stream, on loopback, in release mode: the
# fake agent (FAKE_AGENT_DELTAS) answers one prompt with N text deltas (default 10,000) as fast
# as the daemon reads them, while a controller watches the session live. Prints events/s (from
# starting the session until it is idle with every delta logged, and until the watching device
# printed every event) and, when strace is installed,
# the daemon's fsyncs (fsync + fdatasync) during that time and per second.
#
#   bench/deltas.sh [N]
#   MUXAGENT_BEFORE=/path/to/other/muxagent bench/deltas.sh [N]   # that binary first, same run
#
# Runs everything on 127.0.0.1 in a temporary folder and cleans up after itself. Not part of
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}

cargo build --release -q --locked -p muxagent -p muxagent-relay --bin muxagent --bin muxagent-relay --example fake-agent
relay_bin=$PWD/target/release/muxagent-relay
fake=$PWD/target/release/examples/fake-agent
work=$(mktemp -d)
pids=()
cleanup() {
  # The daemon may run under strace: stop what it started too.
  for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_until() { # description command...
  local what=$1
  shift
  for _ in $(seq 1 1200); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "timed out waiting for $what" >&2
  exit 1
}
now() { date +%s.%N; }
export MUXAGENT_HOSTNAME=bench

# One measurement with the muxagent binary $1, labelled $2.
measure() {
  local mux=$1 label=$2 run=$work/$2
  mkdir -p "$run/fake" "$run/cwd"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local relay_url=http://127.0.0.1:$port
  "$relay_bin" --listen "127.0.0.1:$port" --data-dir "$run/relay" 2>>"$run/relay.log" &
  local relay_pid=$!
  pids+=("$relay_pid")
  wait_until "the relay" curl -sf "$relay_url/healthz"

  local machine=$run/machine controller=$run/controller
  local trace=()
  if command -v strace >/dev/null; then
    # Only fsync and fdatasync stop the daemon (seccomp-bpf): the rest runs at full speed.
    trace=(strace -f --seccomp-bpf -ttt -e trace=fsync,fdatasync -o "$run/fsyncs")
  fi
  MUXAGENT_HOME=$machine MUXAGENT_CLAUDE=$fake FAKE_AGENT_DELTAS=$count \
    "${trace[@]}" "$mux" daemon start --foreground --relay "$relay_url" 2>"$run/daemon.log" &
  local daemon_pid=$!
  pids+=("$daemon_pid")
  link_of() { MUXAGENT_HOME=$machine "$mux" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pairing"]["link"])'; }
  wait_until "a pairing link" link_of
  MUXAGENT_HOME=$controller "$mux" ctl pair "$(link_of)" >/dev/null
  paired() { MUXAGENT_HOME=$machine "$mux" daemon status --json | grep -q '"paired_devices":1'; }
  wait_until "the pairing" paired
  online() { MUXAGENT_HOME=$controller "$mux" ctl machines --json | grep -q '"online":true'; }
  wait_until "the machine online" online

  local start end session
  start=$(now)
  session=$(MUXAGENT_HOME=$controller "$mux" ctl start bench --runtime claude --cwd "$run/cwd" \
    --prompt "stream $count deltas" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
  MUXAGENT_HOME=$controller "$mux" ctl watch bench "${session:0:8}" --json >"$run/watch.out" 2>/dev/null &
  local watch_pid=$!
  pids+=("$watch_pid")
  done_() { MUXAGENT_HOME=$machine "$mux" sessions --json | grep -Eq "\"output_tokens\": ?$count\b"; }
  for _ in $(seq 1 60000); do done_ && break; sleep 0.01; done
  done_ || { echo "timed out waiting for $count deltas" >&2; exit 1; }
  end=$(now)
  MUXAGENT_HOME=$machine "$mux" sessions --json >"$run/sessions.json"
  # The watching device has every event: as many lines as the log has events.
  local logged watched
  logged=$(python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); rows=rows if isinstance(rows,list) else rows.get("sessions",rows); print(max(r["last_seq"] for r in rows))' "$run/sessions.json")
  for _ in $(seq 1 60000); do [ "$(wc -l <"$run/watch.out")" -ge "$logged" ] && break; sleep 0.01; done
  watched=$(now)
  # Stop this run's processes before the next one measures.
  kill "$watch_pid" 2>/dev/null || true
  MUXAGENT_HOME=$machine "$mux" daemon stop >/dev/null 2>&1 || true
  wait "$daemon_pid" 2>/dev/null || true
  kill "$relay_pid" 2>/dev/null || true
  wait "$relay_pid" "$watch_pid" 2>/dev/null || true
  python3 - "$label" "$count" "$start" "$end" "$run/sessions.json" "$run/fsyncs" "$watched" "$run/watch.out" <<'PY'
import json, os, sys
label, count, start, end, sessions, fsyncs, watched, watch_out = sys.argv[1:]
start, end, watched = float(start), float(end), float(watched)
rows = json.load(open(sessions))
rows = rows if isinstance(rows, list) else rows.get("sessions", rows)
events = max(row["last_seq"] for row in rows)
secs = end - start
line = f"{label:>7}: {events} events in {secs:.2f} s = {events / secs:,.0f} events/s"
if os.path.exists(fsyncs):
    times = [float(l.split()[1]) for l in open(fsyncs) if "sync(" in l and not "resumed" in l]
    n = sum(1 for t in times if start <= t <= end)
    line += f"; {n} fsyncs = {n / secs:,.0f} fsyncs/s, {events / max(n, 1):.1f} events per fsync"
shown = sum(1 for _ in open(watch_out))
line += f"; the watching device had {shown} of them after {watched - start:.2f} s = {shown / (watched - start):,.0f} events/s"
print(line)
PY
}

echo "$count streamed deltas through a real daemon, watched live by a controller:"
if [ -n "${MUXAGENT_BEFORE:-}" ]; then
  measure "$MUXAGENT_BEFORE" before
fi
measure "$PWD/target/release/muxagent" after
