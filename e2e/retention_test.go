package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline/kafkatest"
)

// TestRunStateTombstoned: once a run has ended and its deduplication window
// (SPINE_RUN_RETENTION) has passed, a durable timer writes a tombstone for
// its key in the orchestrator's compacted state topic, so the state topic
// keeps nothing per run that has ended. The test reads the compacted topic
// itself, as a restarting orchestrator would.
func TestRunStateTombstoned(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	const n = 30
	s := newStack(t, nil, map[string]string{"SPINE_RUN_RETENTION": "2s"})
	committed := s.collect(t, true)
	s.startAll(nil)
	outs := intents("tomb", n)
	s.produce(t.Context(), outs)
	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d terminal outcomes (have %d)", n, committed.terminalCount()) })
	ended := time.Now()

	topic := string(s.layout.State("orchestrator"))
	var last map[string][]byte
	live := func() []string {
		var keys []string
		for _, o := range outs {
			if v, ok := last[string(o.Key)]; !ok || v != nil {
				keys = append(keys, string(o.Key))
			}
		}
		return keys
	}
	waitFor(t, 60*time.Second, func() bool {
		last = readCompacted(t, s.brokers, topic)
		return len(live()) == 0
	}, func() string {
		k := live()
		return fmt.Sprintf("tombstones for all %d runs on %s (%d keys not tombstoned, e.g. %v)", n, topic, len(k), k[:min(3, len(k))])
	})
	t.Logf("%s: every ended run's key is a tombstone %s after the last run ended (retention 2s)", kafkatest.Backend(), time.Since(ended).Round(100*time.Millisecond))
	for k, v := range last {
		if v != nil && strings.HasPrefix(k, "tomb-") {
			t.Errorf("run key %s still has state", k)
		}
	}
}

// readCompacted reads topic from its start to its end, read_committed, and
// returns each key's last value (nil for a tombstone).
func readCompacted(tb testing.TB, brokers []string, topic string) map[string][]byte {
	tb.Helper()
	adm := kadm.NewClient(kafkatest.Client(tb, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	out := map[string][]byte{}
	if len(remaining) == 0 {
		return out
	}
	cl := kafkatest.Client(tb, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(50*time.Millisecond))
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %s: %v (partitions left %v)", topic, ctx.Err(), remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out[string(r.Key)] = r.Value
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return out
}
