package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func newTraceCmd(a *app) *cobra.Command {
	var format, api string
	var scan bool
	cmd := &cobra.Command{
		Use:   "trace <trace_id>",
		Short: "Print one run's timeline from the thread",
		Long: `Print the run's whole story as the thread recorded it, in time order, reading
only what the run can be in: on every thread topic (intents, control,
dataplane, gate.*) and the DLQ, the one partition its trace id hashes to (the
producers' murmur2), from the offset of the run's start to that of its end.
The start and end come from the projections view (GET /v1/runs/{id} on --api,
default SPINE_HTTP_ADDR). A run the view does not hold (it keeps the latest
SPINE_VIEW_MAX_RUNS) is read from the time in its trace id: ids Spine mints
(spine produce, HTTP ingress, the load test) start with the Unix time in
seconds, as AWS X-Ray's do. Otherwise, each partition is read from its start.
Without an end, the read stops once the run's terminal event is behind it.
What was read is said on stderr.`,
		Example: `  spine trace 4bf92f3577b34da6a3ce929d0e0e4736
  spine trace 4bf92f3577b34da6a3ce929d0e0e4736 -f json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "text" {
				return usageError{fmt.Errorf("--format %q: want json or text", format)}
			}
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			if scan {
				api = ""
			} else if api == "" {
				api = localURL(cfg, cfg.HTTPAddr)
			}
			return runTrace(cmd.Context(), a, cfg, args[0], format, api)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "text", "output format: text or json")
	cmd.Flags().StringVar(&api, "api", "", "projections API that knows the run's start and end (default http://localhost plus SPINE_HTTP_ADDR's port)")
	cmd.Flags().BoolVar(&scan, "scan", false, "do not ask the projections API: read the run's partitions from their start")
	return cmd
}

func runTrace(ctx context.Context, a *app, cfg *stack.Config, traceID, format, api string) error {
	layout := pipeline.NewLayout(&cfg.Config)
	topics := []string{string(layout.DLQ())}
	for _, t := range layout.ThreadTopics() {
		topics = append(topics, string(t))
	}
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	win := runWindow{Source: "--scan"}
	if api != "" {
		if win = lookupRun(ctx, api, traceID); win.From.IsZero() {
			win = idWindow(traceID, time.Now(), win.Source)
		}
	}
	decode := func(r *kgo.Record) consumedRecord { return decodeRecord(ctx, codec, r) }
	outs, read, err := readRun(ctx, opts, topics, string(layout.Intents()), traceID, win, decode)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, read)
	if len(outs) == 0 && win.Lookback > 0 {
		// The id's first digits were a time by chance (an id Spine did
		// not mint): read from the start.
		win = runWindow{Source: "nothing of the run from the time in its id"}
		if outs, read, err = readRun(ctx, opts, topics, string(layout.Intents()), traceID, win, decode); err != nil {
			return err
		}
		fmt.Fprintln(a.stderr, read)
	}
	if len(outs) == 0 {
		return fmt.Errorf("no record of trace %s on %d thread topics (check the id, SPINE_TOPIC_PREFIX and KAFKA_BROKERS)", traceID, len(topics))
	}
	// Timestamps have millisecond resolution: within one millisecond, order
	// by where the event stands on the golden path.
	sort.SliceStable(outs, func(i, j int) bool {
		ti, tj := eventTime(outs[i]), eventTime(outs[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return pathRank(outs[i]) < pathRank(outs[j])
	})
	if format == "json" {
		enc := json.NewEncoder(a.stdout)
		for _, o := range outs {
			if err := enc.Encode(o); err != nil {
				return err
			}
		}
		return nil
	}
	t0 := eventTime(outs[0])
	fmt.Fprintf(a.stdout, "trace %s: %d records\n", traceID, len(outs))
	for _, o := range outs {
		fmt.Fprintf(a.stdout, "  %+8.1fms  %-18s %s\n", float64(eventTime(o).Sub(t0).Microseconds())/1000, o.Topic, describe(o.Value))
	}
	return nil
}

// pathRank orders events of the same millisecond causally.
func pathRank(r consumedRecord) int {
	switch v := r.Value.(type) {
	case *schemas.Intent:
		return 0
	case *schemas.RuntimeEvent:
		switch v.EventType {
		case thread.IntentReceived:
			return 1
		case thread.RunRouted, thread.RunQueued, thread.RunDequeued:
			return 2
		case thread.RunDispatch:
			return 3
		case thread.DataplaneDispatched:
			return 4
		case thread.DataplaneStarted:
			return 5
		case thread.ArtifactDelivered, thread.DataplaneFailed:
			return 6
		case thread.RunExecuting, thread.RunDelivered, thread.RunGating, thread.RunRetryScheduled, thread.RunFallback:
			return 7
		case thread.GatePassed, thread.GateFailed:
			return 8
		case thread.GateVerdict:
			return 9
		case thread.RunCompleted, thread.RunRejected, thread.RunFailed, thread.RunTimedOut:
			return 11
		}
		return 10
	}
	return 12 // dead letters and undecodable records last
}

// eventTime is the event's own timestamp when decoded, else the record's.
func eventTime(r consumedRecord) time.Time {
	switch v := r.Value.(type) {
	case *schemas.RuntimeEvent:
		return v.Timestamp
	case *schemas.Intent:
		return v.Timestamp
	}
	return time.UnixMilli(r.Timestamp)
}
