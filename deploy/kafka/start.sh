#!/usr/bin/env bash
# Starts one Apache Kafka 4.x node (combined broker + KRaft controller) on a
# loopback port for the real-Kafka test suite, waits until it serves
# transactions, and prints its bootstrap address on stdout.
#
# The broker's jars come from Maven Central through deploy/kafka/pom.xml into
# the local Maven cache (~/.m2); the classpath is cached per pom.xml, so a
# second start asks Maven nothing and takes seconds.
#
# Environment (all optional):
#   KAFKA_PORT          client port on 127.0.0.1 (the controller listens
#                       on KAFKA_PORT+1); unset: the first free pair from
#                       19092 on
#   SPINE_KAFKA_WORK    work dir: data, logs, pid, config (default
#                       ${TMPDIR:-/tmp}/spine-kafka)
#   KAFKA_HEAP_OPTS     JVM heap (default -Xms256m -Xmx768m)
#   KAFKA_TRANSACTION_VERSION  transaction.version feature (default 2,
#                       KIP-890's server-side transaction defence; 1 or 0
#                       to compare with older brokers)
#   KAFKA_START_TIMEOUT seconds to wait for the broker (default 120)
#   MVN                 Maven command and options (default mvn), e.g.
#                       "mvn -Dmaven.repo.local=/tmp/m2" for another cache
#
# Exit status is non-zero, with the broker log's tail on stderr, when the
# broker does not come up: callers never fall back to the embedded broker.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-19092}"
cport=$((port + 1))
work="${SPINE_KAFKA_WORK:-${TMPDIR:-/tmp}/spine-kafka}"
heap="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
timeout="${KAFKA_START_TIMEOUT:-120}"
tv="${KAFKA_TRANSACTION_VERSION:-2}"
read -ra mvn <<<"${MVN:-mvn}"

log() { echo "kafka-up: $*" >&2; }
die() { log "$*"; exit 1; }

command -v java >/dev/null || die "java not found: Kafka 4 needs Java 17 or newer on PATH"
jv="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[ "${jv%%.*}" -ge 17 ] 2>/dev/null || die "java $jv found: Kafka 4 needs Java 17 or newer"

mkdir -p "$work"
if [ -f "$work/kafka.pid" ] && kill -0 "$(cat "$work/kafka.pid")" 2>/dev/null; then
	die "a broker started from $work is already running (pid $(cat "$work/kafka.pid")); run deploy/kafka/stop.sh first"
fi
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${KAFKA_PORT:-}" ]; then
	for p in "$port" "$cport"; do
		in_use "$p" && die "127.0.0.1:$p is already in use: stop whatever listens there or set another KAFKA_PORT"
	done
else
	# No port asked for: take the first free pair from 19092 on.
	for _ in $(seq 20); do
		in_use "$port" || in_use "$cport" || break
		port=$((port + 2))
		cport=$((port + 1))
	done
	in_use "$port" && die "no free port pair in 19092..$port: set KAFKA_PORT"
	in_use "$cport" && die "no free port pair in 19092..$port: set KAFKA_PORT"
fi

# 1. Classpath: resolve the pinned jars into ~/.m2 once per pom.xml.
sum="$(sha256sum "$here/pom.xml" | cut -c1-16)"
cpfile="$work/classpath-$sum.txt"
if [ ! -s "$cpfile" ] || ! tr ':' '\n' <"$cpfile" | while read -r j; do [ -f "$j" ] || exit 1; done; then
	command -v "${mvn[0]}" >/dev/null || die "${mvn[0]} not found: Maven fetches the Kafka jars"
	log "resolving the Apache Kafka jars with Maven (downloaded into ~/.m2 unless already there)"
	if ! "${mvn[@]}" -B -q -f "$here/pom.xml" dependency:build-classpath \
		-Dmdep.includeScope=runtime -Dmdep.outputFile="$cpfile.tmp" >"$work/mvn.log" 2>&1; then
		tail -n 40 "$work/mvn.log" >&2
		die "maven could not resolve the Kafka jars (log: $work/mvn.log)"
	fi
	mv "$cpfile.tmp" "$cpfile"
fi
cp="$(cat "$cpfile")"

# 2. Config: one node, broker and controller, every replication factor 1.
data="$work/data"
rm -rf "$data"
mkdir -p "$data"
cat >"$work/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
transaction.max.timeout.ms=900000
auto.create.topics.enable=false
delete.topic.enable=true
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=5000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
PROPS

jvm=(java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
	-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$cp")

# 3. Format KRaft storage with a fresh cluster id and transaction.version
#    (2: KIP-890 server-side defence against hanging transactions).
cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
if ! "${jvm[@]}" kafka.tools.StorageTool format --config "$work/server.properties" \
	--cluster-id "$cluster_id" --feature transaction.version="$tv" >"$work/format.log" 2>&1; then
	cat "$work/format.log" >&2
	die "formatting KRaft storage failed"
fi

# 4. Start the node in the background, detached from this shell.
: >"$work/kafka.log"
nohup "${jvm[@]}" kafka.Kafka "$work/server.properties" >>"$work/kafka.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$work/kafka.pid"
echo "127.0.0.1:$port" >"$work/bootstrap"

# 5. Wait until it answers: brokers listed, transaction.version finalized,
#    the group and transaction coordinators loaded.
if ! (cd "$root" && go run ./deploy/kafka/kafkawait -brokers "127.0.0.1:$port" \
	-timeout "${timeout}s" -pid "$pid" -transaction-version "$tv") >&2; then
	log "broker did not come up; last lines of $work/kafka.log:"
	tail -n 40 "$work/kafka.log" >&2 || true
	"$here/stop.sh" >&2 || true
	exit 1
fi
log "Apache Kafka $(tr ':' '\n' <"$cpfile" | sed -n 's|.*/kafka_2.13-\(.*\)\.jar$|\1|p') up (pid $pid, data $data)"
echo "127.0.0.1:$port"
