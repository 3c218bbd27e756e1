#!/usr/bin/env bash
# The daemon's side at scale (issue 14, item 4), on loopback, in release mode, in one run:
#   - resync: a fresh `ctl watch` (cursor 0) of a session of N events (default 10,000 deltas)
#     until it has replayed all of them, beside the same for a session of a few events (the
#     connection and handshake alone);
#   - VmRSS of the daemon with 1, 10 and 100 running `command` sessions (each a `sleep`);
#   - start-up of a daemon whose sessions folder holds ~1 GiB of logs: a session log is capped
#     at LOG_RETENTION_LEN + LOG_SEGMENT_LEN = 36 MiB, so 1 GiB is 34 sessions that each print
#     35 MB (~31 MiB kept each), beside the sessions above; from `daemon start` until `muxagent
#     sessions` lists them all, with the page cache warm (just written) and, when the kernel
#     lets us drop it, cold.
# Events/s a chatty agent appends and streams is bench/deltas.sh.
#
#   bench/daemon-scale.sh [EVENTS] [GIB_SESSIONS]     # defaults 10000 and 34
#
# Runs everything on 127.0.0.1 in a temporary folder and cleans up after itself; bounded (every
# wait has a deadline). Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000}
gib_sessions=${2:-34}

cargo build --release -q --locked -p muxagent -p muxagent-relay --bin muxagent --bin muxagent-relay --example fake-agent
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

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
wait_until() { # description tries command...
  local what=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "timed out waiting for $what" >&2
  exit 1
}
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
relay_url=http://127.0.0.1:$port
"$relay_bin" --listen "127.0.0.1:$port" --data-dir "$work/relay" 2>>"$work/relay.log" &
pids+=("$!")
wait_until "the relay" 600 curl -sf "$relay_url/healthz"

export MUXAGENT_HOSTNAME=bench
machine=$work/machine
controller=$work/controller
mkdir -p "$work/cwd" "$work/fake"
start_daemon() {
  MUXAGENT_HOME=$machine MUXAGENT_CLAUDE=$fake FAKE_AGENT_DELTAS=$events \
    "$mux" daemon start --foreground --relay "$relay_url" >/dev/null 2>>"$work/daemon.log" &
  daemon_pid=$!
  pids+=("$daemon_pid")
}
start_daemon
link_of() { MUXAGENT_HOME=$machine "$mux" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pairing"]["link"])'; }
wait_until "a pairing link" 600 link_of
MUXAGENT_HOME=$controller "$mux" ctl pair "$(link_of)" >/dev/null
online() { MUXAGENT_HOME=$controller "$mux" ctl machines --json | grep -q '"online":true'; }
wait_until "the machine online" 600 online
ctl() { MUXAGENT_HOME=$controller "$mux" ctl "$@"; }
session_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])'; }

# --- resync of a session of $events deltas to a fresh watch ---
small=$(ctl start bench --runtime command --cwd "$work/cwd" --json -- 'echo one' | session_of)
big=$(ctl start bench --runtime claude --cwd "$work/cwd" --prompt "stream" --json | session_of)
idle() { MUXAGENT_HOME=$machine "$mux" sessions --json | grep -Eq "\"output_tokens\": ?$events\b"; }
wait_until "$events deltas logged" 6000 idle
ctl watch bench "$small" --json --until end >/dev/null
resync() { # session until → "seconds events"
  local start end n
  start=$(now)
  n=$(ctl watch bench "$1" --json --until "$2" | wc -l)
  end=$(now)
  echo "$(secs "$start" "$end") $n"
}
small_runs=() big_runs=()
for _ in 1 2 3; do
  small_runs+=("$(resync "$small" end)")
  big_runs+=("$(resync "$big" idle)")
done

# --- VmRSS with 1, 10 and 100 running sessions ---
rss_rows=()
rss_rows+=("0 $(rss_kib "$daemon_pid")")
running=0
for target in 1 10 100; do
  while [ "$running" -lt "$target" ]; do
    ctl start bench --runtime command --cwd "$work/cwd" -- "echo session $running; sleep 900" >/dev/null
    running=$((running + 1))
  done
  count() { [ "$(MUXAGENT_HOME=$machine "$mux" sessions --json | grep -o '"running"' | wc -l)" -ge "$target" ]; }
  wait_until "$target running sessions" 1200 count
  rss_rows+=("$target $(rss_kib "$daemon_pid")")
done
MUXAGENT_HOME=$machine "$mux" daemon stop >/dev/null 2>&1 || kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true

# --- start-up with ~1 GiB of session logs ---
# Sessions start only from a device: the same machine, ~34 MiB of output per session.
start_daemon
wait_until "the machine online again" 600 online
fill_start=$(now)
for _ in $(seq 1 "$gib_sessions"); do
  ctl start bench --runtime command --cwd "$work/cwd" -- 'head -c 26000000 /dev/zero | base64 -w 0' >/dev/null
done
finished() { ! MUXAGENT_HOME=$machine "$mux" sessions --json | grep -q '"running"'; }
wait_until "the sessions to finish writing" 12000 finished
fill_end=$(now)
total=$(MUXAGENT_HOME=$machine "$mux" sessions --json | grep -o '"id"' | wc -l)
MUXAGENT_HOME=$machine "$mux" daemon stop >/dev/null 2>&1 || kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
log_bytes=$(du -sb "$machine/sessions" | cut -f1)
listed() { [ "$(MUXAGENT_HOME=$machine "$mux" sessions --json 2>/dev/null | grep -o '"id"' | wc -l)" -ge "$total" ]; }
startup() {
  local start end rss
  start=$(now)
  start_daemon
  for _ in $(seq 1 60000); do listed && break; sleep 0.01; done
  end=$(now)
  rss=$(rss_kib "$daemon_pid")
  MUXAGENT_HOME=$machine "$mux" daemon stop >/dev/null 2>&1 || kill "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  echo "$(secs "$start" "$end") s, VmRSS then $rss KiB"
}
warm=$(startup)
cold="not measured (cannot drop the page cache here)"
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  cold=$(startup)
fi

echo "resync to a fresh watch (3 runs: seconds, events printed):"
echo "  session of $events deltas: ${big_runs[*]}"
echo "  session of a few events:   ${small_runs[*]}"
echo "daemon VmRSS by running sessions (sessions KiB):"
for row in "${rss_rows[@]}"; do echo "  $row"; done
echo "start-up with ~1 GiB of logs: $total sessions ($gib_sessions of ~34 MiB), $log_bytes bytes in sessions/ (written in $(secs "$fill_start" "$fill_end") s)"
echo "  warm page cache: $warm"
echo "  cold page cache: $cold"
