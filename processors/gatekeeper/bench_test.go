package gatekeeper_test

import (
	"testing"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/schemas"
)

func BenchmarkHandleArtifact(b *testing.B) {
	r, err := gatekeeper.New(pipeline.Layout{}, gatekeeper.Config{})
	if err != nil {
		b.Fatal(err)
	}
	in := pipeline.Input{Value: artifact(100), Version: schemas.V2}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Handle(b.Context(), nil, in); err != nil {
			b.Fatal(err)
		}
	}
}
