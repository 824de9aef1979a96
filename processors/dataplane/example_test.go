package dataplane_test

import (
	"context"
	"fmt"
	"time"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// A run.dispatch executed by the synthetic executor, whose canary route is
// slower: the latency is simulated and reported, not slept. The loop runs
// the three steps: Handle commits the dispatch's events and a state naming
// the call, Work makes the call after that commit, Complete commits its
// result and deletes the state.
func ExampleNew() {
	slow := synthetic.Default()
	slow.LatencyMean, slow.LatencyP99 = 3*time.Second, 3*time.Second
	exec, err := synthetic.NewExecutor(map[string]synthetic.Params{
		"baseline": synthetic.Default(),
		"canary":   slow,
	}, false)
	if err != nil {
		panic(err)
	}
	d, err := dataplane.New(pipeline.Layout{}, dataplane.Config{Executor: exec})
	if err != nil {
		panic(err)
	}
	dispatch := &schemas.RuntimeEvent{TraceID: "trace-1", SpanID: "0123456789abcdef", Actor: "alice", Intent: "summarize",
		EventType: thread.RunDispatch, Route: "canary", SchemaVersion: schemas.V2}
	ctx := context.Background()
	res, err := d.Handle(ctx, nil, pipeline.Input{Value: dispatch, Version: schemas.V2})
	if err != nil {
		panic(err)
	}
	out := d.Work(ctx, []byte("trace-1"), res.State)
	done, err := d.Complete(ctx, []byte("trace-1"), res.State, out)
	if err != nil {
		panic(err)
	}
	for _, out := range append(res.Outputs, done.Outputs...) {
		if out.Raw != nil {
			fmt.Println(out.Topic, "keeps", len(out.Raw), "bytes under", string(out.Key) == thread.ArtifactID("trace-1", dispatch.SpanID, dispatch.Timestamp))
			continue
		}
		ev := out.Value.(*schemas.RuntimeEvent)
		fmt.Println(out.Topic, ev.EventType, ev.ParentSpanID == dispatch.SpanID)
		if ev.Artifact != nil {
			fmt.Println("latency_ms:", ev.Artifact.LatencyMs)
		}
	}
	// Output:
	// spine.dataplane dataplane.dispatched true
	// spine.dataplane dataplane.started true
	// spine.dataplane artifact.delivered true
	// latency_ms: 3000
	// spine.artifacts keeps 171 bytes under true
}
