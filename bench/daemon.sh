#!/usr/bin/env bash
# Measures the daemon on loopback, in release mode, in one run:
#   - resident memory (VmRSS) paired and connected with no sessions;
#   - VmRSS with 10 running `command` sessions;
#   - time from a relay restart (SIGKILL, then start) until a controller that was watching a
#     session has resynced and printed the next line;
#   - the release binaries' sizes.
#
#   bench/daemon.sh
#
# Runs everything on 127.0.0.1 in a temporary folder and cleans up after itself. Not part of
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q --bin muxagent -p muxagent -p muxagent-relay
mux=$PWD/target/release/muxagent
relay_bin=$PWD/target/release/muxagent-relay
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
wait_until() { # description command...
  local what=$1
  shift
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "timed out waiting for $what" >&2
  exit 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
relay_url=http://127.0.0.1:$port
start_relay() {
  "$relay_bin" --listen "127.0.0.1:$port" --data-dir "$work/relay" 2>>"$work/relay.log" &
  relay_pid=$!
  pids+=("$relay_pid")
}
start_relay
wait_until "the relay" curl -sf "$relay_url/healthz"

export MUXAGENT_HOSTNAME=bench
machine=$work/machine
controller=$work/controller
MUXAGENT_HOME=$machine "$mux" daemon start --foreground --relay "$relay_url" 2>"$work/daemon.log" &
daemon_pid=$!
pids+=("$daemon_pid")
link_of() { MUXAGENT_HOME=$machine "$mux" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pairing"]["link"])'; }
wait_until "a pairing link" link_of
MUXAGENT_HOME=$controller "$mux" ctl pair "$(link_of)" >/dev/null
connected() { MUXAGENT_HOME=$machine "$mux" daemon status --json | grep -q '"connected":true' && MUXAGENT_HOME=$machine "$mux" daemon status --json | grep -q '"paired_devices":1'; }
wait_until "the paired daemon to connect" connected
MUXAGENT_HOME=$controller "$mux" ctl sessions bench >/dev/null
idle=$(rss_kib "$daemon_pid")

for n in $(seq 1 10); do
  MUXAGENT_HOME=$controller "$mux" ctl start bench --runtime command --cwd "$work" -- "echo session $n; sleep 600" >/dev/null
done
running() { [ "$(MUXAGENT_HOME=$machine "$mux" sessions --json | grep -o '"running"' | wc -l)" -eq 10 ]; }
wait_until "10 running sessions" running
busy=$(rss_kib "$daemon_pid")

# A ticking session, watched; kill the relay, start it again, time until the next tick is shown.
session=$(MUXAGENT_HOME=$controller "$mux" ctl start bench --runtime command --cwd "$work" --json -- 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"][:8])')
MUXAGENT_HOME=$controller "$mux" ctl watch bench "$session" >"$work/watch.out" 2>/dev/null &
pids+=("$!")
wait_until "the watch to print" grep -q "tick 3" "$work/watch.out"
kill -9 "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
lines_before=$(wc -l <"$work/watch.out")
start=$(now_ms)
start_relay
grown() { [ "$(wc -l <"$work/watch.out")" -gt "$lines_before" ]; }
for _ in $(seq 1 2000); do grown && break; sleep 0.005; done
resync_ms=$(($(now_ms) - start))
gaps=$(python3 - "$work/watch.out" <<'PY'
import re, sys
ticks = [int(m.group(1)) for m in re.finditer(r"^tick (\d+)$", open(sys.argv[1]).read(), re.M)]
print(sum(1 for a, b in zip(ticks, ticks[1:]) if b != a + 1))
PY
)

printf 'daemon VmRSS, paired and connected, no sessions: %d KiB\n' "$idle"
printf 'daemon VmRSS with 10 running sessions:           %d KiB (%+d KiB)\n' "$busy" $((busy - idle))
printf 'relay restart to resynced controller:            %d ms (gaps in the watched output: %s)\n' "$resync_ms" "$gaps"
printf 'release binaries: muxagent %d bytes, muxagent-relay %d bytes\n' "$(stat -c %s "$mux")" "$(stat -c %s "$relay_bin")"
