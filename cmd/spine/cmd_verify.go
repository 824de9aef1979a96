package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/verify"
)

type verifyOpts struct {
	since, until    string
	grace           time.Duration
	projections     bool
	readUncommitted bool
	json            bool
	max             int
}

func newVerifyCmd(a *app) *cobra.Command {
	var o verifyOpts
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the thread, the DLQ and the projections against every invariant; exit 1 on any anomaly",
		Long: `Read the thread (spine.intents, spine.control, spine.dataplane, gate.*), the
artifacts topic and the DLQ with a read_committed consumer, and check:

  lost_intent          each intent started a run or was dead-lettered
  lost_terminal        each run has a terminal outcome, or is in flight within
                       its state's timeout (or SPINE_RUN_DEADLINE) plus --grace
  multiple_terminals   ... and exactly one
  illegal_transition   each run's control events follow the stateflow, in order
  duplicate_event      no event_id twice
  aborted_read         no record of an aborted transaction is visible
  verdict_mismatch     each gate.verdict agrees with its gate events, and each
                       terminal with its verdict
  missing_artifact     each artifact.delivered has its artifact
  bad_dead_letter      each dead letter has a reason and its original bytes
  projection_mismatch  the live projections equal a replay of the thread

Prints each anomaly with its kind and trace id, then a summary table; exits 0
when clean, 1 on any anomaly. --since/--until check only the runs that
started in the window (RFC 3339 times, or a duration before now: 1h). The
projections replay and the checks share one read of the thread
(--no-projections leaves the replay out). The stateflow and deadlines are
the orchestrator's settings (SPINE_EXEC_TIMEOUT, SPINE_GATE_TIMEOUT,
SPINE_RUN_DEADLINE, ...), read from the environment.`,
		Example: `  spine verify
  spine verify --since 1h --no-projections
  spine verify --json > verify.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runVerify(cmd.Context(), a, cfg, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.since, "since", "", "check runs that started at or after this time (RFC 3339, or a duration ago: 30m)")
	fl.StringVar(&o.until, "until", "", "check runs that started before this time (RFC 3339, or a duration ago)")
	fl.DurationVar(&o.grace, "grace", 30*time.Second, "slack on every deadline before a run counts as lost")
	fl.BoolVar(&o.projections, "projections", true, "compare the live projections with a replay of the whole thread")
	fl.BoolVar(&o.readUncommitted, "read-uncommitted", false, "read as a read_uncommitted consumer (shows the aborted_read detector at work; not a check of the stack)")
	fl.BoolVar(&o.json, "json", false, "print the whole report as JSON on stdout")
	fl.IntVar(&o.max, "max", 50, "anomalies to print (0 prints all kept)")
	cmd.Flags().Bool("no-projections", false, "same as --projections=false")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if no, _ := cmd.Flags().GetBool("no-projections"); no {
			o.projections = false
		}
		return nil
	}
	return cmd
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--%s %q: want an RFC 3339 time (2026-12-06T18:00:00Z) or a duration ago (30m)", flag, s)}
	}
	return t, nil
}

func runVerify(ctx context.Context, a *app, cfg *stack.Config, o verifyOpts) error {
	now := time.Now()
	since, err := parseWhen("since", o.since, now)
	if err != nil {
		return err
	}
	until, err := parseWhen("until", o.until, now)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return usageError{fmt.Errorf("--until %s is not after --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))}
	}
	if o.grace < 0 || o.max < 0 {
		return usageError{errors.New("--grace and --max must not be negative")}
	}
	flow, err := orchestrator.NewStateflow(cfg.Orchestrator.States())
	if err != nil {
		return err
	}
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
	srcl, err := newSRClient(cfg, cliRegistryURL(cfg))
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "verify: reading the thread on %v\n", cliBrokers(cfg))
	rep, err := verify.Run(ctx, verify.Config{
		Kafka:  opts,
		Layout: pipeline.NewLayout(&cfg.Config),
		Codec:  codec,
		SchemaText: func(ctx context.Context, id int) (string, error) {
			s, err := srcl.SchemaByID(ctx, id)
			return s.Schema, err
		},
		Legal:           flow.Legal,
		Timeout:         flow.StateTimeout,
		RunDeadline:     cfg.Orchestrator.RunDeadline,
		Grace:           o.grace,
		Since:           since,
		Until:           until,
		Projections:     o.projections,
		ReadUncommitted: o.readUncommitted,
		Logger:          a.log,
	})
	if err != nil {
		return unreachable(err, cfg)
	}
	if o.json {
		if err := printJSON(a.stdout, rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(a.stdout, o.max)
	}
	if !rep.Clean {
		n := 0
		for _, c := range rep.Counts {
			n += c
		}
		return exitCodeError{code: exitError, err: fmt.Errorf("%w: %d", verify.ErrAnomalies, n)}
	}
	return nil
}
