package stack

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"runtime/debug"

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
	ViewMaxRuns int `json:"view_max_runs"`
	// MemoryLimit is the process's soft memory limit (0: none) and
	// MemoryLimitSource what set it: SPINE_MEMORY_LIMIT, "auto" (its
	// default, from the budget) or GOMEMLIMIT.
	MemoryLimit       int64                 `json:"memory_limit_bytes"`
	MemoryLimitText   string                `json:"memory_limit,omitempty"`
	MemoryLimitSource string                `json:"memory_limit_source,omitempty"`
	Topics            []pipeline.Allocation `json:"topics"`
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit that
// SPINE_MEMORY_LIMIT resolves to, unless GOMEMLIMIT is set (the runtime
// applied it at start and it wins). Processes that run the embedded broker
// call it: their broker data, state and views share one heap, and without
// a limit the heap grows to twice what is live before a collection.
func ApplyMemoryLimit(cfg *Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if l, _, err := cfg.MemoryLimitResolved(); err == nil && l > 0 {
		debug.SetMemoryLimit(l)
	}
}

// memoryLimit is the runtime's soft memory limit (0: none) and its source.
func memoryLimit(cfg *Config) (int64, string) {
	l := debug.SetMemoryLimit(-1)
	if l == math.MaxInt64 {
		return 0, ""
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return l, "GOMEMLIMIT"
	}
	if want, src, err := cfg.MemoryLimitResolved(); err == nil && want == l {
		return l, src
	}
	return l, "runtime"
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
	p.MemoryLimit, p.MemoryLimitSource = memoryLimit(cfg)
	if p.MemoryLimit > 0 {
		p.MemoryLimitText = pipeline.ByteSize(p.MemoryLimit).String()
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
