package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// API serves the projections over HTTP as JSON. Mount it on a mux with
// Mount; its handlers are safe for concurrent use.
//
//	GET /v1/runs/{trace_id}      one run's status, hops, gates and outcome
//	GET /v1/stats/golden-path    per version and route: counts, throughput and p50/p95/p99 per hop and end to end
//	GET /v1/gates                gate passes and failures by gate and reason, per version and route
//	GET /v1/canary               canary and baseline side by side
//	GET /v1/projections/status   how far the view has read
//
// The aggregate endpoints accept from and to (RFC 3339) or last (a Go
// duration such as 5m, counted back from the latest window seen), and
// golden-path accepts series=1 for per-window counts.
type API struct {
	store *Store
}

// NewAPI returns the API over store.
func NewAPI(store *Store) *API { return &API{store: store} }

// Mount registers the API's routes and the dashboard (at /) on mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/runs/{trace_id}", a.run)
	mux.HandleFunc("GET /v1/stats/golden-path", a.golden)
	mux.HandleFunc("GET /v1/gates", a.gates)
	mux.HandleFunc("GET /v1/canary", a.canary)
	mux.HandleFunc("GET /v1/projections/status", a.status)
	mux.Handle("GET /{$}", Dashboard())
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

func (a *API) run(w http.ResponseWriter, r *http.Request) {
	trace := r.PathValue("trace_id")
	run, err := a.store.RunStatus(trace)
	if errors.Is(err, ErrNotFound) {
		writeErr(w, http.StatusNotFound, Code(err), err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err)
		return
	}
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
