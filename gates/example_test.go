package gates_test

import (
	"context"
	"fmt"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

// Holding an artifact's reported latency against its intent kind's budget.
func ExamplePerformance() {
	c := gates.Performance(2*time.Second, map[string]time.Duration{"classify": 500 * time.Millisecond})
	ev := &schemas.RuntimeEvent{Intent: "classify", ArtifactID: "art-1",
		Artifact: &schemas.ArtifactSummary{ContentType: "application/json", Summary: `{"label":"spam"}`, Score: 0.9, LatencyMs: 620}}
	o, _ := c.Check(context.Background(), gates.Subject{Event: ev, Version: schemas.V2})
	fmt.Println(o.Passed, o.Code, o.Measured, o.Threshold)
	o, _ = gates.Schema().Check(context.Background(), gates.Subject{Event: ev, Version: schemas.V2})
	fmt.Println(o.Passed, o.Code)
	// Output:
	// false over_budget 620 500
	// true valid
}
