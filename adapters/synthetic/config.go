package synthetic

import (
	"fmt"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

// Config is the synthetic executor's settings, read from the environment
// by the composition root: the baseline's parameters and the canary
// route's overrides. Every field documents its variable and default.
type Config struct {
	// LatencyMean is SPINE_SYNTHETIC_LATENCY_MEAN, the mean simulated
	// latency. Default 50ms.
	LatencyMean time.Duration `env:"SPINE_SYNTHETIC_LATENCY_MEAN, default=50ms"`
	// LatencyP99 is SPINE_SYNTHETIC_LATENCY_P99, its 99th percentile
	// (log-normal). Default 200ms.
	LatencyP99 time.Duration `env:"SPINE_SYNTHETIC_LATENCY_P99, default=200ms"`
	// FailureRate is SPINE_SYNTHETIC_FAILURE_RATE, the share of executions
	// that fail, 0..1. Default 0.
	FailureRate float64 `env:"SPINE_SYNTHETIC_FAILURE_RATE, default=0"`
	// HangRate is SPINE_SYNTHETIC_HANG_RATE, the share of executions that
	// never answer, 0..1. Default 0.
	HangRate float64 `env:"SPINE_SYNTHETIC_HANG_RATE, default=0"`
	// ScoreMean is SPINE_SYNTHETIC_SCORE_MEAN, the mean artifact score.
	// Default 0.8.
	ScoreMean float64 `env:"SPINE_SYNTHETIC_SCORE_MEAN, default=0.8"`
	// ScoreStddev is SPINE_SYNTHETIC_SCORE_STDDEV. Default 0.1.
	ScoreStddev float64 `env:"SPINE_SYNTHETIC_SCORE_STDDEV, default=0.1"`
	// Sleep is SPINE_SYNTHETIC_SLEEP: really wait the simulated latency
	// instead of only reporting it. Default false.
	Sleep bool `env:"SPINE_SYNTHETIC_SLEEP, default=false"`
	// CanaryLatencyMean is SPINE_CANARY_LATENCY_MEAN, the canary route's
	// mean latency. Default 0: the baseline's.
	CanaryLatencyMean time.Duration `env:"SPINE_CANARY_LATENCY_MEAN, default=0s"`
	// CanaryLatencyP99 is SPINE_CANARY_LATENCY_P99. Default 0: the
	// baseline's.
	CanaryLatencyP99 time.Duration `env:"SPINE_CANARY_LATENCY_P99, default=0s"`
	// CanaryFailureRate is SPINE_CANARY_FAILURE_RATE, 0..1. Default -1: the
	// baseline's.
	CanaryFailureRate float64 `env:"SPINE_CANARY_FAILURE_RATE, default=-1"`
	// CanaryScoreShift is SPINE_CANARY_SCORE_SHIFT, added to the canary's
	// mean score (a drifted model). Default 0.
	CanaryScoreShift float64 `env:"SPINE_CANARY_SCORE_SHIFT, default=0"`
}

// Validate checks the settings, returning every problem.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_SYNTHETIC_LATENCY_MEAN", c.LatencyMean}, {"SPINE_SYNTHETIC_LATENCY_P99", c.LatencyP99},
		{"SPINE_CANARY_LATENCY_MEAN", c.CanaryLatencyMean}, {"SPINE_CANARY_LATENCY_P99", c.CanaryLatencyP99}} {
		if d.d < 0 {
			bad("%s: %s must not be negative", d.name, d.d)
		}
	}
	for _, r := range []struct {
		name string
		r    float64
	}{{"SPINE_SYNTHETIC_FAILURE_RATE", c.FailureRate}, {"SPINE_SYNTHETIC_HANG_RATE", c.HangRate}} {
		if r.r < 0 || r.r > 1 {
			bad("%s: %v is not in 0..1", r.name, r.r)
		}
	}
	if c.FailureRate+c.HangRate > 1 {
		bad("SPINE_SYNTHETIC_FAILURE_RATE + SPINE_SYNTHETIC_HANG_RATE: %v exceeds 1", c.FailureRate+c.HangRate)
	}
	if c.CanaryFailureRate != -1 && (c.CanaryFailureRate < 0 || c.CanaryFailureRate > 1) {
		bad("SPINE_CANARY_FAILURE_RATE: %v is not in 0..1 (or -1 for the baseline's)", c.CanaryFailureRate)
	}
	if c.ScoreStddev < 0 {
		bad("SPINE_SYNTHETIC_SCORE_STDDEV: %v must not be negative", c.ScoreStddev)
	}
	return errs
}

// Routes returns the executor's parameters per route: the baseline's from
// the settings, the canary's from them with the canary overrides.
func (c *Config) Routes() map[string]Params {
	base := Default()
	base.LatencyMean = c.LatencyMean
	base.LatencyP99 = c.LatencyP99
	base.FailureRate = c.FailureRate
	base.HangRate = c.HangRate
	base.ScoreMean = c.ScoreMean
	base.ScoreStddev = c.ScoreStddev
	canary := base
	if c.CanaryLatencyMean > 0 {
		canary.LatencyMean = c.CanaryLatencyMean
	}
	if c.CanaryLatencyP99 > 0 {
		canary.LatencyP99 = c.CanaryLatencyP99
	}
	if c.CanaryFailureRate >= 0 {
		canary.FailureRate = c.CanaryFailureRate
	}
	canary.ScoreMean += c.CanaryScoreShift
	return map[string]Params{thread.RouteBaseline: base, thread.RouteCanary: canary}
}
