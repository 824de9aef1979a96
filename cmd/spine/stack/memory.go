package stack

import (
	"encoding/json"
	"net/http"

	"github.com/spinerun/spine/pipeline"
)

// MemoryPlan is what bounds the stack's memory: the embedded broker's
// budget and what each topic gets of it, and how long what is kept per run
// lives. GET /v1/stack serves it.
type MemoryPlan struct {
	Embedded bool `json:"embedded"`
	// Budget is SPINE_EMBEDDED_MEMORY on the embedded broker (0 on an
	// external cluster, which keeps its own settings).
	Budget         int64  `json:"memory_budget_bytes"`
	BudgetText     string `json:"memory_budget,omitempty"`
	ReservePercent int    `json:"reserve_percent,omitempty"`
	// RunRetention is how long an ended run's orchestrator state (its
	// deduplication record) is kept before its tombstone.
	RunRetention string `json:"run_retention"`
	// ThreadRetention and ProjectionRetention are the retention.ms of the
	// thread and of the projection topics.
	ThreadRetention     string `json:"thread_retention"`
	ProjectionRetention string `json:"projection_retention"`
	// ViewMaxRuns bounds the runs the projections view keeps in memory.
	ViewMaxRuns int                   `json:"view_max_runs"`
	Topics      []pipeline.Allocation `json:"topics"`
}

// Memory returns the stack's memory plan under cfg.
func Memory(cfg *Config) MemoryPlan {
	l := pipeline.NewLayout(&cfg.Config)
	p := MemoryPlan{
		Embedded:            cfg.Embedded(),
		Budget:              l.Budget,
		RunRetention:        cfg.Orchestrator.RunRetention.String(),
		ThreadRetention:     cfg.ThreadRetention.String(),
		ProjectionRetention: cfg.ProjectionRetention.String(),
		ViewMaxRuns:         cfg.Projections.ViewMaxRuns,
		Topics:              l.Allocations(),
	}
	if p.Budget > 0 {
		p.BudgetText = pipeline.ByteSize(p.Budget).String()
		p.ReservePercent = pipeline.BudgetReserve
	}
	return p
}

// MemoryHandler serves plan as JSON (GET /v1/stack).
func MemoryHandler(plan MemoryPlan) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(plan)
	})
}
