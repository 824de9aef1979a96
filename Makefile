# Spine — the two commands are `make run` and `make test`.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/spine
# How long each fuzz target runs in `make test`: a count of executions, not a
# duration. Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" failure when a -fuzztime duration expires under CPU contention
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
# 100000x takes 5-15s per target on a 2-core machine.
FUZZTIME  ?= 100000x

.PHONY: run build test test-unit fuzz test-kafka kafka-up kafka-down soak soak-kafka bench soak-memory seed-runs lint fmt clean

run: build
	./$(BIN) up

build:
	$(GO) build -o $(BIN) ./cmd/spine

# Every test, race detector on, then each fuzz target for FUZZTIME.
test: test-unit fuzz

test-unit:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

fuzz:
	@set -e; for spec in $$($(GO) run ./deploy/fuzzlist); do \
		pkg=$${spec%%:*}; name=$${spec##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# A real Apache Kafka 4.x broker (jars from Maven Central via deploy/kafka/pom.xml)
# on 127.0.0.1, port KAFKA_PORT if set, else the first free one from 19092.
# kafka-up prints the bootstrap address.
# How many test binaries run at once against the shared real broker.
KAFKA_TEST_P ?= 2

kafka-up:
	@deploy/kafka/start.sh

kafka-down:
	@deploy/kafka/stop.sh

# The whole integration suite against real Apache Kafka: start the broker,
# run every test with KAFKA_BROKERS pointing at it, stop it (also when the
# tests fail or are interrupted). Fails if the broker does not come up: no
# fallback to the embedded broker. The broker also has a SASL_SSL listener
# (KAFKA_SASL_SSL=1, see deploy/kafka/start.sh) whose settings reach the
# tests as KAFKA_SASL_SSL_*: the security tests run there too.
test-kafka:
	@trap 'deploy/kafka/stop.sh' EXIT; trap 'exit 130' INT TERM; \
	bootstrap=$$(KAFKA_SASL_SSL=1 deploy/kafka/start.sh) || { echo "test-kafka: Apache Kafka did not come up" >&2; exit 1; }; \
	set -a; . "$${SPINE_KAFKA_WORK:-$${TMPDIR:-/tmp}/spine-kafka}/sasl_ssl.env"; set +a; \
	echo "test-kafka: running the suite against Apache Kafka at $$bootstrap (SASL_SSL at $$KAFKA_SASL_SSL_BROKERS)"; \
	KAFKA_BROKERS=$$bootstrap $(GO) test -race -count=1 -p $(KAFKA_TEST_P) -timeout 30m $(PKGS)

# The long fault soak (e2e TestSoak; README "Fault soak"): SOAK_DURATION of
# faults on the embedded broker — SOAK_KILLS processor SIGKILLs, SOAK_JOINS
# instances joining then leaving, SOAK_RESTARTS broker restarts, executor
# failure windows — under a steady load, then `spine verify` must find 0
# anomalies. The report (every fault with its time, the counts, the
# checker's result) goes to soak-report.txt. SOAK_SEED replays a schedule.
# `make test` runs the short form (100s, 12 kills, 10 joins, 7 restarts).
SOAK_DURATION ?= 12m
SOAK_KILLS    ?= 60
SOAK_JOINS    ?= 55
SOAK_RESTARTS ?= 36
SOAK_KAFKA_KILLS ?= 12
SOAK_PAUSES   ?= 4
SOAK_SEED     ?= 20261206
SOAK_ENV = SPINE_SOAK_DURATION=$(SOAK_DURATION) SPINE_SOAK_SEED=$(SOAK_SEED) SPINE_SOAK_KILLS=$(SOAK_KILLS) \
	SPINE_SOAK_JOINS=$(SOAK_JOINS) SPINE_SOAK_BROKER_RESTARTS=$(SOAK_RESTARTS) SPINE_SOAK_EXEC_FAULTS=16 \
	SPINE_SOAK_KAFKA_KILLS=$(SOAK_KAFKA_KILLS) SPINE_SOAK_KAFKA_PAUSES=$(SOAK_PAUSES) SPINE_SOAK_REPORT=$(CURDIR)/soak-report.txt

soak:
	$(SOAK_ENV) $(GO) test -race -count=1 -timeout 60m -run '^TestSoak$$' -v ./e2e

# The same on Apache Kafka: the soak starts a broker of its own
# (deploy/kafka/start.sh), kills it with kill -9 SOAK_KAFKA_KILLS times
# and pauses it SOAK_PAUSES times, and stops it at the end.
soak-kafka:
	SPINE_SOAK_KAFKA=1 $(SOAK_ENV) $(GO) test -race -count=1 -timeout 60m -run '^TestSoak$$' -v ./e2e

# Package benchmarks for 3s each; the end-to-end golden path (e2e) runs a
# fixed 10,000 intents per sub-benchmark instead (see e2e/PERFORMANCE.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -run '^$$' -bench GoldenPath -benchtime 10000x -timeout 15m ./e2e

# The memory soak (README "Memory and retention"): `spine loadtest` at
# SOAK_RATE (5000/s) for SOAK_DURATION (30m) against a private embedded stack,
# judged on its resident memory over time; see e2e/scale/soak-memory.sh for
# the settings (a shorter form: make soak-memory SOAK_RATE=1000 SOAK_DURATION=5m
# SOAK_WARMUP=1m SOAK_WINDOW=2m).
soak-memory: build
	SPINE=$(BIN) e2e/scale/soak-memory.sh

# SEED_RUNS golden-path runs (default 1,000,000) into the data directory
# SEED_DIR through the real stack, unpaced (e2e/scale/seed.sh).
SEED_DIR  ?= spine-data-1m
SEED_RUNS ?= 1000000
seed-runs: build
	SPINE=$(BIN) e2e/scale/seed.sh $(SEED_DIR) $(SEED_RUNS)

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 $(PKGS)

fmt:
	gofmt -w .

clean:
	rm -rf bin spine-data spine-data-1m soak-report.txt
