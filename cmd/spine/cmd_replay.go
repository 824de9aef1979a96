package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
)

func newReplayCmd(a *app) *cobra.Command {
	var (
		window   time.Duration
		maxDiffs int
		asJSON   bool
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild every projection from the thread and diff with the live ones",
		Long: `Rebuild every projection (runs, golden, gates, artifacts) from the thread,
from offset zero, into a fresh in-memory namespace, and compare it with the
live spine.proj.* topics. Replay folds the recorded events only: it calls no
executor, model or tool.

It folds each thread partition up to the offsets the live projections have
committed, read at a moment they hold still, so it compares like with like
while the stack runs; a partition that keeps moving through every attempt
(load still running) is left out of the comparison and named. It works one
partition number at a time, so it holds one partition's cells. Progress goes
to stderr. Prints "equal" and exits 0, or prints every differing cell with
its differing fields and exits 1.`,
		Example: `  spine replay
  spine replay --json > replay.json
  spine replay --max-diffs 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window <= 0 {
				return usageError{fmt.Errorf("--window %s: want a positive duration", window)}
			}
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runReplay(cmd.Context(), a, cfg, replayOpts{window: window, maxDiffs: maxDiffs, json: asJSON, quiet: quiet})
		},
	}
	cmd.Flags().DurationVar(&window, "window", projections.DefaultWindow, "aggregate window width; must equal the live projections' (they use the default)")
	cmd.Flags().IntVar(&maxDiffs, "max-diffs", 20, "differing cells to print (0 prints all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the whole report as JSON on stdout")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print no progress")
	return cmd
}

type replayOpts struct {
	window   time.Duration
	maxDiffs int
	json     bool
	quiet    bool
}

func runReplay(ctx context.Context, a *app, cfg *stack.Config, o replayOpts) error {
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	if err := checkRegistry(ctx, cfg); err != nil {
		return err
	}
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	var progress io.Writer = a.stderr
	if o.quiet {
		progress = nil
	}
	fmt.Fprintf(a.stderr, "replay: rebuilding projections from the thread on %v\n", cliBrokers(cfg))
	rep, err := projections.Replay(ctx, projections.ReplayConfig{
		Kafka:    opts,
		Layout:   pipeline.NewLayout(&cfg.Config),
		Codec:    codec,
		Window:   o.window,
		Progress: progress,
		Logger:   a.log,
	})
	if err != nil {
		return unreachable(err, cfg)
	}
	if o.json {
		if err := printJSON(a.stdout, rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(a.stdout, o.maxDiffs)
	}
	if !rep.Equal {
		return exitCodeError{code: exitError, err: fmt.Errorf("replay differs from the live projections in %d cells", len(rep.Diffs))}
	}
	return nil
}
