package dataplane_test

import (
	"fmt"
	"testing"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
)

func BenchmarkHandleDispatch(b *testing.B) {
	d, err := dataplane.New(pipeline.Layout{}, dataplane.Config{Executor: synth(b, nil, false)})
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]*schemas.RuntimeEvent, 1024)
	for i := range evs {
		evs[i] = dispatch(fmt.Sprint("tr-", i), 0, "")
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := d.Handle(b.Context(), nil, pipeline.Input{Value: evs[i%len(evs)], Version: schemas.V1}); err != nil {
			b.Fatal(err)
		}
	}
}
