#!/usr/bin/env bash
# Stops the broker started by start.sh (SIGTERM, then SIGKILL after
# KAFKA_STOP_TIMEOUT seconds, default 30) and deletes its data. Stopping
# a broker that is not running succeeds.
set -euo pipefail
work="${SPINE_KAFKA_WORK:-${TMPDIR:-/tmp}/spine-kafka}"
timeout="${KAFKA_STOP_TIMEOUT:-30}"
pidfile="$work/kafka.pid"
if [ ! -f "$pidfile" ]; then
	echo "kafka-down: no broker running from $work" >&2
	exit 0
fi
pid="$(cat "$pidfile")"
# Only signal the pid if it is still the java broker we started.
if kill -0 "$pid" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null; then
	kill -TERM "$pid"
	for _ in $(seq $((timeout * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "kafka-down: broker $pid still running after ${timeout}s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
fi
rm -f "$pidfile" "$work/bootstrap" "$work/sasl_ssl.env"
rm -rf "$work/tls"
rm -rf "$work/data"
echo "kafka-down: stopped broker (pid $pid)" >&2
