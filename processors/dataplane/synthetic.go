package dataplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spinerun/spine/processors/dataplane/synthetic"
	"github.com/spinerun/spine/processors/thread"
	"github.com/spinerun/spine/schemas"
)

// Synthetic is the synthetic Executor: deterministic simulated inference
// with per-route parameters (see package synthetic). Each execution is
// seeded by the trace id and the dispatch span (which differs per attempt),
// so replays give the same answer and retries draw again. Latency is only
// reported, unless Sleep is set. Synthetic is safe for concurrent use.
type Synthetic struct {
	routes map[string]synthetic.Params
	sleep  bool
}

var _ Executor = (*Synthetic)(nil)

// NewSynthetic returns a Synthetic executor. routes maps a route to its
// parameters; a route missing from it uses the baseline's, or
// synthetic.Default().
func NewSynthetic(routes map[string]synthetic.Params, sleep bool) (*Synthetic, error) {
	s := &Synthetic{routes: map[string]synthetic.Params{}, sleep: sleep}
	var errs []error
	for r, p := range routes {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("synthetic route %q: %w", r, err))
		}
		s.routes[r] = p
	}
	if _, ok := s.routes[thread.RouteBaseline]; !ok {
		s.routes[thread.RouteBaseline] = synthetic.Default()
	}
	return s, errors.Join(errs...)
}

// Execute implements Executor.
func (s *Synthetic) Execute(ctx context.Context, req Request) (Result, error) {
	p, ok := s.routes[req.Route]
	if !ok {
		p = s.routes[thread.RouteBaseline]
	}
	o := synthetic.Generate(p, req.TraceID+"\x00"+req.DispatchSpan, req.Kind)
	if s.sleep && o.Kind != synthetic.Hung {
		t := time.NewTimer(o.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctx.Err()
		case <-t.C:
		}
	}
	switch o.Kind {
	case synthetic.Hung:
		return Result{}, ErrNoAnswer
	case synthetic.Failed:
		return Result{}, Retryable(KindSyntheticFailure, fmt.Errorf("simulated failure after %s", o.Latency))
	}
	return Result{
		ContentType: o.ContentType,
		Content:     []byte(o.Text),
		HasScore:    true,
		Score:       o.Score,
		Latency:     o.Latency,
		Usage:       &schemas.Usage{InputTokens: o.InputTokens, OutputTokens: o.OutputTokens, CostUSD: float64(o.InputTokens+o.OutputTokens) * 1e-6},
	}, nil
}
