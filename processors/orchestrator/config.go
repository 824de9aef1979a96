package orchestrator

import (
	"fmt"
	"strings"
	"time"
)

// Config is the orchestrator's settings, read from the environment by the
// composition root. Every field documents its variable and default.
type Config struct {
	// IntentKinds is SPINE_INTENT_KINDS, the intent kinds the orchestrator
	// accepts, comma-separated; others are dead-lettered with
	// unknown_intent_kind. Default summarize,classify,extract,answer,tool_call.
	IntentKinds []string `env:"SPINE_INTENT_KINDS, default=summarize,classify,extract,answer,tool_call"`
	// MaxRunsPerActor is SPINE_MAX_RUNS_PER_ACTOR, the most runs of one
	// actor between dispatch and their end; more wait in state queued.
	// Default 0: no limit (and no arbitration hops).
	MaxRunsPerActor int `env:"SPINE_MAX_RUNS_PER_ACTOR, default=0"`
	// ExecTimeout is SPINE_EXEC_TIMEOUT, how long a run may stay dispatched
	// or executing before it is retried or times out. Default 30s.
	ExecTimeout time.Duration `env:"SPINE_EXEC_TIMEOUT, default=30s"`
	// GateTimeout is SPINE_GATE_TIMEOUT, how long a run may wait for its
	// gate verdict before it times out. Default 30s.
	GateTimeout time.Duration `env:"SPINE_GATE_TIMEOUT, default=30s"`
	// RunDeadline is SPINE_RUN_DEADLINE, the end-to-end deadline of a run
	// whose intent sets none. Default 0: none.
	RunDeadline time.Duration `env:"SPINE_RUN_DEADLINE, default=0s"`
	// RetryMaxAttempts is SPINE_RETRY_MAX_ATTEMPTS, the attempts of a
	// dispatch, the first included (Temporal's MaximumAttempts). Default 3.
	RetryMaxAttempts int32 `env:"SPINE_RETRY_MAX_ATTEMPTS, default=3"`
	// RetryInitialInterval is SPINE_RETRY_INITIAL_INTERVAL, the delay before
	// the first retry. Default 200ms.
	RetryInitialInterval time.Duration `env:"SPINE_RETRY_INITIAL_INTERVAL, default=200ms"`
	// RetryBackoffCoefficient is SPINE_RETRY_BACKOFF_COEFFICIENT, the growth
	// of the delay per retry (≥ 1). Default 2.
	RetryBackoffCoefficient float64 `env:"SPINE_RETRY_BACKOFF_COEFFICIENT, default=2"`
	// RetryMaxInterval is SPINE_RETRY_MAX_INTERVAL, the cap of the delay.
	// Default 5s.
	RetryMaxInterval time.Duration `env:"SPINE_RETRY_MAX_INTERVAL, default=5s"`
}

// Validate checks the settings, returning every problem.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Kinds()) == 0 {
		bad("SPINE_INTENT_KINDS: name at least one intent kind")
	}
	if c.MaxRunsPerActor < 0 {
		bad("SPINE_MAX_RUNS_PER_ACTOR: %d must be 0 (no limit) or positive", c.MaxRunsPerActor)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_EXEC_TIMEOUT", c.ExecTimeout}, {"SPINE_GATE_TIMEOUT", c.GateTimeout}} {
		if d.d <= 0 {
			bad("%s: %s must be positive", d.name, d.d)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_RUN_DEADLINE", c.RunDeadline}, {"SPINE_RETRY_INITIAL_INTERVAL", c.RetryInitialInterval}} {
		if d.d < 0 {
			bad("%s: %s must not be negative", d.name, d.d)
		}
	}
	if c.RetryMaxAttempts < 0 {
		bad("SPINE_RETRY_MAX_ATTEMPTS: %d must be 0 (unlimited) or positive", c.RetryMaxAttempts)
	}
	if c.RetryBackoffCoefficient < 1 {
		bad("SPINE_RETRY_BACKOFF_COEFFICIENT: %v must be at least 1", c.RetryBackoffCoefficient)
	}
	if c.RetryMaxInterval < c.RetryInitialInterval {
		bad("SPINE_RETRY_MAX_INTERVAL: %s is below SPINE_RETRY_INITIAL_INTERVAL %s", c.RetryMaxInterval, c.RetryInitialInterval)
	}
	return errs
}

// Kinds are the intent kinds accepted, blanks dropped.
func (c *Config) Kinds() []string {
	var kinds []string
	for _, k := range c.IntentKinds {
		if k = strings.TrimSpace(k); k != "" {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// Retry is the dispatch retry policy the settings ask for.
func (c *Config) Retry() RetryPolicy {
	retry := DefaultRetry
	retry.MaximumAttempts = c.RetryMaxAttempts
	retry.InitialInterval = c.RetryInitialInterval
	retry.BackoffCoefficient = c.RetryBackoffCoefficient
	retry.MaximumInterval = c.RetryMaxInterval
	return retry
}

// States is the stateflow table the settings ask for: the default states
// with their timeouts and retry policy.
func (c *Config) States() []Spec {
	return DefaultStates(c.Retry(), c.ExecTimeout, c.GateTimeout)
}

// Options are the orchestrator options the settings ask for: the
// stateflow, intent kinds and limits.
func (c *Config) Options() ([]Option, error) {
	flow, err := NewStateflow(c.States())
	if err != nil {
		return nil, err
	}
	return []Option{
		WithStateflow(flow),
		WithIntentKinds(c.Kinds()...),
		WithMaxPerActor(c.MaxRunsPerActor),
		WithRunDeadline(c.RunDeadline),
	}, nil
}
