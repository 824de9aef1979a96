package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func newTraceCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "trace <trace_id>",
		Short: "Print one run's timeline from the thread",
		Long: `Read every thread topic (intents, control, dataplane, gate.*) and the DLQ up
to their current end, keep the records keyed by the trace id, and print them
in time order: the run's whole story as the thread recorded it.`,
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
			return runTrace(cmd.Context(), a, cfg, args[0], format)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "text", "output format: text or json")
	return cmd
}

func runTrace(ctx context.Context, a *app, cfg *stack.Config, traceID, format string) error {
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
	recs, err := readKey(ctx, opts, topics, []byte(traceID))
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("no record of trace %s on %d thread topics (check the id, SPINE_TOPIC_PREFIX and KAFKA_BROKERS)", traceID, len(topics))
	}
	var outs []consumedRecord
	for _, r := range recs {
		outs = append(outs, decodeRecord(ctx, codec, r))
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
		case thread.RunExecuting, thread.RunDelivered, thread.RunGating, thread.RunRetryScheduled:
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

// readKey reads topics from the start to their current end (read_committed)
// and returns the records whose key is key.
func readKey(ctx context.Context, opts []kgo.Opt, topics []string, key []byte) ([]*kgo.Record, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(lctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list offsets (is Kafka reachable?): %w", err)
	}
	starts, err := adm.ListStartOffsets(lctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	remaining := map[string]map[int32]int64{}
	assign := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset <= s.Offset {
			return
		}
		if remaining[o.Topic] == nil {
			remaining[o.Topic] = map[int32]int64{}
			assign[o.Topic] = map[int32]kgo.Offset{}
		}
		remaining[o.Topic][o.Partition] = o.Offset
		assign[o.Topic][o.Partition] = kgo.NewOffset().At(s.Offset)
	})
	if len(assign) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		// A partition whose tail is a transaction marker never shows its
		// last offset: an idle poll ends the read.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		idle := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if idle {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == string(key) {
				out = append(out, r)
			}
			if end, ok := remaining[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining[r.Topic], r.Partition)
				if len(remaining[r.Topic]) == 0 {
					delete(remaining, r.Topic)
				}
			}
		})
	}
	return out, nil
}
