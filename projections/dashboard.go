package projections

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"
)

// The page and its vendored chart library (uPlot 1.6.32, MIT, its licence
// beside it in ui/), embedded: no CDN, no build step.
//
//go:embed dashboard.html
var dashboardHTML []byte

//go:embed ui
var uiFS embed.FS

// DashboardSnapshot is everything the dashboard shows, at once: the body
// of GET /v1/dashboard and of each event of GET /v1/stream.
type DashboardSnapshot struct {
	At     time.Time     `json:"at"`
	Status StoreStatus   `json:"status"`
	Live   *LiveSnapshot `json:"live,omitempty"`
	// DeadLetters is nil when this process does not tail the DLQ.
	DeadLetters *DeadLettersSnapshot `json:"dead_letters,omitempty"`
	// Panels are the parts served by the rest of the stack (WithPanel),
	// by name: "flags" (the canary rollout and its history), "policy".
	Panels map[string]any `json:"panels"`
}

// StreamInterval is how often GET /v1/stream sends a snapshot.
const StreamInterval = time.Second

// defaultSpan is the span the dashboard shows unless asked otherwise.
const defaultSpan = 5 * time.Minute

// snapshotCache shares one encoded snapshot per span and second among
// every client.
type snapshotCache struct {
	mu sync.Mutex
	m  map[time.Duration]encodedSnapshot
}

type encodedSnapshot struct {
	sec  int64
	body []byte
}

// Dashboard serves the dashboard's page (GET /) and its vendored assets
// (GET /ui/...); the page reads the /v1 API of the process serving it.
func Dashboard() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(dashboardHTML)
	})
	sub, _ := fs.Sub(uiFS, "ui")
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(sub)))
	return mux
}

func (a *API) mountDashboard(mux *http.ServeMux) {
	page := Dashboard()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /ui/", page)
	mux.HandleFunc("GET /v1/live", func(w http.ResponseWriter, r *http.Request) {
		span, ok := spanOf(w, r)
		if !ok {
			return
		}
		if a.live == nil {
			writeErr(w, http.StatusNotFound, "not_served", fmt.Errorf("this process keeps no live view (it runs no projections processor)"))
			return
		}
		writeJSON(w, http.StatusOK, a.live.Snapshot(span))
	})
	mux.HandleFunc("GET /v1/dead-letters", func(w http.ResponseWriter, _ *http.Request) {
		if a.dead == nil {
			writeErr(w, http.StatusNotFound, "not_served", fmt.Errorf("this process does not tail the dead-letter topic"))
			return
		}
		writeJSON(w, http.StatusOK, a.dead.Snapshot())
	})
	mux.HandleFunc("GET /v1/runs/{trace_id}/events", a.runEvents)
	mux.HandleFunc("GET /v1/dashboard", func(w http.ResponseWriter, r *http.Request) {
		span, ok := spanOf(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(a.encodedSnapshot(span))
	})
	mux.HandleFunc("GET /v1/stream", a.stream)
}

// spanOf parses ?last= (a Go duration, 1s to LiveSpan; default 5m).
func spanOf(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("last")
	if v == "" {
		return defaultSpan, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d > LiveSpan {
		writeErr(w, http.StatusBadRequest, "bad_query", fmt.Errorf("query parameter last=%q: want a duration from 1s to %s, such as 5m", v, LiveSpan))
		return 0, false
	}
	return d.Truncate(time.Second), true
}

// Snapshot returns everything the dashboard shows over the span last.
func (a *API) Snapshot(last time.Duration) DashboardSnapshot {
	s := DashboardSnapshot{At: time.Now().UTC(), Status: a.store.Status(), Panels: map[string]any{}}
	if a.live != nil {
		s.Live = a.live.Snapshot(last)
	}
	if a.dead != nil {
		d := a.dead.Snapshot()
		s.DeadLetters = &d
	}
	for _, p := range a.panels {
		s.Panels[p.name] = p.get()
	}
	return s
}

// encodedSnapshot returns the snapshot of span as JSON, encoded at most
// once per second and span whatever the number of clients.
func (a *API) encodedSnapshot(span time.Duration) []byte {
	c := &a.snaps
	sec := time.Now().Unix()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[time.Duration]encodedSnapshot{}
	}
	if e, ok := c.m[span]; ok && e.sec == sec {
		return e.body
	}
	b, err := json.Marshal(a.Snapshot(span))
	if err != nil {
		b, _ = json.Marshal(apiError{Error: err.Error(), Code: "internal"})
	}
	c.m[span] = encodedSnapshot{sec: sec, body: b}
	return b
}

// stream serves GET /v1/stream?last=D: server-sent events, one "snapshot"
// event (a DashboardSnapshot) at once and then every StreamInterval, until
// the client goes.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	span, ok := spanOf(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(StreamInterval)
	defer tick.Stop()
	for {
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", a.encodedSnapshot(span)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-a.stop:
			return // the process is stopping; the client reconnects to the next one
		case <-tick.C:
		}
	}
}

// RunEvents is the body of GET /v1/runs/{trace_id}/events.
type RunEvents struct {
	TraceID string     `json:"trace_id"`
	Events  []RunEvent `json:"events"`
	// Source says where the events come from.
	Source string `json:"source"`
}

func (a *API) runEvents(w http.ResponseWriter, r *http.Request) {
	trace := r.PathValue("trace_id")
	if a.live == nil {
		writeErr(w, http.StatusNotFound, "not_served", fmt.Errorf("this process keeps no live view of runs; `spine trace %s` reads the run from the thread", trace))
		return
	}
	evs, ok := a.live.RunEvents(trace)
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Errorf("run %q: %w among the recent runs this process saw (the last %d); `spine trace %s` reads it from the thread", trace, ErrNotFound, liveMaxRuns, trace))
		return
	}
	writeJSON(w, http.StatusOK, RunEvents{TraceID: trace, Events: evs, Source: fmt.Sprintf("the live view: committed events of the run, the first %d", liveRunEvents)})
}
