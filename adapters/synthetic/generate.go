// Package synthetic is the synthetic executor, the adapter `make run` and
// the load tests use so that no model is needed: deterministic simulated
// inference behind the dataplane's Executor interface. It is the pattern
// every adapter follows: its own config (Config, from SPINE_SYNTHETIC_* and
// SPINE_CANARY_*), a constructor (NewExecutor) and the interface it
// implements (dataplane.Executor); nothing of it crosses into the thread.
//
// Given the parameters of a route and a seed (a run's trace id and dispatch), it
// decides whether the execution answers, fails or hangs, how long it took,
// and produces an artifact (text and a score in [0,1]). The same seed always
// gives the same outcome, so a replayed or retried transaction reproduces
// it; a retry of the run (a new dispatch) draws again.
//
// Latency is drawn from a log-normal distribution fitted to a mean and a
// 99th percentile; scores from a normal distribution clamped to [0,1].
// Generate is a pure function and safe for concurrent use.
package synthetic

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Params describe one route's simulated model.
type Params struct {
	// LatencyMean is the mean latency (default 50 ms).
	LatencyMean time.Duration
	// LatencyP99 is the 99th percentile; 0 or ≤ LatencyMean makes the
	// latency constant. A log-normal can only reach a p99 up to ~14.9× the
	// mean; beyond that the widest shape is used.
	LatencyP99 time.Duration
	// FailureRate is the probability an execution fails, in [0,1].
	FailureRate float64
	// HangRate is the probability an execution never answers, in [0,1].
	HangRate float64
	// ScoreMean and ScoreStddev shape the artifact score (default 0.8, 0.1).
	ScoreMean, ScoreStddev float64
	// SummaryBytes is the length of the generated text (default 160).
	SummaryBytes int
}

// Default returns the default parameters: 50 ms mean, 200 ms p99, no
// failures, score 0.8 ± 0.1.
func Default() Params {
	return Params{LatencyMean: 50 * time.Millisecond, LatencyP99: 200 * time.Millisecond, ScoreMean: 0.8, ScoreStddev: 0.1, SummaryBytes: 160}
}

// Validate reports contradictory parameters.
func (p Params) Validate() error {
	var errs []error
	if p.LatencyMean < 0 || p.LatencyP99 < 0 {
		errs = append(errs, errors.New("negative latency"))
	}
	if p.FailureRate < 0 || p.FailureRate > 1 || math.IsNaN(p.FailureRate) {
		errs = append(errs, fmt.Errorf("failure rate %v outside [0,1]", p.FailureRate))
	}
	if p.HangRate < 0 || p.HangRate > 1 || math.IsNaN(p.HangRate) {
		errs = append(errs, fmt.Errorf("hang rate %v outside [0,1]", p.HangRate))
	}
	if p.FailureRate+p.HangRate > 1 {
		errs = append(errs, fmt.Errorf("failure rate + hang rate = %v > 1", p.FailureRate+p.HangRate))
	}
	if p.ScoreStddev < 0 || math.IsNaN(p.ScoreMean) || math.IsNaN(p.ScoreStddev) {
		errs = append(errs, errors.New("invalid score distribution"))
	}
	if p.SummaryBytes < 0 {
		errs = append(errs, errors.New("negative summary bytes"))
	}
	return errors.Join(errs...)
}

// Kind is what an execution did.
type Kind int

// The kinds of outcome.
const (
	Answered Kind = iota
	Failed
	Hung
)

// Outcome is one simulated execution.
type Outcome struct {
	Kind                      Kind
	Latency                   time.Duration
	Score                     float64
	ContentType               string
	Text                      string
	InputTokens, OutputTokens int64
}

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// Generate simulates one execution of intent kind with parameters p, seeded
// by seed.
func Generate(p Params, seed, kind string) Outcome {
	h := sha256.Sum256([]byte(seed))
	r := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:16])))
	o := Outcome{Latency: p.latency(r)}
	u := r.Float64()
	switch {
	case u < p.HangRate:
		o.Kind = Hung
		return o
	case u < p.HangRate+p.FailureRate:
		o.Kind = Failed
		return o
	}
	o.Score = min(1, max(0, p.ScoreMean+p.ScoreStddev*r.NormFloat64()))
	n := p.SummaryBytes
	if n == 0 {
		n = 160
	}
	switch kind {
	case "classify", "extract":
		o.ContentType = "application/json"
		o.Text = fmt.Sprintf(`{"kind":%q,"label":"label-%d","score":%.4f,"note":%q}`, kind, r.IntN(8), o.Score, words(r, n))
	default:
		o.ContentType = "text/plain"
		o.Text = kind + ": " + words(r, n)
	}
	o.InputTokens = int64(20 + r.IntN(200))
	o.OutputTokens = int64(len(o.Text) / 4)
	return o
}

func (p Params) latency(r *rand.Rand) time.Duration {
	mean := p.LatencyMean
	if mean <= 0 {
		mean = 50 * time.Millisecond
	}
	if p.LatencyP99 <= mean {
		return mean
	}
	// Log-normal with E = exp(mu + s²/2) = mean and
	// q99 = exp(mu + z99·s) = p99: s²/2 − z99·s + ln(p99/mean) = 0.
	d := math.Log(float64(p.LatencyP99) / float64(mean))
	disc := z99*z99 - 2*d
	s := z99
	if disc > 0 {
		s = z99 - math.Sqrt(disc)
	}
	mu := math.Log(float64(mean)) - s*s/2
	return time.Duration(math.Exp(mu + s*r.NormFloat64()))
}

var vocabulary = strings.Fields("the run agent event thread canary baseline gate model answer summary signal drift score latency intent artifact policy route contract")

func words(r *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 16)
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocabulary[r.IntN(len(vocabulary))])
	}
	return b.String()[:n]
}
