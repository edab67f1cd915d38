#!/usr/bin/env bash
# Measures what the "CPU-bound handler" slide shows: each server in echo mode
# with --work 1000 (1 ms of CPU per frame); a heavy client keeps 8 frames in
# flight while a light one times 200 small round trips (build/bench/demo_tool
# latency). Three rounds; slides/figures.py draws the medians.
#
#   slides/measure.sh > slides/data/cpu-bound.txt
set -euo pipefail
cd "$(dirname "$0")/.."
tool=build/bench/demo_tool
[ -x "$tool" ] || { echo "build first: $tool is missing" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {
    local label=$1 pid port="" i line
    shift
    "$@" --port 0 --echo --work 1000 >"$out" 2>/dev/null &
    pid=$!
    for i in $(seq 50); do
        port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    line=$("$tool" latency --port "$port" --frames 200 --window 8 || true)
    echo "$label|$line|$(cut -d' ' -f1-3 /proc/loadavg)"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}
echo "# demo_tool latency --frames 200 --window 8 against each server --echo --work 1000 (1 ms of CPU per frame)"
echo "# label|demo_tool's line|load average"
for round in 1 2 3; do
    run "01 threads" build/01_blocking/server --mode threads
    run "02 select" build/02_select/server
    run "03 libuv" build/03_libuv_callbacks/server
    run "03 --offload" build/03_libuv_callbacks/server --offload
    run "04 coro" build/04_coroutines/server
    run "04 --offload" build/04_coroutines/server --offload
done
