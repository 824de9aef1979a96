#!/usr/bin/env bash
# measure.sh DIR [ID...]: start `spine up` on the data directory DIR (as
# seed.sh left it) and time, from the start of the process: /healthz
# answering, the projections view ready ({"ready": true} at
# /v1/projections/status), a new run's end (one intent produced once
# /healthz answers: spine_runs_total counts it) and that run in the view
# (GET /v1/runs/{id}?wait=60s). Then, for
# each ID (default: an early, a middle and a late run of 1,000,000 over 24h;
# the first 24h-old runs are past the thread's retention), three
# `spine trace ID` (wall time, and what it read) and five
# `GET /v1/runs/ID` (curl's time_total). Stops the stack (SIGINT).
# Environment as seed.sh (SPINE, SPINE_EMBEDDED_MEMORY: give the one the
# directory was seeded with, 16GiB by default, or the budget re-sizes its
# topics; ports).
set -euo pipefail
dir=${1:?usage: measure.sh DIR [ID...]}
shift
ids=("$@")
# Default: the ids gen wrote to DIR/trace-ids (an early, a middle and a late
# run), else those of its fmt form m-%07d.
if [ ${#ids[@]} -eq 0 ]; then
  if [ -s "$dir/trace-ids" ]; then mapfile -t ids <"$dir/trace-ids"; else ids=(m-0050000 m-0500000 m-0999990); fi
fi
spine=${SPINE:-bin/spine}
export SPINE_DATA_DIR=$dir
export SPINE_EMBEDDED_MEMORY=${SPINE_EMBEDDED_MEMORY:-16GiB}
export SPINE_KAFKA_PORT=${SPINE_KAFKA_PORT:-29392}
export SPINE_HTTP_ADDR=${SPINE_HTTP_ADDR:-127.0.0.1:28380}
export SPINE_REGISTRY_ADDR=${SPINE_REGISTRY_ADDR:-127.0.0.1:28381}
export SPINE_PPROF=${SPINE_PPROF:-true}
api=http://$SPINE_HTTP_ADDR
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | awk '{printf "%.2fs", $1}'; }

t0=$(now)
"$spine" up >"$dir/measure-up.log" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
until curl -sf "$api/healthz" >/dev/null; do
  kill -0 $up 2>/dev/null || { echo "spine up exited; see $dir/measure-up.log" >&2; exit 1; }
  sleep 0.05
done
echo "healthz after $(since "$t0")"
ended() { curl -sf "$api/metrics" | awk '/^spine_runs_total/ {s += $NF} END {printf "%d", s}'; }
base=$(ended)
probe=probe-$(date +%s%N)
"$spine" produce -q --input "a run after the restart" --trace-id "$probe" >/dev/null 2>&1
(until [ "$(ended)" -gt "$base" ]; do sleep 0.05; done; echo "new run $probe ended (spine_runs_total) after $(since "$t0")") &
ran=$!
(curl -sf "$api/v1/runs/$probe?wait=60s" | grep -q '"terminal": *true' && echo "new run $probe in the view after $(since "$t0")") &
inview=$!
until curl -sf "$api/v1/projections/status" | grep -q '"ready": *true'; do sleep 0.05; done
echo "view ready after $(since "$t0")"
wait $ran
wait $inview || echo "new run $probe not in the view within 60s of its intent"
awk '/VmRSS/ {printf "RSS %d MB\n", $2/1024}' /proc/$up/status
for id in "${ids[@]}"; do
  for k in 1 2 3; do
    s=$(now)
    read=$("$spine" trace "$id" 2>&1 >/dev/null | sed -n "s/^\(read [^:]*\):.*/\1/p; /^spine:/p" || true)
    echo "trace $id: $(since "$s") ($read)"
  done
  for k in 1 2 3 4 5; do
    curl -s -o /dev/null -w "GET /v1/runs/$id: %{http_code} %{time_total}s\n" "$api/v1/runs/$id"
  done
done
