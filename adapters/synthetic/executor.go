package synthetic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Executor is the synthetic dataplane.Executor: deterministic simulated
// inference with per-route parameters (see Generate). Each call is seeded by
// the trace id and the dispatch span (which differs per attempt), so replays
// give the same answer and retries draw again. Latency is only reported,
// unless sleep is set. An Executor is safe for concurrent use.
type Executor struct {
	routes map[string]Params
	sleep  bool
}

var (
	_ dataplane.Executor = (*Executor)(nil)
	_ dataplane.Inline   = (*Executor)(nil)
)

// NewExecutor returns a synthetic executor. routes maps a route to its
// parameters; a route missing from it uses the baseline's, or Default().
// With sleep, a call really waits its simulated latency.
func NewExecutor(routes map[string]Params, sleep bool) (*Executor, error) {
	s := &Executor{routes: map[string]Params{}, sleep: sleep}
	var errs []error
	for r, p := range routes {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("synthetic route %q: %w", r, err))
		}
		s.routes[r] = p
	}
	if _, ok := s.routes[thread.RouteBaseline]; !ok {
		s.routes[thread.RouteBaseline] = Default()
	}
	return s, errors.Join(errs...)
}

// Sleeps reports whether calls really wait their simulated latency.
func (s *Executor) Sleeps() bool { return s.sleep }

// Inline reports whether the dataplane may run a call in the transaction
// of its dispatch (dataplane.Inline): yes unless it really sleeps, since a
// call that only simulates its latency is a function of its dispatch.
func (s *Executor) Inline(kind, route string) bool { return !s.sleep }

// Execute implements dataplane.Executor.
func (s *Executor) Execute(ctx context.Context, req dataplane.Request) (dataplane.Result, error) {
	p, ok := s.routes[req.Route]
	if !ok {
		p = s.routes[thread.RouteBaseline]
	}
	o := Generate(p, req.TraceID+"\x00"+req.DispatchSpan, req.Kind)
	if s.sleep && o.Kind != Hung {
		t := time.NewTimer(o.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return dataplane.Result{}, ctx.Err()
		case <-t.C:
		}
	}
	switch o.Kind {
	case Hung:
		return dataplane.Result{}, dataplane.ErrNoAnswer
	case Failed:
		return dataplane.Result{}, dataplane.Retryable(dataplane.KindSyntheticFailure, fmt.Errorf("simulated failure after %s", o.Latency))
	}
	return dataplane.Result{
		ContentType: o.ContentType,
		Content:     []byte(o.Text),
		Score:       o.Score,
		HasScore:    true,
		Latency:     o.Latency,
		Usage:       &schemas.Usage{InputTokens: o.InputTokens, OutputTokens: o.OutputTokens, CostUSD: float64(o.InputTokens+o.OutputTokens) * 1e-6},
	}, nil
}
