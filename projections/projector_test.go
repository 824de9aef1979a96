package projections

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// The projector's tests need no broker: every source partition is marked
// restored (as if the projection topics were empty), so HandleBatch never
// reads them.

func newTestProjector(t *testing.T) *projector {
	t.Helper()
	cfg := RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Layout: pipeline.Layout{Prefix: "x.", Partitions: testPartitions},
		Window: DefaultWindow, Retain: time.Hour, SweepEvery: time.Hour}
	r := newProjector(cfg, slog.New(slog.DiscardHandler))
	t.Cleanup(r.close)
	markRestored(r)
	return r
}

func markRestored(r *projector) {
	for _, logical := range r.logical {
		for p := range int32(testPartitions) {
			r.restored[Source{Topic: logical, Partition: p}] = true
		}
	}
}

func inputsOf(l pipeline.Layout, recs []rec) []pipeline.Input {
	out := make([]pipeline.Input, len(recs))
	for i, r := range recs {
		out[i] = pipeline.Input{Topic: pipeline.Topic(l.Prefix + r.src.Topic), Partition: r.src.Partition, Key: []byte(r.ev.TraceID),
			Value: r.ev, Version: r.ev.SchemaVersion}
	}
	return out
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Each batch writes every cell it changed once, encoded, on the cell's
// source partition of its projection topic; the last value written of each
// cell is the fold of the whole thread.
func TestProjectorWritesEachChangedCellOnce(t *testing.T) {
	t.Parallel()
	r := newTestProjector(t)
	recs := interleave(5, synth(6, 40, "canary", schemas.V2, 4))
	want := encodeAll(t, foldAll(Folder{Window: DefaultWindow}, recs))
	last := map[string][]byte{}
	for i := 0; i < len(recs); i += 97 {
		out, err := r.HandleBatch(t.Context(), inputsOf(r.layout, recs[i:min(i+97, len(recs))]))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, o := range out {
			k, err := ParseKey(string(o.Key))
			if err != nil {
				t.Fatal(err)
			}
			if seen[string(o.Key)] {
				t.Errorf("cell %s written twice in one batch", o.Key)
			}
			seen[string(o.Key)] = true
			if o.Topic != r.layout.Projection(k.Projection) || o.Partition != k.Source.Partition {
				t.Errorf("cell %s on %s[%d], want %s[%d]", o.Key, o.Topic, o.Partition, r.layout.Projection(k.Projection), k.Source.Partition)
			}
			last[string(o.Key)] = o.Value
		}
		r.Committed(pipeline.BatchCommit{Inputs: len(out)})
	}
	if len(last) != len(want) {
		t.Fatalf("%d cells written, want %d", len(last), len(want))
	}
	for k, b := range want {
		if string(last[k]) != string(b) {
			t.Errorf("cell %s: last written %s, want %s", k, last[k], b)
		}
	}
	if got := counterValue(t, r.metrics.records.WithLabelValues("folded")); got != float64(len(recs)) {
		t.Errorf("folded %v, want %d", got, len(recs))
	}
}

// An aborted transaction drops the cells (they may hold its folds) and
// every source is restored again; one that aborted before the batch was
// handed over (decoding failed) changes nothing and counts as retried.
func TestProjectorSettles(t *testing.T) {
	t.Parallel()
	r := newTestProjector(t)
	recs := interleave(7, synth(8, 10, "baseline", schemas.V1, 0))
	if _, err := r.HandleBatch(t.Context(), inputsOf(r.layout, recs)); err != nil {
		t.Fatal(err)
	}
	r.Committed(pipeline.BatchCommit{})
	if len(r.cells) == 0 {
		t.Fatal("no cells after a committed batch")
	}
	r.Aborted()
	if len(r.cells) == 0 || len(r.restored) == 0 {
		t.Fatal("an abort before any batch was handed over dropped the cells")
	}
	if got := counterValue(t, r.metrics.txns.WithLabelValues("retried")); got != 1 {
		t.Errorf("retried %v, want 1", got)
	}
	if _, err := r.HandleBatch(t.Context(), inputsOf(r.layout, recs[:3])); err != nil {
		t.Fatal(err)
	}
	r.Aborted()
	if len(r.cells) != 0 || len(r.restored) != 0 {
		t.Errorf("after an aborted batch: %d cells, %d sources restored; want none", len(r.cells), len(r.restored))
	}
	if got := counterValue(t, r.metrics.txns.WithLabelValues("aborted")); got != 1 {
		t.Errorf("aborted %v, want 1", got)
	}
}

// Revoked partitions' sources are forgotten before the next batch; nil
// forgets every source.
func TestProjectorRevoked(t *testing.T) {
	t.Parallel()
	r := newTestProjector(t)
	recs := interleave(9, synth(10, 30, "baseline", schemas.V1, 0))
	if _, err := r.HandleBatch(t.Context(), inputsOf(r.layout, recs)); err != nil {
		t.Fatal(err)
	}
	r.Committed(pipeline.BatchCommit{})
	r.Revoked([]int32{1})
	var keep []rec
	for _, x := range recs {
		if x.src.Partition != 1 {
			keep = append(keep, x)
			break
		}
	}
	if _, err := r.HandleBatch(t.Context(), inputsOf(r.layout, keep)); err != nil {
		t.Fatal(err)
	}
	r.Committed(pipeline.BatchCommit{})
	for s := range r.restored {
		if s.Partition == 1 {
			t.Errorf("source %s still restored after partition 1 was revoked", s)
		}
	}
	for k := range r.cells {
		if kk, _ := ParseKey(k); kk.Source.Partition == 1 {
			t.Errorf("cell %s of revoked partition 1 still in memory", k)
		}
	}
	if len(r.cells) == 0 {
		t.Fatal("the other partitions' cells were dropped too")
	}
	r.Revoked(nil)
	r.applyDrops()
	if len(r.cells) != 0 || len(r.restored) != 0 {
		t.Errorf("after Revoked(nil): %d cells, %d sources restored; want none", len(r.cells), len(r.restored))
	}
}

type intentCodec struct{}

func (intentCodec) Decode(context.Context, pipeline.Topic, []byte) (any, schemas.ContractVersion, error) {
	return &schemas.Intent{}, schemas.V1, nil
}

func (intentCodec) Encode(context.Context, pipeline.Topic, schemas.ContractVersion, any) ([]byte, error) {
	return nil, errors.New("not used")
}

// A thread record that decodes to anything but a RuntimeEvent is poison,
// which the loop dead-letters with code unexpected_record_type.
func TestEventCodecRejectsOtherValues(t *testing.T) {
	t.Parallel()
	_, _, err := eventCodec{intentCodec{}}.Decode(t.Context(), "spine.control", []byte{0})
	if code := pipeline.CodeOf(err); code != "unexpected_record_type" {
		t.Fatalf("code %q (%v), want unexpected_record_type", code, err)
	}
}

// The memory of evictions keeps two generations of about ForgetEvicted of
// event time; dropping one moves the horizon to the start of the one kept.
func TestEvictionsForgetByGeneration(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	const forget = 10 * time.Minute
	e := &evictions{cur: map[uint64]struct{}{1: {}}}
	e.rotate(time.Time{}, forget) // no window yet: nothing happens
	if !e.since.IsZero() || !e.has(1) {
		t.Fatalf("rotate without a time changed %+v", e)
	}
	e.rotate(t0, forget)
	e.rotate(t0.Add(forget-time.Second), forget)
	if !e.has(1) || !e.horizon.IsZero() {
		t.Fatalf("rotated before forget passed: %+v", e)
	}
	e.rotate(t0.Add(forget), forget) // 1 moves to old; nothing forgotten yet
	e.cur[2] = struct{}{}
	if !e.has(1) || !e.has(2) || !e.horizon.IsZero() {
		t.Fatalf("first rotation: %+v", e)
	}
	e.rotate(t0.Add(2*forget), forget) // 1 forgotten: it was evicted before t0+forget
	if e.has(1) || !e.has(2) || !e.horizon.Equal(t0.Add(forget)) {
		t.Fatalf("second rotation: %+v, want 1 forgotten and the horizon at %s", e, t0.Add(forget))
	}
	e.remove(2)
	if e.has(2) {
		t.Fatal("remove kept 2")
	}
}

// A key not in memory counts as evicted when its run started before what
// the source forgot, and only then.
func TestWasEvictedPastTheHorizon(t *testing.T) {
	r := newTestProjector(t)
	s := Source{Topic: "spine.control", Partition: 0}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	if r.wasEvicted(s, "k", t0) {
		t.Fatal("a source that never evicted says k was")
	}
	r.evict(s, "gone")
	if !r.wasEvicted(s, "gone", t0) || r.wasEvicted(s, "new", t0) {
		t.Fatal("remembered evictions wrong")
	}
	r.evicted[s].horizon = t0
	if !r.wasEvicted(s, "old", t0.Add(-time.Second)) {
		t.Error("a key of a run before the horizon, not in memory, is not taken as evicted")
	}
	if r.wasEvicted(s, "young", t0) {
		t.Error("a key of a run at the horizon is taken as evicted")
	}
	r.cells["here"] = &RunPart{TraceID: "here"}
	if r.wasEvicted(s, "here", t0.Add(-time.Second)) {
		t.Error("a key in memory is taken as evicted")
	}
}

// A finished run's parts leave memory at the next sweep, spilled as the
// bytes their last transaction wrote (each such record marked
// HeaderRunFinished, and only those); a late event for one decodes it back
// without a restore, and every cell's last value written is still the fold
// of the whole thread, late events included.
func TestProjectorSpillsFinishedRuns(t *testing.T) {
	t.Parallel()
	r := newTestProjector(t)
	r.sweepEvery = 0 // sweep at every commit
	runs := synth(12, 60, "baseline", schemas.V1, 5)
	recs := interleave(13, runs)
	// Late events of the first run, after every run ended: a stale result
	// and a refused transition.
	first := runs[0]
	for _, late := range []struct {
		topic string
		typ   schemas.EventType
		phase schemas.Phase
	}{{"spine.dataplane", "dataplane.failed", schemas.PhaseData}, {"spine.control", "run.illegal_transition", schemas.PhaseControl}} {
		recs = append(recs, rec{src: Source{Topic: late.topic, Partition: partOf(first.trace)}, ev: &schemas.RuntimeEvent{
			EventID: first.trace + "-late-" + string(late.typ), TraceID: first.trace, SpanID: "late", SchemaVersion: schemas.V1,
			Timestamp: first.start.Add(time.Hour), RunStarted: first.start, Phase: late.phase, EventType: late.typ, State: "failed"}})
	}
	want := encodeAll(t, foldAll(Folder{Window: DefaultWindow}, recs))
	last := map[string]pipeline.Record{}
	for i := 0; i < len(recs); i += 50 {
		out, err := r.HandleBatch(t.Context(), inputsOf(r.layout, recs[i:min(i+50, len(recs))]))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			last[string(o.Key)] = o
		}
		r.Committed(pipeline.BatchCommit{Inputs: len(out)})
	}
	for k, b := range want {
		if string(last[k].Value) != string(b) {
			t.Errorf("cell %s: last written %s, want %s", k, last[k].Value, b)
		}
	}
	spilled := 0
	for k, o := range last {
		kk, err := ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		p, isRun := DecodeCell(k, o.Value)
		finished := isRun == nil && kk.Projection == "runs" && runFinished(kk.Source.Topic, p.(*RunPart))
		marked := len(o.Headers) == 1 && o.Headers[0].Key == HeaderRunFinished && string(o.Headers[0].Value) == "1"
		if marked != finished || (!finished && len(o.Headers) != 0) {
			t.Errorf("cell %s (finished: %v) written with headers %v", k, finished, o.Headers)
		}
		sp, isSpilled := r.spilled[kk.Source][k]
		_, inMemory := r.cells[k]
		switch {
		case finished && (inMemory || !isSpilled || string(sp.b) != string(o.Value)):
			t.Errorf("finished %s: in memory %v, spilled %v (%s), want spilled as written", k, inMemory, isSpilled, sp.b)
		case !finished && (!inMemory || isSpilled):
			t.Errorf("unfinished %s: in memory %v, spilled %v", k, inMemory, isSpilled)
		}
		if isSpilled {
			spilled++
		}
	}
	if spilled == 0 {
		t.Fatal("nothing spilled; the test proves nothing")
	}
	if got := counterValue(t, r.metrics.unspilled); got < 2 {
		t.Errorf("%v spilled parts decoded back, want the 2 the late events hit at least", got)
	}
	if got := counterValue(t, r.metrics.pinned); got != 0 {
		t.Errorf("%v restores for late events, want none (the parts were spilled)", got)
	}
}
