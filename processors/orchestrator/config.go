package orchestrator

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spinerun/spine/schemas"
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
	// whose intent sets none, so that no run waits forever. 0 turns it off
	// (then only the states' own timeouts bound a run). Default 10m.
	RunDeadline time.Duration `env:"SPINE_RUN_DEADLINE, default=10m"`
	// RunDeadlineKinds is SPINE_RUN_DEADLINE_KINDS, the end-to-end deadline
	// per intent kind where it differs from SPINE_RUN_DEADLINE, as
	// kind:duration pairs, comma-separated (tool_call:2m,summarize:1m).
	// Default none.
	RunDeadlineKinds map[string]time.Duration `env:"SPINE_RUN_DEADLINE_KINDS"`
	// QueueTimeout is SPINE_QUEUE_TIMEOUT, the built-in stateflow's
	// schedule-to-start bound: how long a run may wait in state queued for
	// an arbitration slot before it takes its fallback. Default 5m.
	QueueTimeout time.Duration `env:"SPINE_QUEUE_TIMEOUT, default=5m"`
	// Stateflow is SPINE_STATEFLOW, a stateflow file (YAML) replacing the
	// built-in one; it is validated at start, each problem named by line.
	// With a file, SPINE_EXEC_TIMEOUT, SPINE_GATE_TIMEOUT,
	// SPINE_QUEUE_TIMEOUT and SPINE_RETRY_* do not apply: the file says.
	// Default empty: the built-in stateflow.
	Stateflow string `env:"SPINE_STATEFLOW"`
	// PreviousStateflows is SPINE_STATEFLOW_PREVIOUS, earlier stateflow
	// files, comma-separated, kept while runs started under them finish:
	// when a deploy changes the stateflow, name the one it replaces here
	// until its runs have ended (at most the run deadline). The built-in
	// stateflow at the current settings is always known. Default none.
	PreviousStateflows []string `env:"SPINE_STATEFLOW_PREVIOUS"`
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
	// MaxInputBytes is SPINE_MAX_INPUT_BYTES, the largest intent input
	// admitted; a larger one is dead-lettered as input_too_large before the
	// run starts. At most 4 MiB (the contract's ceiling). Default 1048576
	// (1 MiB).
	MaxInputBytes int `env:"SPINE_MAX_INPUT_BYTES, default=1048576"`
	// RunRetention is SPINE_RUN_RETENTION, how long an ended run's state
	// (its deduplication record) stays in the orchestrator's compacted state
	// topic: within it a duplicate intent is recognised, after it a durable
	// timer writes the key's tombstone. 0 keeps ended runs forever (state
	// then grows with every run ever seen). Default 15m.
	RunRetention time.Duration `env:"SPINE_RUN_RETENTION, default=15m"`
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
	}{{"SPINE_EXEC_TIMEOUT", c.ExecTimeout}, {"SPINE_GATE_TIMEOUT", c.GateTimeout}, {"SPINE_QUEUE_TIMEOUT", c.QueueTimeout}} {
		if d.d <= 0 {
			bad("%s: %s must be positive", d.name, d.d)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_RUN_DEADLINE", c.RunDeadline}, {"SPINE_RETRY_INITIAL_INTERVAL", c.RetryInitialInterval}, {"SPINE_RUN_RETENTION", c.RunRetention}} {
		if d.d < 0 {
			bad("%s: %s must not be negative", d.name, d.d)
		}
	}
	for k, d := range c.RunDeadlineKinds {
		if d <= 0 {
			bad("SPINE_RUN_DEADLINE_KINDS: %s:%s must be positive", k, d)
		}
	}
	if c.Stateflow != "" {
		if _, err := c.Flow(); err != nil {
			bad("SPINE_STATEFLOW: %v", err)
		}
	}
	if _, err := c.Previous(); err != nil {
		bad("SPINE_STATEFLOW_PREVIOUS: %v", err)
	}
	if c.RetryMaxAttempts < 0 {
		bad("SPINE_RETRY_MAX_ATTEMPTS: %d must be 0 (unlimited) or positive", c.RetryMaxAttempts)
	}
	if c.RetryBackoffCoefficient < 1 {
		bad("SPINE_RETRY_BACKOFF_COEFFICIENT: %v must be at least 1", c.RetryBackoffCoefficient)
	}
	if c.MaxInputBytes < 1 || c.MaxInputBytes > schemas.MaxInputBytes {
		bad("SPINE_MAX_INPUT_BYTES: %d must be in [1, %d]", c.MaxInputBytes, schemas.MaxInputBytes)
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

// States is the built-in stateflow table with the settings' timeouts and
// retry policy (SPINE_STATEFLOW aside: see Flow).
func (c *Config) States() []Spec {
	specs := DefaultStates(c.Retry(), c.ExecTimeout, c.GateTimeout)
	for i := range specs {
		if specs[i].State == StateQueued && c.QueueTimeout > 0 {
			specs[i].Timeout = c.QueueTimeout
		}
	}
	return specs
}

// Flow is the stateflow the settings ask for: the file SPINE_STATEFLOW
// names, else the built-in one with the settings' timeouts and retries.
func (c *Config) Flow() (*Stateflow, error) {
	if c.Stateflow == "" {
		return NewStateflow(c.States())
	}
	src, err := os.ReadFile(c.Stateflow)
	if err != nil {
		return nil, fmt.Errorf("read stateflow file: %w", err)
	}
	return ParseStateflow(c.Stateflow, src)
}

// Previous are the earlier stateflows runs in flight may have started
// under: the files SPINE_STATEFLOW_PREVIOUS names and, with SPINE_STATEFLOW
// set, the built-in one.
func (c *Config) Previous() ([]*Stateflow, error) {
	var out []*Stateflow
	if c.Stateflow != "" {
		f, err := NewStateflow(c.States())
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	for _, p := range c.PreviousStateflows {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read stateflow file: %w", err)
		}
		f, err := ParseStateflow(p, src)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Options are the orchestrator options the settings ask for: the
// stateflow, intent kinds and limits.
func (c *Config) Options() ([]Option, error) {
	flow, err := c.Flow()
	if err != nil {
		return nil, err
	}
	prev, err := c.Previous()
	if err != nil {
		return nil, err
	}
	return []Option{
		WithStateflow(flow),
		WithPreviousStateflows(prev...),
		WithIntentKinds(c.Kinds()...),
		WithMaxPerActor(c.MaxRunsPerActor),
		WithRunDeadline(c.RunDeadline),
		WithKindDeadlines(c.RunDeadlineKinds),
		WithMaxInputBytes(c.MaxInputBytes),
		WithRetention(c.RunRetention),
	}, nil
}
