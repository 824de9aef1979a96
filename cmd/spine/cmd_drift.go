package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/schemas/thread"
)

func newDriftCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Show or reset the drift gate's status per intent kind and route",
		Long: `The drift monitor ('spine run drift', part of 'spine up') compares each
intent kind and route's artifact metrics with a reference window and
publishes the outcome of every window on gate.drift and, as the current
status, on the compacted spine.drift.status. In SPINE_DRIFT_MODE=enforce a
drifted kind and route fails its runs' drift gate until a window passes or
its reference is reset.`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print every kind and route's current drift status, JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runDriftStatus(cmd.Context(), a, cfg)
		},
	}
	reset := &cobra.Command{
		Use:   "reset <kind> <route>",
		Short: "Drop a kind and route's windows: its next samples become the new reference",
		Long: `Write a reset record to spine.drift.samples: the drift monitor drops the
kind and route's reference and current windows, publishes a status that is
not drifted (rule "reset", on gate.drift too), and takes the next
SPINE_DRIFT_WINDOW samples as the new reference. Use it after an intended
change of model, prompt or tool, which stays drifted against the old
reference.`,
		Example: `  spine drift reset summarize baseline`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runDriftReset(cmd.Context(), a, cfg, args[0], args[1])
		},
	}
	cmd.AddCommand(status, reset)
	return cmd
}

func runDriftStatus(ctx context.Context, a *app, cfg *stack.Config) error {
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	st := drift.NewStatuses(append(opts, kgo.ClientID(cfg.ServiceName+"-cli-drift")), pipeline.NewLayout(&cfg.Config), a.log)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := st.WaitReady(wctx); err != nil {
		return err
	}
	all := st.All()
	enc := json.NewEncoder(a.stdout)
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if err := enc.Encode(all[k]); err != nil {
			return err
		}
	}
	return nil
}

func runDriftReset(ctx context.Context, a *app, cfg *stack.Config, kind, route string) error {
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.ClientID(cfg.ServiceName+"-cli-drift"))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	l := pipeline.NewLayout(&cfg.Config)
	r := &kgo.Record{Topic: string(l.DriftSamples()), Key: []byte(thread.DriftKey(kind, route)), Value: drift.AppendSample(nil, drift.Reset(kind, route))}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("write the reset of %s on %s to %s: %w", kind, route, l.DriftSamples(), err)
	}
	fmt.Fprintf(a.stdout, "reset %s on %s: %s[%d]@%d; the next %d samples are its new reference\n", kind, route, r.Topic, r.Partition, r.Offset, cfg.Drift.Window)
	return nil
}
