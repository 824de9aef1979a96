package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// API serves the projections over HTTP as JSON. Mount it on a mux with
// Mount; its handlers are safe for concurrent use.
//
//	GET /v1/runs/{trace_id}      one run's status, hops, gates and outcome, from memory (header Spine-Read says what was read);
//	                             ?wait=30s long-polls until the run is terminal
//	GET /v1/stats/golden-path    per version and route: counts, throughput and p50/p95/p99 per hop and end to end
//	GET /v1/gates                gate passes and failures by gate and reason, per version and route
//	GET /v1/canary               canary and baseline side by side
//	GET /v1/projections/status   how far the view has read
//	GET /v1/live                 the last ?last= (default 5m, at most 15m) in per-second buckets (see Live)
//	GET /v1/runs/{trace_id}/events  one recent run's events in order, from Live
//	GET /v1/dead-letters         the latest dead letters and their counts by code
//	GET /v1/dashboard            everything the dashboard shows, at once; /v1/stream sends it every second as server-sent events
//
// The aggregate endpoints accept from and to (RFC 3339) or last (a Go
// duration such as 5m, counted back from the latest window seen), and
// golden-path accepts series=1 for per-window counts.
//
// GET /v1/runs/{trace_id}?wait=D (a Go duration, at most MaxWait; more is
// cut to MaxWait) answers as soon as the run is terminal, or when D has
// passed with its status then (404 if it is still unknown): the way an
// HTTP caller of POST /v1/intents waits for its run's outcome. The store
// is polled every PollInterval; the request's context ends the wait.
type API struct {
	store  *Store
	live   *Live
	dead   *DeadLetters
	panels []panel
	snaps  snapshotCache
	// stop ends every event stream when Run's context ends, so that an
	// open dashboard does not hold the HTTP server's graceful shutdown.
	stop     chan struct{}
	stopOnce sync.Once
}

// panel is a named part of the dashboard's snapshot served by another part
// of the stack (the flags, the policy in force).
type panel struct {
	name string
	get  func() any
}

// APIOpt configures an API.
type APIOpt func(*API)

// WithLive serves l: GET /v1/live, the run view's events and the
// dashboard's per-second charts.
func WithLive(l *Live) APIOpt { return func(a *API) { a.live = l } }

// WithDeadLetters serves d: GET /v1/dead-letters and the dashboard's dead
// letters.
func WithDeadLetters(d *DeadLetters) APIOpt { return func(a *API) { a.dead = d } }

// WithPanel adds get's value, under name, to every dashboard snapshot
// (GET /v1/dashboard and the event stream); get is called at most once per
// second and must be safe for concurrent use.
func WithPanel(name string, get func() any) APIOpt {
	return func(a *API) { a.panels = append(a.panels, panel{name: name, get: get}) }
}

// NewAPI returns the API over store.
func NewAPI(store *Store, opts ...APIOpt) *API {
	a := &API{store: store, stop: make(chan struct{})}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Run blocks until ctx ends, then ends every open event stream
// (GET /v1/stream) so that the HTTP server's shutdown does not wait for
// them. Run it beside the HTTP server; without it streams end when their
// clients go.
func (a *API) Run(ctx context.Context) error {
	<-ctx.Done()
	a.stopOnce.Do(func() { close(a.stop) })
	return nil
}

// Mount registers the API's routes and the dashboard (at /, its assets
// under /ui/) on mux.
func (a *API) Mount(mux *http.ServeMux) {
	a.mountDashboard(mux)
	mux.HandleFunc("GET /v1/runs/{trace_id}", a.run)
	mux.HandleFunc("GET /v1/stats/golden-path", a.golden)
	mux.HandleFunc("GET /v1/gates", a.gates)
	mux.HandleFunc("GET /v1/canary", a.canary)
	mux.HandleFunc("GET /v1/projections/status", a.status)
}

// Handler returns a fresh mux with the API mounted.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Mount(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeErr(w http.ResponseWriter, status int, code string, err error) {
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

// The bounds of GET /v1/runs/{trace_id}?wait=.
const (
	MaxWait      = 60 * time.Second
	PollInterval = 50 * time.Millisecond
)

func (a *API) run(w http.ResponseWriter, r *http.Request) {
	trace := r.PathValue("trace_id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeErr(w, http.StatusBadRequest, "bad_query", fmt.Errorf("query parameter wait=%q: want a duration such as 30s (at most %s)", v, MaxWait))
			return
		}
		wait = min(d, MaxWait)
	}
	run, err := a.store.RunStatus(trace)
	if wait > 0 && (err == nil && !run.Terminal || errors.Is(err, ErrNotFound)) {
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		tick := time.NewTicker(PollInterval)
		defer tick.Stop()
	poll:
		for {
			select {
			case <-r.Context().Done():
				return
			case <-deadline.C:
				break poll
			case <-tick.C:
			}
			run, err = a.store.RunStatus(trace)
			if (err == nil && run.Terminal) || (err != nil && !errors.Is(err, ErrNotFound)) {
				break poll
			}
		}
	}
	if errors.Is(err, ErrNotFound) {
		writeErr(w, http.StatusNotFound, Code(err), err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err)
		return
	}
	// Say what was read: the run's cells in memory, never the thread.
	w.Header().Set("Spine-Read", fmt.Sprintf("projections view: %d cells of the run (%s); no Kafka read", len(run.Sources), strings.Join(run.Sources, " ")))
	writeJSON(w, http.StatusOK, run)
}

// rangeOf parses from/to/last.
func (a *API) rangeOf(r *http.Request) (Range, error) {
	q := r.URL.Query()
	var rng Range
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &rng.From}, {"to", &rng.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return rng, fmt.Errorf("query parameter %s=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name, v)
			}
			*p.dst = t
		}
	}
	if v := q.Get("last"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return rng, fmt.Errorf("query parameter last=%q: want a positive duration such as 5m", v)
		}
		if !rng.From.IsZero() {
			return rng, errors.New("query parameters last and from exclude each other")
		}
		all := a.store.Aggregate(Range{To: rng.To})
		if !all.Last.IsZero() {
			rng.From = all.Last.Add(all.Window).Add(-d)
		}
	}
	if !rng.From.IsZero() && !rng.To.IsZero() && !rng.From.Before(rng.To) {
		return rng, errors.New("query parameter from must be before to")
	}
	return rng, nil
}

func (a *API) aggregates(w http.ResponseWriter, r *http.Request) (*Aggregates, bool) {
	rng, err := a.rangeOf(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err)
		return nil, false
	}
	return a.store.Aggregate(rng), true
}

func (a *API) golden(w http.ResponseWriter, r *http.Request) {
	agg, ok := a.aggregates(w, r)
	if !ok {
		return
	}
	series, _ := strconv.ParseBool(r.URL.Query().Get("series"))
	writeJSON(w, http.StatusOK, agg.GoldenReport(series))
}

func (a *API) gates(w http.ResponseWriter, r *http.Request) {
	if agg, ok := a.aggregates(w, r); ok {
		writeJSON(w, http.StatusOK, agg.GatesReport())
	}
}

func (a *API) canary(w http.ResponseWriter, r *http.Request) {
	if agg, ok := a.aggregates(w, r); ok {
		writeJSON(w, http.StatusOK, agg.CanaryReport())
	}
}

func (a *API) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.store.Status())
}
