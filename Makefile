# Spine — the two commands are `make run` and `make test`.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/spine
# The fuzz targets and how long each runs in `make test` (CI keeps it short).
FUZZTIME  ?= 10s

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s ./...

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 $(PKGS)

fmt:
	gofmt -w .

clean:
	rm -rf bin spine-data
