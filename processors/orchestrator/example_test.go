package orchestrator_test

import (
	"context"
	"fmt"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
)

// An intent becomes a run: received, routed and dispatched in one step, on
// spine.control, with the run's state for the pipeline to keep.
func ExampleNew() {
	o, err := orchestrator.New(pipeline.Layout{})
	if err != nil {
		panic(err)
	}
	it := &schemas.Intent{IntentID: "i-1", TraceID: "trace-1", Actor: "alice", Kind: "summarize", Timestamp: time.Now()}
	res, err := o.Handle(context.Background(), nil, pipeline.Input{Topic: "spine.intents", Key: []byte(it.TraceID), Value: it, Version: schemas.V1})
	if err != nil {
		panic(err)
	}
	for _, out := range res.Outputs {
		ev := out.Value.(*schemas.RuntimeEvent)
		fmt.Println(out.Topic, ev.EventType, ev.State, ev.Route, out.Version)
	}
	deadline, ok := o.Deadline(res.State)
	fmt.Println("timer set:", ok && deadline.After(time.Now()))
	// Output:
	// spine.control intent.received received baseline V1
	// spine.control run.routed routed baseline V1
	// spine.control run.dispatch dispatched baseline V1
	// timer set: true
}

// Routing by a stable hash of the trace id: 20% of runs take the canary.
func ExampleHashRouter() {
	r := orchestrator.HashRouter{Salt: "v2_rollout", Weight: func() int { return 2000 }}
	canary := 0
	for i := range 10000 {
		if r.Route(fmt.Sprint("trace-", i), "alice") == "canary" {
			canary++
		}
	}
	first := r.Route("trace-7", "alice")
	fmt.Println(canary/100, "% canary, sticky:", r.Route("trace-7", "alice") == first)
	// Output: 20 % canary, sticky: true
}
