#!/usr/bin/env bash
# Starts the broker deploy/kafka/start.sh set up in SPINE_KAFKA_WORK, on the
# data directory it already has: the same config, cluster id, topics and
# logs, nothing formatted. start.sh runs it for the first start; the fault
# soak (e2e/soak_test.go) runs it again after killing the broker with
# kill -9, so the broker recovers its logs as after a crash. It waits until
# the broker serves transactions and prints its bootstrap address on
# stdout. On failure it prints the broker log's tail, kills the process it
# started and exits non-zero; the data stays.
#
# Environment (all optional): SPINE_KAFKA_WORK, KAFKA_HEAP_OPTS,
# KAFKA_TRANSACTION_VERSION, KAFKA_START_TIMEOUT, as for start.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${SPINE_KAFKA_WORK:-${TMPDIR:-/tmp}/spine-kafka}"
heap="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
timeout="${KAFKA_START_TIMEOUT:-120}"
tv="${KAFKA_TRANSACTION_VERSION:-2}"

log() { echo "kafka-up: $*" >&2; }
die() { log "$*"; exit 1; }

props="$work/server.properties"
[ -f "$props" ] && [ -d "$work/data" ] || die "no broker set up in $work: run deploy/kafka/start.sh first"
if [ -f "$work/kafka.pid" ] && kill -0 "$(cat "$work/kafka.pid")" 2>/dev/null &&
	grep -q 'kafka.Kafka' "/proc/$(cat "$work/kafka.pid")/cmdline" 2>/dev/null; then
	die "the broker of $work is running (pid $(cat "$work/kafka.pid"))"
fi
sum="$(sha256sum "$here/pom.xml" | cut -c1-16)"
cpfile="$work/classpath-$sum.txt"
[ -s "$cpfile" ] || die "no classpath in $cpfile: run deploy/kafka/start.sh first"
port="$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$props")"
[ -n "$port" ] || die "no PLAINTEXT listener in $props"

nohup java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
	-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$(cat "$cpfile")" \
	kafka.Kafka "$props" >>"$work/kafka.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$work/kafka.pid"
echo "127.0.0.1:$port" >"$work/bootstrap"

# Wait until it answers: brokers listed, transaction.version finalized, the
# group and transaction coordinators loaded.
if ! (cd "$root" && go run ./deploy/kafka/kafkawait -brokers "127.0.0.1:$port" \
	-timeout "${timeout}s" -pid "$pid" -transaction-version "$tv") >&2; then
	log "broker did not come up; last lines of $work/kafka.log:"
	tail -n 40 "$work/kafka.log" >&2 || true
	kill -KILL "$pid" 2>/dev/null || true
	exit 1
fi
echo "127.0.0.1:$port"
