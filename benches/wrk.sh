#!/usr/bin/env bash
# The load benchmark's embedded and ceiling servers under wrk (Debian's `wrk` package), as a
# second opinion on the built-in client: each mode gets a fresh server, ROUNDS rounds of
# SECONDS each at CONNECTIONS connections, modes alternating.
#   benches/wrk.sh [CONNECTIONS] [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${1:-256}" seconds="${2:-20}" rounds="${3:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --bin landfall --bench load --quiet
bench=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "load"][0])')
port=18390
serve() {
  local mode="$1" data
  data=$(mktemp -d)
  case "$mode" in
    embedded) target/release/landfall --host 127.0.0.1 --port "$port" --data-dir "$data" --log-format json >/dev/null 2>&1 & ;;
    ceiling) "$bench" --serve-ceiling --bench --host 127.0.0.1 --port "$port" --data-dir "$data" --log-format json >/dev/null 2>&1 & ;;
  esac
  echo $!
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
}
echo "| round | mode | connections | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  modes="embedded ceiling"
  [ $((round % 2)) -eq 0 ] && modes="ceiling embedded"
  for mode in $modes; do
    pid=$(serve "$mode")
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s benches/push.lua "http://127.0.0.1:$port")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
    echo "| $round | $mode | $connections | $rate | $p50 | $p99 |${non2xx:+ non-2xx: $non2xx}"
  done
done
