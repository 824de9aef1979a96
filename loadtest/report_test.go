package loadtest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/loadtest"
	"github.com/spinerun/spine/projections"
)

// sampleReport is a report as a load test with a slower canary produces.
func sampleReport() *loadtest.Report {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hist := func(center int64, n int) (projections.Percentiles, []projections.Bucket) {
		var h projections.Histogram
		for i := range n {
			h.Record(center/2 + int64(i)%center)
		}
		return projections.PercentilesOf(&h), h.Buckets()
	}
	bl, bh := hist(20, 9000)
	cl, ch := hist(90, 1000)
	r := &loadtest.Report{
		ID: "abcd1234", Started: start, Ended: start.Add(40 * time.Second),
		Params: loadtest.Params{Rate: 500, Duration: "30s", CanaryPct: 10, V2LatencyMs: 80, Partitions: 3, Target: "embedded stack"},
		Sent:   15000, Finished: 14990, Unfinished: 10, AskedRate: 500, SentRate: 499.8, FinishedRate: 480, ThreadEvents: 150000, EventsPerSec: 4800,
		CanarySharePct: 10.1, FinalWeightBP: 0, FinalPhase: "rolled_back",
		Routes: map[string]*loadtest.RouteReport{
			"baseline": {ExecLatency: bl, ExecHistogram: bh, Runs: 13490, Outcomes: map[string]int64{"completed": 13480, "rejected": 10}, SuccessRate: 0.999, Latency: bl, Histogram: bh, Executions: 13490, ScoreMean: 0.8,
				Gates: map[string]*loadtest.GateRate{"schema": {Passed: 13490, PassRate: 1}, "performance": {Passed: 13480, Failed: 10, PassRate: 0.999}}},
			"canary": {ExecLatency: cl, ExecHistogram: ch, Runs: 1500, Outcomes: map[string]int64{"completed": 1300, "rejected": 200}, SuccessRate: 0.867, Latency: cl, Histogram: ch, Executions: 1500, ScoreMean: 0.8,
				Gates: map[string]*loadtest.GateRate{"schema": {Passed: 1500, PassRate: 1}, "performance": {Passed: 1300, Failed: 200, PassRate: 0.867}}},
		},
		Decisions: []loadtest.Decision{
			{At: start.Add(5 * time.Second), Action: "inconclusive", Phase: "paused", WeightBefore: 1000, WeightAfter: 1000, CanaryRuns: 30, BaselineRuns: 300, Reason: "inconclusive: 30 canary and 300 baseline runs, 50 each needed"},
			{At: start.Add(10 * time.Second), Action: "hold", Phase: "progressing", WeightBefore: 1000, WeightAfter: 1000, Failures: 1, CanaryRuns: 300, BaselineRuns: 3000, Reason: "hold at 10%: p99 latency <script>alert(1)</script>"},
			{At: start.Add(15 * time.Second), Action: "rollback", Phase: "rolled_back", WeightBefore: 1000, WeightAfter: 0, Failures: 2, CanaryRuns: 600, BaselineRuns: 6000, Reason: "rollback: failure 2 of 2"},
		},
		FlagChanges: []loadtest.FlagChange{{At: start, Rev: 7, Who: "loadtest", Why: "start", WeightBP: 1000, Phase: "progressing"}, {At: start.Add(15 * time.Second), Rev: 9, Who: "canary-analyzer", Why: "rollback", WeightBP: 0, Phase: "rolled_back"}},
		Raw:         &loadtest.ChainResult{Hops: 3, Records: 2500, Rate: 500, Events: 7500, Seconds: 5, EventsPerSec: 1500, Latency: projections.Percentiles{P50: 9, P99: 40}},
		RawComparison: &loadtest.RawComparison{Label: "end-to-end latency at the same paced rate (500/s)", RatePerSec: 500,
			Spine: projections.Percentiles{P50: 31, P99: 180}, Raw: projections.Percentiles{P50: 9, P99: 40}},
	}
	for i := range 41 {
		w := 1000
		if i >= 15 {
			w = 0
		}
		r.Series = append(r.Series, loadtest.Point{T: float64(i), Sent: int64(min(i, 30) * 500), Done: int64(max(0, min(i, 30)*500-100)), Baseline: int64(i * 450), Canary: int64(i * 50), WeightBP: w})
	}
	return r
}

func TestReportHTMLIsSelfContained(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	dir := t.TempDir()
	jp, hp, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(hp)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if n := strings.Count(page, "<svg"); n != 6 {
		t.Errorf("page has %d charts, want 6", n)
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page is not self-contained: it has %q", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Error("a reason was not escaped")
	}
	for _, want := range []string{"rollback", "canary-analyzer", "raw franz-go", "latency at the same paced rate (500/s)", "paced at 500 records/s", "polyline", "baseline", "canary"} {
		if !strings.Contains(page, want) {
			t.Errorf("page does not show %q", want)
		}
	}
	if m := regexp.MustCompile(`NaN|Inf`).FindString(page); m != "" {
		t.Errorf("page has %s in it", m)
	}
	var back loadtest.Report
	jb, _ := os.ReadFile(jp)
	if err := json.Unmarshal(jb, &back); err != nil || back.Sent != 15000 || len(back.Decisions) != 3 || back.Routes["canary"].Latency.P99 == 0 {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
	// A paced test's throughput is never set against the chain's.
	if strings.Contains(page, "ratio") || strings.Contains(page, "Spine ÷ raw") {
		t.Error("page shows a throughput ratio for a paced test")
	}
	if filepath.Base(hp) != "loadtest-abcd1234.html" {
		t.Errorf("html at %s", hp)
	}
}

func TestReportHTMLEmpty(t *testing.T) {
	t.Parallel()
	// A test that finished nothing still renders.
	r := &loadtest.Report{ID: "empty", Routes: map[string]*loadtest.RouteReport{}}
	b, err := r.HTML()
	if err != nil || !strings.Contains(string(b), "No canary analysis") {
		t.Fatalf("empty report: %v", err)
	}
}
