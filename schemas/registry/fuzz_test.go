package registry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/spinerun/spine/schemas/registry"
)

var fuzzSeeds = []string{
	`{"schema":"\"int\""}`,
	schemaJSON(userV1),
	schemaJSON(userV3),
	schemaJSON(rec(fld("e", `{"type":"enum","name":"E","symbols":["A"],"default":"A"}`))),
	`{"schema":"{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"n\",\"type\":[\"null\",\"L\"]}]}"}`,
	`{"schema":"\"int\"","schemaType":"AVRO","references":[]}`,
	`{"schema":"\"int\"","references":[{"name":"x","subject":"y","version":1}]}`,
	`{"schema":"{\"type\":\"fixed\",\"name\":\"F\",\"size\":-1}"}`,
	`{"compatibility":"FULL"}`,
	`{"schema":1}`, `{`, `null`, `[]`, ``, `{"schema":"{}"} {}`,
}

// FuzzDecodeSchemaRequest: the request decoder never panics, fails only
// with a 422 registry error, and what it accepts is stable under
// normalization and parses again.
func FuzzDecodeSchemaRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		norm, err := registry.DecodeSchemaRequest([]byte(body))
		if err != nil {
			var e *registry.Error
			if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || e.Message == "" {
				t.Fatalf("error %v is not a 422 registry error with a message", err)
			}
			return
		}
		again, err := registry.Normalize(norm)
		if err != nil || again != norm {
			t.Fatalf("normalized form not stable: %q → %q, %v", norm, again, err)
		}
		if _, err := registry.Parse(norm); err != nil {
			t.Fatalf("accepted schema does not parse again: %v", err)
		}
	})
}

// FuzzHTTPBodies sends each body to every endpoint that decodes one, on a
// running registry: never a 500, always a JSON answer.
func FuzzHTTPBodies(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	in := newBackend(f).start(f, registry.WithDefaultLevel(registry.FullTransitive))
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range []struct{ method, path string }{
			{"POST", "/subjects/fz-value/versions"},
			{"POST", "/subjects/fz-value"},
			{"POST", "/compatibility/subjects/fz-value/versions/latest?verbose=true"},
			{"POST", "/compatibility/subjects/fz-value/versions?verbose=true"},
			{"PUT", "/config/fz-value"},
		} {
			st, _, b := call(t, ep.method, in.url+ep.path, body)
			if st >= 500 {
				t.Fatalf("%s %s %q: %d %s", ep.method, ep.path, body, st, b)
			}
			if !json.Valid(b) {
				t.Fatalf("%s %s %q: body is not JSON: %s", ep.method, ep.path, body, b)
			}
			if st >= 400 && !strings.Contains(string(b), `"error_code"`) {
				t.Fatalf("%s %s: error without error_code: %s", ep.method, ep.path, b)
			}
		}
	})
}
