package ingress_test

import (
	"encoding/json"
	"testing"

	"github.com/spinerun/spine/adapters/ingress"
)

// FuzzDecodeBody: the body decoder never panics; a body it accepts has a
// kind and an input, and one it refuses names a code for every problem.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"kind":"summarize","input":"hello"}`,
		`{"kind":"classify","input":"hi","priority":5,"tenant":"acme","attributes":{"team":"ops"},"trace_id":"t-1","contract":"v2","deadline_ms":1000}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"kind":"k","input":"i"}}`,
		`{"kind":5,"input":true,"priority":"high","attributes":[1]}`,
		`{"kind":"k","input":"x","kind":"y"}`,
		`[1,2]`, `null`, `"x"`, `{`, "{\"kind\":\"\xff\"}", `{"attributes":{"a":{"b":1}}}`, `{"priority":1e400}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, ce bool) {
		req, errs := ingress.DecodeBody(body, ce)
		if len(errs) == 0 {
			if req == nil || req.Kind == "" || req.Input == "" || (ce && req.CloudEvent == nil) {
				t.Fatalf("accepted %q as %+v", body, req)
			}
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		if req != nil {
			t.Fatalf("refused with a request: %+v", req)
		}
		for _, e := range errs {
			if e.Code == "" || e.Error == "" {
				t.Fatalf("problem without code or text: %+v", e)
			}
		}
	})
}

func TestDecodeBodyNamesEveryField(t *testing.T) {
	t.Parallel()
	_, errs := ingress.DecodeBody([]byte(`{"kind":5,"input":true,"priority":-3,"tenant":[],"contract":"v9","trace_id":"","extra":1}`), false)
	got := map[string]string{}
	for _, e := range errs {
		got[e.Field] = e.Code
	}
	want := map[string]string{"kind": "wrong_type", "input": "wrong_type", "priority": "invalid_value", "tenant": "wrong_type",
		"contract": "bad_contract", "trace_id": "invalid_value", "extra": "unknown_field"}
	for f, c := range want {
		if got[f] != c {
			t.Errorf("field %s: %q, want %q (all: %v)", f, got[f], c, got)
		}
	}
}
