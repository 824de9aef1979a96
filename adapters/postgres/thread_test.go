package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// pos is a record's place in the log.
type pos struct {
	topic     string
	partition int32
	offset    int64
}

// threadLog is what the thread says, read committed from the start to the
// end offsets of the moment it is read.
type threadLog struct {
	events    map[pos]*schemas.RuntimeEvent
	gates     map[pos]*schemas.RuntimeEvent
	artifacts map[string]int // id → size
	traces    map[string]bool
	terminals map[string]string // trace → outcome
}

// sinkTopics are the topics the sink reads.
func (r *rig) sinkTopics() []string {
	var topics []string
	for _, t := range projections.SourceTopics(r.layout) {
		topics = append(topics, string(t))
	}
	return append(topics, string(r.layout.Artifacts()))
}

// readThread reads every record of the sink's topics up to their current
// end offsets (the last stable offsets: read_committed).
func (r *rig) readThread(tb testing.TB) *threadLog {
	tb.Helper()
	topics := r.sinkTopics()
	canary := string(r.layout.Gate(thread.CanaryGate))
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	// A direct consumer from the start; done when every partition reached
	// the end offset of the moment reading began, or, since a partition
	// can end with transaction markers a read_committed reader never
	// sees, when nothing new has come for 2s after the thread went quiet.
	cl := kafkatest.Client(tb, r.brokers, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	l := &threadLog{events: map[pos]*schemas.RuntimeEvent{}, gates: map[pos]*schemas.RuntimeEvent{},
		artifacts: map[string]int{}, traces: map[string]bool{}, terminals: map[string]string{}}
	idleSince := time.Now()
	for time.Since(idleSince) < 2*time.Second {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			tb.Fatal("reading the thread took over 180s")
		}
		fs.EachError(func(t string, p int32, err error) {
			if pctx.Err() == nil {
				tb.Fatalf("fetch %s/%d: %v", t, p, err)
			}
		})
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			n++
			if rec.Topic == string(r.layout.Artifacts()) {
				if rec.Value != nil {
					l.artifacts[string(rec.Key)] = len(rec.Value)
				}
				return
			}
			v, _, err := r.codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
			if err != nil {
				tb.Fatalf("decode %s/%d@%d: %v", rec.Topic, rec.Partition, rec.Offset, err)
			}
			ev := v.(*schemas.RuntimeEvent)
			p := pos{rec.Topic, rec.Partition, rec.Offset}
			l.events[p] = ev
			if ev.Gate != nil && (ev.Phase == schemas.PhaseGate || strings.HasPrefix(strings.TrimPrefix(rec.Topic, r.layout.Prefix), thread.TopicGatePrefix)) {
				l.gates[p] = ev
			}
			if ev.TraceID != "" && rec.Topic != canary && !thread.IsDriftTrace(ev.TraceID) {
				l.traces[ev.TraceID] = true
			}
			if o, ok := thread.Outcome(ev.EventType); ok {
				if _, seen := l.terminals[ev.TraceID]; !seen {
					l.terminals[ev.TraceID] = o
				}
			}
		})
		if n > 0 {
			idleSince = time.Now()
		}
	}
	return l
}
