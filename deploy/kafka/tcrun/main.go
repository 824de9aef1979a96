//go:build testcontainers

// Command tcrun runs Spine's test suite against a Kafka broker started by
// testcontainers-go, for machines with a Docker engine (a laptop; CI here
// has none and uses `make test-kafka` instead):
//
//	go run -tags testcontainers ./deploy/kafka/tcrun            # go test -race ./...
//	go run -tags testcontainers ./deploy/kafka/tcrun -- -run TestTransactions ./pipeline/...
//
// It starts confluentinc/confluent-local (the image testcontainers-go's
// kafka module v0.40.0 supports), runs `go test -race -count=1` with the
// given arguments and KAFKA_BROKERS set to the container, and removes the
// container afterwards. Without an engine it exits 1 saying so. The build
// tag keeps the Docker client out of `go build ./...`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
)

const image = "confluentinc/confluent-local:7.5.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcrun:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string) (int, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		args = []string{"./..."}
	}
	if err := dockerEngine(ctx); err != nil {
		return 1, fmt.Errorf("no Docker engine, so no testcontainers Kafka (%v); without Docker run `make test-kafka`", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ctr, err := tckafka.Run(startCtx, image, tckafka.WithClusterID("spine-tcrun"))
	defer func() {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
	}()
	if err != nil {
		return 1, fmt.Errorf("start %s (is a Docker engine running?): %w", image, err)
	}
	brokers, err := ctr.Brokers(startCtx)
	if err != nil {
		return 1, fmt.Errorf("container brokers: %w", err)
	}
	fmt.Fprintf(os.Stderr, "tcrun: Kafka (%s) at %s\n", image, strings.Join(brokers, ","))

	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-race", "-count=1"}, args...)...)
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(brokers, ","))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), nil
		}
		return 1, err
	}
	return 0, nil
}

// dockerEngine reports why no Docker engine can be used, or nil; it turns
// testcontainers' panic without an engine into an error.
func dockerEngine(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker provider panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := testcontainers.ProviderDocker.GetProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Health(ctx)
}
