#!/usr/bin/env bash
# soak-memory.sh: drive `spine loadtest` against a private embedded stack
# and judge its resident memory over time (the series the load test records
# once a second). Settings (environment, defaults are the full soak):
#   SOAK_RATE=5000  SOAK_DURATION=30m  intents/s and how long to send
#   SOAK_WARMUP=5m  time left out before the first window
#   SOAK_WINDOW=10m length of the first and the last window compared
#   SOAK_OVERHEAD_MIB=3072  stated overhead above the broker budget
#                   (pipeline.MemoryOverhead, which SPINE_MEMORY_LIMIT's
#                   auto value also adds: the stack's soft memory limit is
#                   90 % of budget + overhead; SPINE_MEMORY_LIMIT=off to
#                   soak without it)
#   SPINE_EMBEDDED_MEMORY (default 1GiB) the budget; SPINE (bin/spine)
#   SOAK_OUT (a new temporary directory) where the report goes
# It passes when the peak RSS stays under budget + overhead and the last
# window's maximum is within 10% of the first window's; it prints both, the
# achieved rate, and the largest RSS of each minute, and exits 1 when a criterion fails.
set -euo pipefail
spine=${SPINE:-bin/spine}
rate=${SOAK_RATE:-5000}
duration=${SOAK_DURATION:-30m}
warmup=${SOAK_WARMUP:-5m}
window=${SOAK_WINDOW:-10m}
overhead=${SOAK_OVERHEAD_MIB:-3072}
export SPINE_EMBEDDED_MEMORY=${SPINE_EMBEDDED_MEMORY:-1GiB}
out=${SOAK_OUT:-$(mktemp -d -t spine-soak.XXXXXX)}
mkdir -p "$out"
secs() { awk -v d="$1" 'BEGIN { n = d + 0; u = substr(d, length(d)); if (u == "m") n *= 60; else if (u == "h") n *= 3600; print n }'; }
budget_mib=$(awk -v b="$SPINE_EMBEDDED_MEMORY" 'BEGIN { n = b + 0; if (b ~ /GiB$/) n *= 1024; else if (b ~ /KiB$/) n /= 1024; else if (b ~ /GB$/) n *= 1e9 / 1048576; else if (b ~ /MB$/) n *= 1e6 / 1048576; print int(n) }')
echo "soak: spine loadtest --embedded --rate $rate --duration $duration --drain 30s --raw-records 0 (SPINE_EMBEDDED_MEMORY=$SPINE_EMBEDDED_MEMORY, report in $out)"
"$spine" loadtest --embedded --rate "$rate" --duration "$duration" --drain 30s --raw-records 0 --out "$out" 2>"$out/progress.log" >/dev/null || {
  echo "soak: loadtest failed, see $out/progress.log" >&2; exit 1; }
report=$(ls -t "$out"/loadtest-*.json | head -1)
jq -r --argjson warm "$(secs "$warmup")" --argjson win "$(secs "$window")" --argjson dur "$(secs "$duration")" \
  --argjson budget "$budget_mib" --argjson over "$overhead" '
  def mib: . / 1048576 | floor;
  [.series[] | select(.rss_bytes > 0)] as $s
  | ([$s[] | select(.t_s >= $warm and .t_s < $warm + $win) | .rss_bytes] | max) as $first
  | ([$s[] | select(.t_s > $dur - $win and .t_s <= $dur) | .rss_bytes] | max) as $last
  | ([$s[] | .rss_bytes] | max) as $peak
  | "asked \(.asked_intents_per_s)/s, sent \(.sent_intents_per_s | floor)/s, finished \(.finished_runs_per_s | floor) runs/s, \(.runs_finished) runs finished, \(.runs_unfinished) unfinished",
    "max RSS of each minute (MiB): \([$s | group_by(.t_s / 60 | floor)[] | map(.rss_bytes) | max | mib] | map(tostring) | join(" "))",
    "first window max \($first | mib) MiB (\($warm)s..\($warm + $win)s), last window max \($last | mib) MiB (\($dur - $win)s..\($dur)s): \(($last / $first - 1) * 100 | . * 10 | round / 10)%",
    "peak \($peak | mib) MiB against budget \($budget) MiB + overhead \($over) MiB",
    (if ($last <= $first * 1.1) and ($peak | mib) <= $budget + $over then "PASS" else "FAIL" end)
' "$report" | tee "$out/verdict.txt"
tail -1 "$out/verdict.txt" | grep -q PASS
