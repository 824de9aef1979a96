package gates

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

// PerformanceName is the performance check's gate name.
const PerformanceName = thread.PerformanceGate

// DefaultLatencyBudget is the latency budget of an intent kind with none of
// its own.
const DefaultLatencyBudget = 2000 * time.Millisecond

// PerformanceCheck holds an artifact's latency against the budget of its
// intent kind. Measured is the artifact's reported latency_ms (the synthetic
// executor simulates latency without sleeping, so the reported value is the
// one that counts), Threshold the budget in milliseconds; a latency equal to
// the budget passes. It is stateless.
type PerformanceCheck struct {
	def     time.Duration
	budgets map[string]time.Duration
}

var _ Check = (*PerformanceCheck)(nil)

// Performance returns the performance check with a default budget (0 means
// DefaultLatencyBudget) and budgets per intent kind.
func Performance(def time.Duration, perKind map[string]time.Duration) *PerformanceCheck {
	if def <= 0 {
		def = DefaultLatencyBudget
	}
	return &PerformanceCheck{def: def, budgets: maps.Clone(perKind)}
}

// Name returns "performance".
func (c *PerformanceCheck) Name() string { return PerformanceName }

// Budget returns the latency budget of intent kind.
func (c *PerformanceCheck) Budget(kind string) time.Duration {
	if b, ok := c.budgets[kind]; ok && b > 0 {
		return b
	}
	return c.def
}

// Check implements Check.
func (c *PerformanceCheck) Check(_ context.Context, s Subject) (Outcome, error) {
	kind := ""
	if s.Event != nil {
		kind = s.Event.Intent
	}
	budget := float64(c.Budget(kind).Milliseconds())
	a := s.Artifact()
	if a == nil {
		return fail("missing_artifact", "no artifact, no latency to hold against the budget", 0, budget), nil
	}
	m := float64(a.LatencyMs)
	if m > budget {
		return fail("over_budget", fmt.Sprintf("latency %d ms over the %s budget of %.0f ms", a.LatencyMs, kind, budget), m, budget), nil
	}
	return pass("within_budget", fmt.Sprintf("latency %d ms within the %s budget of %.0f ms", a.LatencyMs, kind, budget), m, budget), nil
}

// ParseBudgets parses "kind=duration" pairs separated by commas, e.g.
// "summarize=1500ms,classify=500ms".
func ParseBudgets(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("latency budget %q: want kind=duration", part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("latency budget %q: want a positive duration like 1500ms", part)
		}
		out[strings.TrimSpace(k)] = d
	}
	return out, nil
}

// PerformanceConfig is the performance check's settings, read from the
// environment by the composition root.
type PerformanceConfig struct {
	// LatencyBudget is SPINE_LATENCY_BUDGET, the latency budget for intent
	// kinds without their own. Default 2s.
	LatencyBudget time.Duration `env:"SPINE_LATENCY_BUDGET, default=2s"`
	// LatencyBudgets is SPINE_LATENCY_BUDGETS, budgets per intent kind as
	// kind=duration pairs, e.g. "summarize=1500ms,classify=500ms". Default
	// empty.
	LatencyBudgets string `env:"SPINE_LATENCY_BUDGETS"`
}

// Validate checks the settings, returning every problem.
func (c *PerformanceConfig) Validate() []error {
	var errs []error
	if c.LatencyBudget <= 0 {
		errs = append(errs, fmt.Errorf("SPINE_LATENCY_BUDGET: %s must be positive", c.LatencyBudget))
	}
	for _, part := range strings.Split(c.LatencyBudgets, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if _, err := ParseBudgets(part); err != nil {
			errs = append(errs, fmt.Errorf("SPINE_LATENCY_BUDGETS: %q is not kind=duration (e.g. summarize=1500ms)", part))
		}
	}
	return errs
}

// Check returns the performance check the settings ask for.
func (c *PerformanceConfig) Check() (Check, error) {
	budgets, err := ParseBudgets(c.LatencyBudgets)
	if err != nil {
		return nil, err
	}
	return Performance(c.LatencyBudget, budgets), nil
}
