#!/usr/bin/env bash
# Measures the relay's resident memory (VmRSS) while it holds N idle, logged-in connections on
# loopback, plain ws and then wss, and prints the total and the cost per connection.
#
#   relay/bench/idle-rss.sh [N]        (default N = 10000; MODES="ws" or "wss" to run one)
#
# Both the relay and the load client need a descriptor limit above N (the script raises the
# soft limit to the hard one). Builds in release mode, runs everything on 127.0.0.1, and cleans
# up after itself. Not part of .ci/run.
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/../.."

ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((N + 512)) ]; then
  echo "need a descriptor limit above $((N + 512)); the hard limit is $(ulimit -Hn)" >&2
  exit 1
fi

cargo build --release -q -p muxagent-relay --bin muxagent-relay --example load
relay_bin=target/release/muxagent-relay
load_bin=target/release/examples/load

work=$(mktemp -d)
relay_pid=""
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

wait_for() { # file pattern seconds
  for _ in $(seq 1 $(($3 * 10))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

measure() { # mode
  local mode=$1 scheme=ws tls_args=() root_args=()
  if [ "$mode" = wss ]; then
    "$load_bin" gen-cert "$work"
    scheme=wss
    tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    root_args=(--root "$work/cert.pem")
  fi
  rm -rf "$work/data"
  "$relay_bin" --listen 127.0.0.1:0 --data-dir "$work/data" --threads 1 \
    --max-connections-per-prefix $((N + 100)) --max-connections $((N + 100)) \
    --max-unauthenticated-connections $((N + 100)) "${tls_args[@]}" \
    >/dev/null 2>"$work/relay.log" </dev/null &
  relay_pid=$!
  wait_for "$work/relay.log" "listening on" 20
  local addr
  addr=$(sed -n 's/.*listening on https\{0,1\}:\/\/\([^ ]*\).*/\1/p' "$work/relay.log" | head -n1)
  local host=$addr
  [ "$mode" = wss ] && host="localhost:${addr##*:}"
  sleep 1
  local before
  before=$(rss_kib "$relay_pid")
  "$load_bin" --url "$scheme://$host" --count "$N" "${root_args[@]}" >"$work/load.log" 2>&1 </dev/null &
  load_pid=$!
  wait_for "$work/load.log" "holding" 300
  sleep 3 # let the allocator settle after the login burst
  local after
  after=$(rss_kib "$relay_pid")
  local delta=$((after - before))
  printf '%-4s relay VmRSS: %6d KiB idle, %7d KiB with %d connections: %6d KiB more, %6.1f KiB (%5d bytes) per connection\n' \
    "$mode" "$before" "$after" "$N" "$delta" "$(awk -v d="$delta" -v n="$N" 'BEGIN { print d / n }')" $((delta * 1024 / N))
  grep -m1 holding "$work/load.log" | sed 's/^/     load: /'
  kill "$load_pid"; wait "$load_pid" 2>/dev/null || true; load_pid=""
  kill "$relay_pid"; wait "$relay_pid" 2>/dev/null || true; relay_pid=""
}

for mode in ${MODES:-ws wss}; do
  measure "$mode"
done
