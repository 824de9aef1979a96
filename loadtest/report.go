package loadtest

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/projections"
)

// Report is the outcome of a load test.
type Report struct {
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended"`
	Params   Params    `json:"params"`
	Sent     int64     `json:"intents_sent"`
	Finished int64     `json:"runs_finished"`
	// Unfinished counts runs without a terminal event when the drain ended.
	Unfinished int64 `json:"runs_unfinished"`
	// DeadLettered counts this test's records that went to the DLQ.
	DeadLettered int64 `json:"dead_lettered"`
	// AskedRate is what was asked; SentRate what the sender achieved;
	// FinishedRate is finished runs over the time from the first intent
	// to the last terminal event.
	AskedRate    float64 `json:"asked_intents_per_s"`
	SentRate     float64 `json:"sent_intents_per_s"`
	FinishedRate float64 `json:"finished_runs_per_s"`
	// ThreadEvents counts the thread events of this test's runs;
	// EventsPerSec over the same span as FinishedRate.
	ThreadEvents int64   `json:"thread_events"`
	EventsPerSec float64 `json:"thread_events_per_s"`
	// CanarySharePct is the measured share of runs routed to the canary.
	CanarySharePct float64 `json:"canary_share_pct"`
	// Routes by name (baseline, canary).
	Routes map[string]*RouteReport `json:"routes"`
	// Decisions are the gate.canary analyses seen during the test.
	Decisions []Decision `json:"canary_decisions"`
	// FlagChanges are the v2_rollout changes made during the test.
	FlagChanges []FlagChange `json:"flag_changes"`
	// Series has one point a second.
	Series []Point `json:"series"`
	// Raw is the raw franz-go chain measured before the load, and
	// RawComparison sets Spine beside it where that means something.
	Raw           *ChainResult   `json:"raw_franz_go_chain,omitempty"`
	RawComparison *RawComparison `json:"raw_comparison,omitempty"`
	// RSSFirstBytes, RSSPeakBytes and RSSLastBytes summarise the stack's
	// resident memory over Series (in-process stacks only).
	RSSFirstBytes int64 `json:"rss_first_bytes,omitempty"`
	RSSPeakBytes  int64 `json:"rss_peak_bytes,omitempty"`
	RSSLastBytes  int64 `json:"rss_last_bytes,omitempty"`
	// FinalWeightBP and FinalPhase are the rollout at the end.
	FinalWeightBP int    `json:"final_weight_bp"`
	FinalPhase    string `json:"final_phase"`
}

// RouteReport is one route's runs.
type RouteReport struct {
	Runs        int64                   `json:"runs"`
	Outcomes    map[string]int64        `json:"outcomes"`
	SuccessRate float64                 `json:"success_rate"`
	Latency     projections.Percentiles `json:"latency"`
	// Histogram is the end-to-end latency (intent → terminal) in ms.
	Histogram []projections.Bucket `json:"latency_histogram_ms"`
	// ExecLatency is the latency executors reported on artifacts, in ms
	// (the synthetic executor's simulated latency).
	ExecLatency   projections.Percentiles `json:"exec_latency"`
	ExecHistogram []projections.Bucket    `json:"exec_latency_histogram_ms"`
	Executions    int64                   `json:"executions"`
	ExecFailed    int64                   `json:"exec_failed"`
	ScoreMean     float64                 `json:"score_mean"`
	Gates         map[string]*GateRate    `json:"gates"`

	scoreSum float64
	scoreN   int64
}

// GateRate is one gate's outcomes on one route.
type GateRate struct {
	Passed   int64   `json:"passed"`
	Failed   int64   `json:"failed"`
	PassRate float64 `json:"pass_rate"`
}

// Decision is one canary analysis, as read from gate.canary.
type Decision struct {
	At           time.Time         `json:"at"`
	Action       string            `json:"action"`
	EventType    string            `json:"event_type"`
	Phase        string            `json:"phase"`
	Passed       bool              `json:"passed"`
	WeightBefore int               `json:"weight_before_bp"`
	WeightAfter  int               `json:"weight_after_bp"`
	Failures     int               `json:"failures"`
	CanaryRuns   int64             `json:"canary_runs"`
	BaselineRuns int64             `json:"baseline_runs"`
	Reason       string            `json:"reason"`
	Checks       map[string]string `json:"evidence"`
}

// FlagChange is one change of the rollout flag.
type FlagChange struct {
	At       time.Time `json:"at"`
	Rev      int64     `json:"rev"`
	Who      string    `json:"who"`
	Why      string    `json:"why"`
	WeightBP int       `json:"weight_bp"`
	Phase    string    `json:"phase"`
}

// Point is one second of the test.
type Point struct {
	T        float64 `json:"t_s"`
	Sent     int64   `json:"sent"`
	Done     int64   `json:"finished"`
	DoneRate float64 `json:"finished_per_s"`
	Baseline int64   `json:"baseline_finished"`
	Canary   int64   `json:"canary_finished"`
	WeightBP int     `json:"weight_bp"`
	Phase    string  `json:"phase"`
	// RSSBytes and HeapBytes are the stack's resident memory and Go heap
	// (in-process stacks only; see Config.Memory).
	RSSBytes  int64 `json:"rss_bytes,omitempty"`
	HeapBytes int64 `json:"heap_bytes,omitempty"`
}

func buildReport(cfg Config, st *state, id string, start, sendStart, sendEnd time.Time, chain *ChainResult) *Report {
	st.mu.Lock()
	defer st.mu.Unlock()
	ro := cfg.Flags.Rollout()
	r := &Report{
		ID: id, Started: start.UTC(), Ended: time.Now().UTC(), Params: cfg.Params,
		Sent: st.sent, AskedRate: cfg.Rate, ThreadEvents: st.events, DeadLettered: st.dlq,
		Routes: st.routes, Decisions: st.decisions, Series: st.series, Raw: chain,
		FinalWeightBP: ro.Weight, FinalPhase: string(ro.Phase),
	}
	for _, p := range st.series {
		if p.RSSBytes == 0 {
			continue
		}
		if r.RSSFirstBytes == 0 {
			r.RSSFirstBytes = p.RSSBytes
		}
		r.RSSPeakBytes = max(r.RSSPeakBytes, p.RSSBytes)
		r.RSSLastBytes = p.RSSBytes
	}
	if r.Decisions == nil {
		r.Decisions = []Decision{}
	}
	if d := sendEnd.Sub(sendStart).Seconds(); d > 0 {
		r.SentRate = float64(st.sent) / d
	}
	for _, n := range st.done {
		r.Finished += n
	}
	r.Unfinished = r.Sent - r.Finished
	if !st.firstSent.IsZero() && st.lastDone.After(st.firstSent) {
		span := st.lastDone.Sub(st.firstSent).Seconds()
		r.FinishedRate = float64(r.Finished) / span
		r.EventsPerSec = float64(r.ThreadEvents) / span
	}
	if r.Finished > 0 {
		r.CanarySharePct = 100 * float64(st.done["canary"]) / float64(r.Finished)
	}
	for name, rr := range st.routes {
		if rr.Runs > 0 {
			rr.SuccessRate = float64(rr.Outcomes["completed"]) / float64(rr.Runs)
		}
		h := st.lat[name]
		rr.Latency = projections.PercentilesOf(h)
		rr.Histogram = h.Buckets()
		rr.ExecLatency = projections.PercentilesOf(st.execLat[name])
		rr.ExecHistogram = st.execLat[name].Buckets()
		if rr.scoreN > 0 {
			rr.ScoreMean = rr.scoreSum / float64(rr.scoreN)
		}
		for _, g := range rr.Gates {
			if n := g.Passed + g.Failed; n > 0 {
				g.PassRate = float64(g.Passed) / float64(n)
			}
		}
	}
	for _, c := range cfg.Flags.History(canary.FlagV2Rollout) {
		if c.At.Before(start.Add(-time.Second)) {
			continue
		}
		fc := FlagChange{At: c.At, Rev: c.Rev, Who: c.Who, Why: c.Why}
		if v, err := canary.RolloutOf(c); err == nil {
			fc.WeightBP, fc.Phase = v.Weight, string(v.Phase)
		}
		r.FlagChanges = append(r.FlagChanges, fc)
	}
	r.RawComparison = compareRaw(cfg.Rate, st.lat, chain)
	return r
}

// RawComparison sets Spine beside the raw chain where the two measure the
// same thing: end-to-end latency at the same paced rate. A load test is
// paced, so its throughput is the rate it was asked for, not a ceiling: a
// ratio of it to an unpaced chain's throughput compares nothing, and none
// is made (BenchmarkGoldenPath compares unpaced throughput).
type RawComparison struct {
	// Label says what is compared.
	Label string `json:"label"`
	// RatePerSec is the rate both ran at.
	RatePerSec float64 `json:"rate_per_s"`
	// Spine is the runs' latency, intent sent to terminal event, all
	// routes; Raw the chain's, source write to the third hop's committed
	// output; both in ms.
	Spine projections.Percentiles `json:"spine_run_latency_ms"`
	Raw   projections.Percentiles `json:"raw_chain_latency_ms"`
}

// compareRaw returns the latency comparison when chain ran paced at the
// test's rate and runs finished, nil otherwise.
func compareRaw(rate float64, lat map[string]*projections.Histogram, chain *ChainResult) *RawComparison {
	if chain == nil || chain.Rate <= 0 || chain.Rate != rate {
		return nil
	}
	all := &projections.Histogram{}
	for _, h := range lat {
		all.Merge(h)
	}
	if all.Count() == 0 {
		return nil
	}
	return &RawComparison{
		Label:      fmt.Sprintf("end-to-end latency at the same paced rate (%s/s)", strconv.FormatFloat(rate, 'f', -1, 64)),
		RatePerSec: rate, Spine: projections.PercentilesOf(all), Raw: chain.Latency,
	}
}

// RouteNames returns the report's routes, baseline first.
func (r *Report) RouteNames() []string {
	names := slices.Sorted(maps.Keys(r.Routes))
	slices.SortStableFunc(names, func(a, b string) int {
		rank := func(s string) int {
			switch s {
			case "baseline":
				return 0
			case "canary":
				return 1
			}
			return 2
		}
		return rank(a) - rank(b)
	})
	return names
}

// Write writes the report as loadtest-<id>.json and loadtest-<id>.html
// into dir (created if missing) and returns both paths.
func (r *Report) Write(dir string) (jsonPath, htmlPath string, err error) {
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("report directory: %w", err)
	}
	base := filepath.Join(dir, "loadtest-"+r.ID)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	page, err := r.HTML()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".html", page, 0o644); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".html", nil
}
