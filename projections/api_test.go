package projections

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func testAPI(t testing.TB) http.Handler {
	t.Helper()
	cells := foldAll(Folder{}, interleave(1, append(synth(51, 40, "baseline", schemas.V1, 5), synth(52, 30, "canary", schemas.V2, 3)...)))
	return NewAPI(NewMemStore(cells, 0)).Handler()
}

func TestAPIQueries(t *testing.T) {
	t.Parallel()
	h := testAPI(t)
	tests := []struct {
		path string
		code int
		err  string
	}{
		{"/v1/stats/golden-path", 200, ""},
		{"/v1/stats/golden-path?series=1&last=10s", 200, ""},
		{"/v1/stats/golden-path?from=2026-11-26T10:00:00Z&to=2026-11-26T10:00:10Z", 200, ""},
		{"/v1/gates?last=1h", 200, ""},
		{"/v1/canary", 200, ""},
		{"/v1/projections/status", 200, ""},
		{"/v1/runs/baseline-V1-0001", 200, ""},
		{"/v1/runs/unknown", 404, "not_found"},
		{"/v1/canary?last=-5m", 400, "bad_query"},
		{"/v1/gates?from=yesterday", 400, "bad_query"},
		{"/v1/stats/golden-path?from=2026-11-26T10:00:10Z&to=2026-11-26T10:00:00Z", 400, "bad_query"},
		{"/v1/stats/golden-path?last=5m&from=2026-11-26T10:00:00Z", 400, "bad_query"},
		{"/", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			if rec.Code != tc.code {
				t.Fatalf("GET %s = %d, want %d: %s", tc.path, rec.Code, tc.code, rec.Body)
			}
			if tc.err != "" {
				var e apiError
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != tc.err || e.Error == "" {
					t.Fatalf("error body %s (%v)", rec.Body, err)
				}
			}
		})
	}
	// A window filter narrows the counts.
	var all, none GoldenReport
	get := func(path string, v any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatal(err)
		}
	}
	get("/v1/stats/golden-path", &all)
	get("/v1/stats/golden-path?from=2030-01-01T00:00:00Z", &none)
	if len(all.Groups) != 2 || len(none.Groups) != 0 {
		t.Fatalf("groups: all %d, future %d", len(all.Groups), len(none.Groups))
	}
}

// Any query string gets a 200 or a 400 with a JSON error, never a panic
// or a 500.
func FuzzAPIQuery(f *testing.F) {
	h := testAPI(f)
	for _, q := range []string{"last=5m", "from=2026-11-26T10:00:00Z&to=2026-11-26T11:00:00Z", "series=1", "last=1ns", "from=0001-01-01T00:00:00Z"} {
		f.Add("/v1/stats/golden-path", q)
	}
	f.Add("/v1/canary", "last=9999999h")
	f.Add("/v1/runs/x", "")
	f.Fuzz(func(t *testing.T, path, q string) {
		switch path {
		case "/v1/stats/golden-path", "/v1/gates", "/v1/canary", "/v1/runs/x":
		default:
			path = "/v1/canary"
		}
		u := &url.URL{Path: path, RawQuery: q}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 && rec.Code != 404 {
			t.Fatalf("GET %s = %d: %s", u, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("GET %s: invalid JSON %q", u, rec.Body)
		}
	})
}

// GET /v1/runs/{id}?wait= answers when the run becomes terminal, or with
// its status when the wait ends.
func TestAPIRunWait(t *testing.T) {
	t.Parallel()
	spec := synth(77, 1, "baseline", schemas.V1, 0)[0]
	evs := spec.events()
	store := NewMemStore(foldAll(Folder{}, evs[:5]), 0)
	h := NewAPI(store).Handler()
	get := func(path string) (int, Run, time.Duration) {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var run Run
		_ = json.Unmarshal(rec.Body.Bytes(), &run)
		return rec.Code, run, time.Since(start)
	}
	base := "/v1/runs/" + spec.trace
	if code, run, took := get(base + "?wait=100ms"); code != 200 || run.Terminal || took < 100*time.Millisecond {
		t.Fatalf("running run: %d terminal %v after %s", code, run.Terminal, took)
	}
	if code, _, took := get("/v1/runs/nope?wait=100ms"); code != 404 || took < 100*time.Millisecond {
		t.Fatalf("unknown run: %d after %s", code, took)
	}
	for _, q := range []string{"?wait=soon", "?wait=-1s"} {
		if code, _, _ := get(base + q); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	time.AfterFunc(200*time.Millisecond, func() {
		store.mu.Lock()
		defer store.mu.Unlock()
		for k, c := range foldAll(Folder{}, evs) {
			if kk, err := ParseKey(k); err == nil && kk.Projection == thread.ProjRuns {
				b, _ := EncodeCell(c)
				store.putRun(kk, b)
			}
		}
	})
	code, run, took := get(base + "?wait=10s")
	if code != 200 || !run.Terminal || run.Outcome == "" || took < 150*time.Millisecond || took > 5*time.Second {
		t.Fatalf("%d terminal %v outcome %q after %s", code, run.Terminal, run.Outcome, took)
	}
}
