package gatekeeper_test

import (
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestRunnerDrift: with the drift check and the drift sampler, a run of a
// drifted kind and route fails its verdict in enforce mode and passes (and
// says so) in observe mode; either way the artifact's sample goes to
// spine.drift.samples keyed kind/route, in the same transaction.
func TestRunnerDrift(t *testing.T) {
	t.Parallel()
	drifted := gates.DriftStatusesFunc(func(kind, route string) (gates.DriftStatus, bool, error) {
		return gates.DriftStatus{Kind: kind, Route: route, Drifted: true, Window: 4, Rule: "ks:score", Measured: 0.42, Threshold: 0.19,
			NRef: 200, NCur: 200, Evidence: map[string]string{"ks:score": "0.42", "n_ref": "200", "n_cur": "200"}}, true, nil
	})
	for _, tc := range []struct {
		mode    gates.DriftMode
		verdict bool
		code    string
	}{
		{gates.DriftEnforce, false, "drifted"},
		{gates.DriftObserve, true, "drifted_observed"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			l := pipeline.Layout{Prefix: "t."}
			r, err := gatekeeper.New(l, gatekeeper.Config{
				Checks: []gates.Check{gates.Schema(), gates.Drift(tc.mode, drifted)},
				Taps:   []gatekeeper.Tap{drift.NewSampler(l)},
				Now:    func() time.Time { return t0 },
			})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := run(t, r, artifact(100))
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 4 {
				t.Fatalf("%d outputs, want schema, drift, verdict and the sample", len(outs))
			}
			d := outs[1].Value.(*schemas.RuntimeEvent)
			if outs[1].Topic != "t.gate.drift" || d.Gate.Name != "drift" || d.Gate.Rule != "ks:score" || d.Gate.Measured != 0.42 ||
				d.Gate.Evidence["window"] != "4" || d.Gate.Evidence["n_ref"] != "200" || d.Gate.Evidence["mode"] != string(tc.mode) ||
				d.Gate.Passed == (tc.code == "drifted") || d.Gate.Reason[:len(tc.code)] != tc.code {
				t.Errorf("drift gate %s: %+v", outs[1].Topic, d.Gate)
			}
			if v := outs[2].Value.(*schemas.RuntimeEvent); v.Gate.Passed != tc.verdict {
				t.Errorf("verdict %+v, want passed %v", v.Gate, tc.verdict)
			}
			smp := outs[3]
			s, err := drift.DecodeSample(smp.Raw)
			if smp.Topic != l.DriftSamples() || string(smp.Key) != thread.DriftKey("summarize", thread.RouteCanary) || err != nil ||
				s.Values[gates.MetricLatency] != 100 || s.Values[gates.MetricScore] != 0.9 {
				t.Errorf("sample %s %s %+v %v", smp.Topic, smp.Key, s, err)
			}
		})
	}
}

// BenchmarkHandleArtifactDrift is BenchmarkHandleArtifact with the drift
// check (a status present) and the sampler.
func BenchmarkHandleArtifactDrift(b *testing.B) {
	st := gates.DriftStatus{Kind: "summarize", Route: thread.RouteCanary, Window: 4, Rule: "ks:score", Measured: 0.1, Threshold: 0.19, NRef: 200, NCur: 200}
	l := pipeline.Layout{}
	r, err := gatekeeper.New(l, gatekeeper.Config{
		Checks: append(gatekeeper.Default(), gates.Drift(gates.DriftEnforce, gates.DriftStatusesFunc(func(string, string) (gates.DriftStatus, bool, error) { return st, true, nil }))),
		Taps:   []gatekeeper.Tap{drift.NewSampler(l)},
	})
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
