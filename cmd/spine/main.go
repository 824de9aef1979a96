// Command spine is the one binary of Spine: the embedded stack (`spine up`),
// each processor on its own (`spine run`), the schema registry, and the
// user-facing tools (produce, consume, schemas, trace, replay, flags,
// loadtest, agents). This file reads the config, builds the logger and wires the
// subcommands; each subcommand lives in cmd_*.go. What the stack is made
// of is built in one place, package stack (cmd/spine/stack): `spine up`
// (cmd_up.go) starts the broker, the topics and the registry, then runs all
// of it; `spine run X` (cmd_run.go) runs the part X of the same builder.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// app carries what every subcommand shares. The config is loaded once, on
// first use, so `spine --help` works whatever the environment says.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	cfg    *stack.Config
	log    *slog.Logger
}

// config loads the configuration from the environment (once) and builds the
// logger it describes.
func (a *app) config(ctx context.Context) (*stack.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	cfg, err := stack.LoadConfig(ctx)
	if err != nil {
		return nil, err
	}
	a.cfg = cfg
	a.log = cfg.NewLogger(os.Stderr)
	return cfg, nil
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "spine",
		Short: "Spine: AI-agent orchestration as one replayable event thread on Kafka",
		Long: `Spine turns AI-agent orchestration into one canonical, replayable event thread
on Kafka: intents in, one Avro RuntimeEvent per state change, gate outcomes out.

Start the whole embedded stack with 'spine up'. Configuration comes from the
environment (KAFKA_BROKERS, SCHEMA_REGISTRY_URL, SPINE_*); see the README.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newUpCmd(a),
		newVersionCmd(a),
		newProduceCmd(a),
		newConsumeCmd(a),
		newSchemasCmd(a),
		newRegistryCmd(a),
		newTraceCmd(a),
		newArtifactsCmd(a),
		newReplayCmd(a),
		newVerifyCmd(a),
		newFlagsCmd(a),
		newDriftCmd(a),
		newPolicyCmd(a),
		newLoadtestCmd(a),
		newRunCmd(a),
		newAgentsCmd(a),
		newStateflowCmd(a),
	)
	return root
}

// execute runs the CLI and returns the process exit code.
func execute(ctx context.Context, a *app, args []string) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "spine: %v\n", err)
	var ue usageError
	var ce *pipeline.ConfigError
	switch {
	case errors.As(err, &ue), isUsage(err):
		if cmd != nil {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	case errors.As(err, &ce):
		return exitUsage
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitError
}

// exitCodeError carries a specific exit code (for example `schemas check`
// exits 1 on an incompatible contract).
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

// isUsage recognizes cobra's own usage errors (unknown command, bad args).
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	code := execute(ctx, a, os.Args[1:])
	stop()
	os.Exit(code)
}
