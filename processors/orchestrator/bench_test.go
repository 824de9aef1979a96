package orchestrator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func BenchmarkHandleIntent(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	its := make([]*schemas.Intent, 1024)
	for i := range its {
		its[i] = newIntent(fmt.Sprint("tr-", i), "alice", "summarize")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		it := its[i%len(its)]
		if _, err := h.o.Handle(ctx, nil, pipeline.Input{Topic: h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleRun measures one whole run's orchestrator work: the intent,
// dataplane.started, artifact.delivered and the verdict.
func BenchmarkHandleRun(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		it := newIntent(fmt.Sprint("tr-", i), "alice", "summarize")
		res, err := h.o.Handle(ctx, nil, pipeline.Input{Topic: h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V1})
		if err != nil {
			b.Fatal(err)
		}
		d := res.Outputs[len(res.Outputs)-1].Value.(*schemas.RuntimeEvent)
		st := res.State
		dl := reply(d, thread.ArtifactDelivered, 0)
		for _, in := range []pipeline.Input{
			{Topic: h.layout.Dataplane(), Value: reply(d, thread.DataplaneStarted, 0)},
			{Topic: h.layout.Dataplane(), Value: dl},
			{Topic: h.layout.Gate("verdict"), Value: verdict(dl, true)},
		} {
			in.Key = []byte(it.TraceID)
			res, err = h.o.Handle(ctx, st, in)
			if err != nil {
				b.Fatal(err)
			}
			st = res.State
		}
	}
}

// BenchmarkDeadline measures what the loop saved per state write before
// results carried their deadline (pipeline.Result.DeadlineSet): Deadline of
// a run state just written, and of an actor's ledger (which it tried to
// decode as a run).
func BenchmarkDeadline(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	it := newIntent("tr-1", "alice", "summarize")
	res, err := h.o.Handle(ctx, nil, pipeline.Input{Topic: h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V1})
	if err != nil {
		b.Fatal(err)
	}
	run := res.State
	ledger := []byte(`{"L":true,"run":["tr-1","tr-2"],"n":2}`)
	for _, bc := range []struct {
		name  string
		state []byte
	}{{"run", run}, {"ledger", ledger}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.o.Deadline(bc.state)
			}
		})
	}
}
