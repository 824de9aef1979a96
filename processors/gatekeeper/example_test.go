package gatekeeper_test

import (
	"context"
	"fmt"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/schemas"
)

// An artifact over its latency budget: the schema gate passes, the
// performance gate fails, and the verdict fails.
func ExampleNew() {
	r, err := gatekeeper.New(pipeline.Layout{}, gatekeeper.Config{})
	if err != nil {
		panic(err)
	}
	res, err := r.Handle(context.Background(), nil, pipeline.Input{Value: artifact(2500), Version: schemas.V2})
	if err != nil {
		panic(err)
	}
	for _, out := range res.Outputs {
		g := out.Value.(*schemas.RuntimeEvent).Gate
		fmt.Println(out.Topic, g.Name, g.Passed, g.Measured, g.Threshold)
	}
	// Output:
	// gate.schema schema true 2 4096
	// gate.performance performance false 2500 2000
	// gate.verdict verdict false 1 2
}
