package projections

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistogramIndexBounds(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 65, 100, 1000, 12345, 1 << 20, 1<<40 + 7, 1 << 62} {
		i := histIndex(v)
		lo, hi := histBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d [%d,%d]", v, i, lo, hi)
		}
		if w := hi - lo + 1; v >= histSub && float64(w)/float64(lo) > 1.0/histSub+1e-9 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its values", i, lo, hi, histSub)
		}
		if i >= histMaxIndex {
			t.Fatalf("index %d of %d beyond histMaxIndex", i, v)
		}
	}
	// Buckets tile the line: each starts right after the previous.
	for i := int32(1); i < 20*histSub; i++ {
		_, prevHi := histBounds(i - 1)
		lo, _ := histBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		gen  func(rng *rand.Rand) int64
	}{
		{"uniform-0-1000", func(rng *rand.Rand) int64 { return rng.Int64N(1000) }},
		{"exp-mean-50", func(rng *rand.Rand) int64 { return int64(rng.ExpFloat64() * 50) }},
		{"constant-7", func(*rand.Rand) int64 { return 7 }},
		{"wide-1-1e6", func(rng *rand.Rand) int64 { return 1 + rng.Int64N(1_000_000) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, 2))
			var h Histogram
			vals := make([]int64, 5000)
			for i := range vals {
				vals[i] = tc.gen(rng)
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.95, 0.99, 1} {
				rank := int(float64(len(vals))*q+0.999999) - 1
				exact := vals[max(rank, 0)]
				got := h.Quantile(q)
				lo, hi := histBounds(histIndex(exact))
				if got < lo || got > hi {
					t.Errorf("q%.2f = %d, exact %d (bucket [%d,%d])", q, got, exact, lo, hi)
				}
			}
			if h.Count() != int64(len(vals)) || h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Errorf("count/min/max = %d/%d/%d", h.Count(), h.Min(), h.Max())
			}
		})
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Fatal("empty histogram quantile not 0")
	}
}

func TestHistogramMergeExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	mk := func() *Histogram {
		h := &Histogram{}
		for range rng.IntN(300) {
			h.Record(rng.Int64N(100000))
		}
		return h
	}
	for range 50 {
		a, b, c := mk(), mk(), mk()
		// (a+b)+c == a+(b+c) == (c+a)+b
		ab := a.Clone()
		ab.Merge(b)
		ab.Merge(c)
		bc := b.Clone()
		bc.Merge(c)
		a2 := a.Clone()
		a2.Merge(bc)
		ca := c.Clone()
		ca.Merge(a)
		ca.Merge(b)
		if !ab.Equal(a2) || !ab.Equal(ca) {
			t.Fatal("merge is not associative and commutative")
		}
		// Merging equals recording everything into one.
		if ab.Count() != a.Count()+b.Count()+c.Count() {
			t.Fatal("merged count")
		}
	}
}

func TestHistogramJSONRoundTrip(t *testing.T) {
	t.Parallel()
	var h Histogram
	for _, v := range []int64{0, 3, 40, 40, 1000, 99999} {
		h.Record(v)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(&h) {
		t.Fatalf("round trip changed the histogram: %s", b)
	}
	for _, bad := range []string{
		`{"n":1,"sum":0,"min":0,"max":0,"b":[[0,2]]}`,        // counts do not sum to n
		`{"n":2,"sum":0,"min":0,"max":0,"b":[[3,1],[1,1]]}`,  // out of order
		`{"n":1,"sum":0,"min":0,"max":0,"b":[[-1,1]]}`,       // negative index
		`{"n":1,"sum":0,"min":0,"max":0,"b":[[99999999,1]]}`, // index out of range
		`{"n":1,"sum":5,"min":50,"max":50,"b":[[1,1]]}`,      // min outside bucket
		`{"n":0,"sum":0,"min":3,"max":0,"b":[]}`,             // empty with min
		`{"n":1,"sum":0,"min":0,"max":0,"b":[[0,0]]}`,        // zero count
	} {
		var x Histogram
		if err := json.Unmarshal([]byte(bad), &x); err == nil {
			t.Errorf("decoded invalid histogram %s", bad)
		}
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := range b.N {
		h.Record(int64(i % 5000))
	}
}
