package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"

	"github.com/spinerun/spine/adapters/mcp"
	"github.com/spinerun/spine/adapters/openai"
	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/agents"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas/thread"
)

// executors are the dataplane's executors and what runs and releases them.
type executors struct {
	exec dataplane.Executor
	// runs keep executors that hold a connection (an MCP session).
	runs []func(context.Context) error
	// closers release them when runs never run.
	closers []func()
}

// newExecutors makes the dataplane's executor: with no agents file, the
// synthetic executor for every kind, as the SPINE_SYNTHETIC_* settings
// say; with one, an executor per agent and route routed by kind
// (dataplane.Agents), the canary sharing the baseline's when its settings
// are the same. Nothing connects here: an MCP executor connects in its
// Run.
func newExecutors(cfg *Config, log *slog.Logger) (*executors, error) {
	file := cfg.AgentsFile()
	if file == nil {
		exec, err := synthetic.NewExecutor(cfg.Synthetic.Routes(), cfg.Synthetic.Sleep)
		if err != nil {
			return nil, err
		}
		return &executors{exec: exec}, nil
	}
	x := &executors{}
	var list []dataplane.Agent
	for _, a := range file.Agents {
		base, err := x.build(cfg, a, thread.RouteBaseline, log)
		if err != nil {
			x.close()
			return nil, err
		}
		ag := dataplane.Agent{Kind: a.Kind, Baseline: base}
		if a.Canary != nil && !agents.SameSettings(a, *a.Canary) {
			if ag.Canary, err = x.build(cfg, *a.Canary, thread.RouteCanary, log); err != nil {
				x.close()
				return nil, err
			}
		}
		list = append(list, ag)
	}
	router, err := dataplane.NewAgents(list...)
	if err != nil {
		x.close()
		return nil, err
	}
	x.exec = router
	for _, a := range file.Agents {
		attrs := []any{"file", file.Path, "kind", a.Kind, "executor", a.Executor, "settings", a.Summary()}
		if a.Canary != nil {
			attrs = append(attrs, "canary_executor", a.Canary.Executor, "canary_overrides", a.Canary.Overrides)
		}
		log.Info("agent loaded", attrs...)
	}
	return x, nil
}

// build makes the executor of one agent on route.
func (x *executors) build(cfg *Config, a agents.Agent, route string, log *slog.Logger) (dataplane.Executor, error) {
	where := fmt.Sprintf("agent %s (%s:%d)", a.Kind, cfg.AgentsFile().Path, a.Line)
	if route == thread.RouteCanary {
		where = fmt.Sprintf("agent %s, canary (%s:%d)", a.Kind, cfg.AgentsFile().Path, a.Line)
	}
	log = log.With("kind", a.Kind, "route", route)
	switch a.Executor {
	case agents.Synthetic:
		// Both routes' parameters, so an agent with no canary block keeps
		// the SPINE_CANARY_* overrides on the canary route.
		routes := cfg.Synthetic.Routes()
		for r, p := range routes {
			routes[r] = syntheticParams(p, a.Synthetic)
		}
		exec, err := synthetic.NewExecutor(routes, cfg.Synthetic.Sleep)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return exec, nil
	case agents.MCP:
		s := a.MCP
		exec, err := mcp.New(mcp.Config{Tool: s.Tool, Command: s.Command, URL: s.URL, ConnectTimeout: s.ConnectTimeout, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		x.runs = append(x.runs, exec.Run)
		x.closers = append(x.closers, func() { _ = exec.Close() })
		return exec, nil
	case agents.OpenAI:
		s := a.OpenAI
		c := openai.Config{
			BaseURL: s.BaseURL, Model: s.Model, System: s.System, Temperature: s.Temperature,
			MaxTokens: s.MaxTokens, JSON: s.JSON, Timeout: s.Timeout, Logger: log,
		}
		if s.APIKeyEnv != "" {
			key, err := openai.SecretFromEnv(s.APIKeyEnv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			c.APIKey = key
		}
		exec, err := openai.New(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return exec, nil
	}
	return nil, fmt.Errorf("%s: unknown executor %q", where, a.Executor)
}

// close releases every executor built so far.
func (x *executors) close() {
	for _, c := range x.closers {
		c()
	}
	x.closers = nil
}

// syntheticParams applies an agent's synthetic overrides to p.
func syntheticParams(p synthetic.Params, s *agents.SyntheticSettings) synthetic.Params {
	if s == nil {
		return p
	}
	if s.LatencyMean != nil {
		p.LatencyMean = *s.LatencyMean
	}
	if s.LatencyP99 != nil {
		p.LatencyP99 = *s.LatencyP99
	}
	if s.FailureRate != nil {
		p.FailureRate = *s.FailureRate
	}
	if s.HangRate != nil {
		p.HangRate = *s.HangRate
	}
	if s.ScoreMean != nil {
		p.ScoreMean = *s.ScoreMean
	}
	if s.ScoreStddev != nil {
		p.ScoreStddev = *s.ScoreStddev
	}
	return p
}

// executorLatency reports whether the canary analysis compares the
// latency executors report on artifacts rather than the end-to-end one:
// when the synthetic executor only simulates its latency (no
// SPINE_SYNTHETIC_SLEEP; the thread never shows it), and with an agents
// file, whose router reports each call's own duration (a model's latency,
// apart from the queueing of the runs before it).
func executorLatency(cfg *Config) bool {
	return cfg.AgentsFile() != nil || !cfg.Synthetic.Sleep
}

// AgentsView is what GET /v1/agents shows: the agents file loaded (every
// setting, an API key only by its variable's name and whether it is set),
// or, with no file, the synthetic executor serving every intent kind.
func AgentsView(cfg *Config) agents.View {
	if f := cfg.AgentsFile(); f != nil {
		return f.Redacted(os.LookupEnv)
	}
	v := agents.View{Agents: []agents.AgentView{}}
	routes := cfg.Synthetic.Routes()
	base, canary := syntheticView(routes[thread.RouteBaseline]), syntheticView(routes[thread.RouteCanary])
	var cv *agents.CanaryView
	var overrides []string
	for _, k := range slices.Sorted(maps.Keys(base)) {
		if base[k] != canary[k] {
			overrides = append(overrides, k)
		}
	}
	if len(overrides) > 0 {
		// SPINE_CANARY_* settings.
		cv = &agents.CanaryView{Executor: agents.Synthetic, Overrides: overrides, Settings: canary}
	}
	for _, k := range cfg.Orchestrator.Kinds() {
		v.Agents = append(v.Agents, agents.AgentView{Kind: k, Executor: agents.Synthetic, Settings: base, Canary: cv})
	}
	return v
}

// syntheticView shows synthetic parameters by the agents file's keys.
func syntheticView(p synthetic.Params) map[string]any {
	return map[string]any{
		"latency_mean": p.LatencyMean.String(), "latency_p99": p.LatencyP99.String(),
		"failure_rate": p.FailureRate, "hang_rate": p.HangRate, "score_mean": p.ScoreMean, "score_stddev": p.ScoreStddev,
	}
}

// AgentsHandler serves GET /v1/agents: AgentsView as JSON.
func AgentsHandler(cfg *Config) http.Handler {
	b, err := json.Marshal(AgentsView(cfg))
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	b = append(b, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}
