package projections

import (
	"testing"

	"github.com/spinerun/spine/schemas"
)

// BenchmarkFold measures folding thread events into cells (the runner's
// hot path, before encoding).
func BenchmarkFold(b *testing.B) {
	recs := interleave(1, synth(1, 1000, "canary", schemas.V2, 5))
	b.ReportAllocs()
	b.ResetTimer()
	cells := Cells{}
	for i := range b.N {
		r := recs[i%len(recs)]
		if i%len(recs) == 0 {
			cells = Cells{}
		}
		Folder{}.Fold(cells, r.src, r.ev, schemas.V2)
	}
}

// BenchmarkEncodeGoldenCell measures encoding an aggregate cell, which the
// runner does once per changed cell per transaction.
func BenchmarkEncodeGoldenCell(b *testing.B) {
	cells := foldAll(Folder{}, interleave(1, synth(2, 1000, "canary", schemas.V2, 5)))
	var g Cell
	for k, c := range cells {
		if c.Projection() == ProjGolden && len(k) > 0 {
			g = c
			break
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := EncodeCell(g); err != nil {
			b.Fatal(err)
		}
	}
}
