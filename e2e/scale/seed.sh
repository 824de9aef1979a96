#!/usr/bin/env bash
# seed.sh DIR N [SPAN]: a data directory DIR holding N golden-path runs
# spread over SPAN (default 24h) ending now, ready for `spine up`:
#  1. `spine up` on DIR (fresh): topics, schemas and groups; stopped
#     before any run (the thread's timestamps must grow with its offsets);
#  2. e2e/scale/gen writes the N runs straight into DIR: thread records
#     (loadtest/threadgen), their projection cells, and every group's
#     offsets moved past them (see its doc).
# Environment: SPINE (binary, default bin/spine), SPINE_EMBEDDED_MEMORY
# (default 16GiB: retention for 1,000,000 runs), ports SPINE_KAFKA_PORT /
# SPINE_HTTP_ADDR / SPINE_REGISTRY_ADDR (defaults 29392, 127.0.0.1:28380,
# 127.0.0.1:28381), SEED_TX=1 (the thread and cells in transactions, as
# the processors write them, for `spine verify` to judge; their markers
# carry the time they are written, so lookups by time land on them: leave
# it off for `spine trace` and restarts). Needs curl.
set -euo pipefail
dir=${1:?usage: seed.sh DIR N [SPAN]}
n=${2:?usage: seed.sh DIR N [SPAN]}
span=${3:-24h}
spine=${SPINE:-bin/spine}
export SPINE_DATA_DIR=$dir
export SPINE_EMBEDDED_MEMORY=${SPINE_EMBEDDED_MEMORY:-16GiB}
export SPINE_KAFKA_PORT=${SPINE_KAFKA_PORT:-29392}
export SPINE_HTTP_ADDR=${SPINE_HTTP_ADDR:-127.0.0.1:28380}
export SPINE_REGISTRY_ADDR=${SPINE_REGISTRY_ADDR:-127.0.0.1:28381}
api=http://$SPINE_HTTP_ADDR
[ ! -e "$dir/kafka" ] || { echo "$dir already holds a stack: give a new directory" >&2; exit 1; }
mkdir -p "$dir"

"$spine" up >"$dir/seed-up.log" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
until curl -sf "$api/healthz" >/dev/null; do
  kill -0 $up 2>/dev/null || { echo "spine up exited; see $dir/seed-up.log" >&2; exit 1; }
  sleep 0.5
done
sleep 5 # every processor joins its group
kill -INT $up; wait $up || true
trap - EXIT

start=$(date +%s)
go run ./e2e/scale/gen -dir "$dir" -runs "$n" -span "$span" ${SEED_TX:+-tx}
echo "seeded $n runs over $span into $dir in $(( $(date +%s) - start ))s ($(du -sh "$dir" | cut -f1))"
