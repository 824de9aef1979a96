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

.PHONY: run build test test-unit fuzz test-kafka kafka-up kafka-down bench lint fmt clean

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
# fallback to the embedded broker.
test-kafka:
	@trap 'deploy/kafka/stop.sh' EXIT; trap 'exit 130' INT TERM; \
	bootstrap=$$(deploy/kafka/start.sh) || { echo "test-kafka: Apache Kafka did not come up" >&2; exit 1; }; \
	echo "test-kafka: running the suite against Apache Kafka at $$bootstrap"; \
	KAFKA_BROKERS=$$bootstrap $(GO) test -race -count=1 -p $(KAFKA_TEST_P) -timeout 30m $(PKGS)

# Package benchmarks for 3s each; the end-to-end golden path (e2e) runs a
# fixed 10,000 intents per sub-benchmark instead (see e2e/PERFORMANCE.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -run '^$$' -bench GoldenPath -benchtime 10000x -timeout 15m ./e2e

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 $(PKGS)

fmt:
	gofmt -w .

clean:
	rm -rf bin spine-data
