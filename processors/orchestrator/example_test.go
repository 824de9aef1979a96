package orchestrator_test

import (
	"context"
	"fmt"
	"strings"
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

// The default stateflow, printed from its table: each state's entry event,
// timeout, retry policy and fallback are data.
func ExampleDefaultStates() {
	specs := orchestrator.DefaultStates(orchestrator.DefaultRetry, 30*time.Second, 30*time.Second)
	flow := orchestrator.MustStateflow(specs)
	for _, sp := range specs {
		line := fmt.Sprintf("%-10s %-16s", sp.State, sp.Event)
		if sp.Timeout > 0 {
			line += fmt.Sprintf(" timeout %s → %s", sp.Timeout, sp.Fallback)
		}
		if sp.Retry != nil {
			line += fmt.Sprintf(", %d attempts", sp.Retry.MaximumAttempts)
		}
		if sp.Terminal {
			line += " (terminal)"
		}
		fmt.Println(strings.TrimSpace(line))
	}
	_, ok := flow.Next(orchestrator.StateCompleted, orchestrator.OnRetry)
	fmt.Println("completed → retry allowed:", ok)
	// Output:
	// received   intent.received
	// routed     run.routed       timeout 1m0s → timed_out
	// queued     run.queued       timeout 5m0s → timed_out
	// dispatched run.dispatch     timeout 30s → timed_out, 3 attempts
	// executing  run.executing    timeout 30s → timed_out, 3 attempts
	// delivered  run.delivered
	// gating     run.gating       timeout 30s → timed_out, 3 attempts
	// completed  run.completed    (terminal)
	// rejected   run.rejected     (terminal)
	// failed     run.failed       (terminal)
	// timed_out  run.timed_out    (terminal)
	// completed → retry allowed: false
}
