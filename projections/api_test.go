package projections

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/spinerun/spine/schemas"
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
