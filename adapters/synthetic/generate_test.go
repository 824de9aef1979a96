package synthetic_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/schemas/thread"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	p := synthetic.Params{LatencyMean: 100 * time.Millisecond, LatencyP99: 400 * time.Millisecond, FailureRate: 0.1, HangRate: 0.05, ScoreMean: 0.7, ScoreStddev: 0.05}
	const n = 40000
	var lat []float64
	var failed, hung int
	var score float64
	for i := range n {
		o := synthetic.Generate(p, "seed-"+thread.Step(uint32(i)), "summarize")
		lat = append(lat, float64(o.Latency))
		switch o.Kind {
		case synthetic.Failed:
			failed++
		case synthetic.Hung:
			hung++
		default:
			score += o.Score
			if o.Score < 0 || o.Score > 1 || o.Text == "" {
				t.Fatalf("bad artifact %+v", o)
			}
		}
	}
	mean := 0.0
	for _, l := range lat {
		mean += l
	}
	mean /= n
	slices.Sort(lat)
	p99 := lat[n*99/100]
	within := func(name string, got, want, tol float64) {
		if got < want*(1-tol) || got > want*(1+tol) {
			t.Errorf("%s = %.4g, want %.4g ±%.0f%%", name, got, want, tol*100)
		}
	}
	within("mean latency", mean, float64(p.LatencyMean), 0.05)
	within("p99 latency", p99, float64(p.LatencyP99), 0.08)
	within("failure rate", float64(failed)/n, p.FailureRate, 0.1)
	within("hang rate", float64(hung)/n, p.HangRate, 0.15)
	within("score mean", score/float64(n-failed-hung), p.ScoreMean, 0.01)
	if a, b := synthetic.Generate(p, "x", "classify"), synthetic.Generate(p, "x", "classify"); a != b {
		t.Fatal("same seed, different outcome")
	}
	for _, bad := range []synthetic.Params{{FailureRate: 1.5}, {HangRate: -1}, {FailureRate: 0.6, HangRate: 0.6}, {LatencyMean: -1}, {ScoreStddev: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := synthetic.NewExecutor(map[string]synthetic.Params{"canary": {FailureRate: 2}}, false); err == nil {
		t.Error("the executor accepted an invalid route")
	}
}
