package dataplane

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

// Agents routes each call to the executor of its intent kind and route:
// the agents file (SPINE_AGENTS) made executable. The canary route uses
// its own executor when one is set for the kind, else the baseline's.
// A kind with no executor fails unknown_agent, not retryable. Agents is an
// Executor and a Validator (delegating Validate to the executor that would
// run the call, when it has one); it is immutable after NewAgents and safe
// for concurrent use.
type Agents struct {
	routes map[agentKey]Executor
	kinds  []string
}

type agentKey struct{ kind, route string }

var (
	_ Executor  = (*Agents)(nil)
	_ Validator = (*Agents)(nil)
)

// Agent is one kind's executors: Baseline serves the baseline route and,
// when Canary is nil, the canary route too.
type Agent struct {
	Kind     string
	Baseline Executor
	Canary   Executor
}

// NewAgents returns the router of the agents given. Every kind needs a
// baseline executor and appears once.
func NewAgents(list ...Agent) (*Agents, error) {
	a := &Agents{routes: map[agentKey]Executor{}}
	var bad []string
	for _, ag := range list {
		switch {
		case ag.Kind == "":
			bad = append(bad, "an agent has no kind")
			continue
		case ag.Baseline == nil:
			bad = append(bad, fmt.Sprintf("agent %q has no baseline executor", ag.Kind))
			continue
		case slices.Contains(a.kinds, ag.Kind):
			bad = append(bad, fmt.Sprintf("agent %q is given twice", ag.Kind))
			continue
		}
		a.kinds = append(a.kinds, ag.Kind)
		a.routes[agentKey{ag.Kind, thread.RouteBaseline}] = ag.Baseline
		canary := ag.Canary
		if canary == nil {
			canary = ag.Baseline
		}
		a.routes[agentKey{ag.Kind, thread.RouteCanary}] = canary
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("dataplane agents: %s", strings.Join(bad, "; "))
	}
	return a, nil
}

// Kinds are the kinds served, in the order given.
func (a *Agents) Kinds() []string { return slices.Clone(a.kinds) }

// Inline implements Inline: a kind and route served by an executor whose
// calls neither wait nor call out.
func (a *Agents) Inline(kind, route string) bool {
	x, ok := a.Executor(kind, route)
	if !ok {
		return false
	}
	in, ok := x.(Inline)
	return ok && in.Inline(kind, route)
}

// Executor returns the executor of kind and route ("" is the baseline).
func (a *Agents) Executor(kind, route string) (Executor, bool) {
	if route == "" {
		route = thread.RouteBaseline
	}
	e, ok := a.routes[agentKey{kind, route}]
	return e, ok
}

func (a *Agents) lookup(req Request) (Executor, error) {
	if e, ok := a.Executor(req.Kind, req.Route); ok {
		return e, nil
	}
	return nil, Permanent(KindAgentNotFound, fmt.Errorf("no agent serves intent kind %q on route %q (agents: %s)",
		req.Kind, req.Route, strings.Join(a.kinds, ", ")))
}

// Execute runs req on its kind and route's executor. A result whose
// executor reports no latency (a real call, not a simulated one) carries
// the call's own duration, so the artifact says how long the model or tool
// took, apart from any wait before the call.
func (a *Agents) Execute(ctx context.Context, req Request) (Result, error) {
	e, err := a.lookup(req)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	res, err := e.Execute(ctx, req)
	if err == nil && res.Latency == 0 {
		res.Latency = max(time.Since(start), time.Microsecond)
	}
	return res, err
}

// Validate refuses a kind no agent serves, then asks the executor that
// would run req, if it is a Validator.
func (a *Agents) Validate(req Request) error {
	e, err := a.lookup(req)
	if err != nil {
		return err
	}
	if v, ok := e.(Validator); ok {
		return v.Validate(req)
	}
	return nil
}
