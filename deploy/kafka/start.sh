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
#   KAFKA_SASL_SSL      1: a second client listener, SASL_SSL on
#                       127.0.0.1:KAFKA_PORT+2 (SCRAM-SHA-512 over TLS with
#                       a certificate made by deploy/kafka/kafkacerts), and
#                       the StandardAuthorizer on: the SCRAM superuser
#                       "admin" (random password) and the PLAINTEXT
#                       listener's ANONYMOUS are super users, any other
#                       principal gets only what ACLs allow. The settings a
#                       client needs are written to $SPINE_KAFKA_WORK/
#                       sasl_ssl.env (KAFKA_SASL_SSL_BROKERS,
#                       KAFKA_SASL_SSL_CA_FILE, KAFKA_SASL_SSL_ADMIN,
#                       KAFKA_SASL_SSL_ADMIN_PASSWORD). Default 0.
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
sport=$((port + 2))
work="${SPINE_KAFKA_WORK:-${TMPDIR:-/tmp}/spine-kafka}"
heap="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
timeout="${KAFKA_START_TIMEOUT:-120}"
tv="${KAFKA_TRANSACTION_VERSION:-2}"
sasl_ssl="${KAFKA_SASL_SSL:-0}"
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
	for p in "$port" "$cport" $([ "$sasl_ssl" = 1 ] && echo "$sport"); do
		in_use "$p" && die "127.0.0.1:$p is already in use: stop whatever listens there or set another KAFKA_PORT"
	done
else
	# No port asked for: take the first free pair (triple with
	# KAFKA_SASL_SSL=1) from 19092 on.
	busy() { in_use "$port" || in_use "$cport" || { [ "$sasl_ssl" = 1 ] && in_use "$sport"; }; }
	for _ in $(seq 20); do
		busy || break
		port=$((port + 3))
		cport=$((port + 1))
		sport=$((port + 2))
	done
	busy && die "no free ports in 19092..$sport: set KAFKA_PORT"
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
listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
advertised="PLAINTEXT://127.0.0.1:$port"
protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
scram=()
rm -f "$work/sasl_ssl.env"
if [ "$sasl_ssl" = 1 ]; then
	# A CA and a server certificate made now, a random admin password.
	(cd "$root" && go run ./deploy/kafka/kafkacerts -dir "$work/tls") || die "making the SASL_SSL certificates failed"
	admin_pass="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
	listeners="$listeners,SASL_SSL://127.0.0.1:$sport"
	advertised="$advertised,SASL_SSL://127.0.0.1:$sport"
	protocols="$protocols,SASL_SSL:SASL_SSL"
	scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pass]")
	umask 077
	cat >"$work/sasl_ssl.env" <<ENV
KAFKA_SASL_SSL_BROKERS=127.0.0.1:$sport
KAFKA_SASL_SSL_CA_FILE=$work/tls/ca.pem
KAFKA_SASL_SSL_ADMIN=admin
KAFKA_SASL_SSL_ADMIN_PASSWORD=$admin_pass
ENV
	umask 022
fi
cat >"$work/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
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
if [ "$sasl_ssl" = 1 ]; then
	cat >>"$work/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$work/tls/server.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
PROPS
fi

jvm=(java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
	-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$cp")

# 3. Format KRaft storage with a fresh cluster id and transaction.version
#    (2: KIP-890 server-side defence against hanging transactions).
#    The id is 16 random bytes in URL-safe base64, as Kafka's own
#    random-uuid prints it; like Kafka's Uuid.randomUuid it never begins
#    with '-', which the tool's argument parser would take for an option
#    (one id in 64 did, and formatting failed).
cluster_id="-"
while [ "${cluster_id#-}" != "$cluster_id" ]; do
	cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
done
if ! "${jvm[@]}" kafka.tools.StorageTool format --config "$work/server.properties" \
	--cluster-id="$cluster_id" --feature transaction.version="$tv" "${scram[@]}" >"$work/format.log" 2>&1; then
	cat "$work/format.log" >&2
	die "formatting KRaft storage failed"
fi

# 4. Start the node in the background, detached from this shell, and wait
#    until it answers (deploy/kafka/restart.sh: the same start on an
#    existing data directory, after a crash).
: >"$work/kafka.log"
if ! KAFKA_HEAP_OPTS="$heap" KAFKA_TRANSACTION_VERSION="$tv" KAFKA_START_TIMEOUT="$timeout" SPINE_KAFKA_WORK="$work" \
	"$here/restart.sh" >/dev/null; then
	"$here/stop.sh" >&2 || true
	exit 1
fi
pid="$(cat "$work/kafka.pid")"
[ "$sasl_ssl" = 1 ] && log "SASL_SSL listener on 127.0.0.1:$sport (SCRAM-SHA-512, CA $work/tls/ca.pem); client settings in $work/sasl_ssl.env"
log "Apache Kafka $(tr ':' '\n' <"$cpfile" | sed -n 's|.*/kafka_2.13-\(.*\)\.jar$|\1|p') up (pid $pid, data $data)"
echo "127.0.0.1:$port"
