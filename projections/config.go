package projections

import "fmt"

// Config is the projections' settings, read from the environment by the
// composition root.
type Config struct {
	// ViewMaxRuns is SPINE_VIEW_MAX_RUNS, the most runs the projections view
	// (GET /v1/runs/{trace_id}) keeps in memory, about 2 KB each; past it
	// the least recently updated run leaves the view (its figures stay in
	// the aggregates, the run stays on the compacted topic). 0: no bound.
	// Default 100000.
	ViewMaxRuns int `env:"SPINE_VIEW_MAX_RUNS, default=100000"`
}

// Validate checks the settings, returning every problem.
func (c *Config) Validate() []error {
	if c.ViewMaxRuns < 0 {
		return []error{fmt.Errorf("SPINE_VIEW_MAX_RUNS: %d must not be negative (0: no bound)", c.ViewMaxRuns)}
	}
	return nil
}
