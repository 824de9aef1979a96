package agents_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spinerun/spine/agents"
)

// An agent's fallback names another agent of the file; an unknown one, a
// cycle or a canary setting it are refused with the line.
func TestFallbacks(t *testing.T) {
	t.Parallel()
	ok := `agents:
  - kind: summarize
    executor: synthetic
    fallback: summarize_small
  - kind: summarize_small
    executor: synthetic
    fallback: cached
  - kind: cached
    executor: synthetic
`
	f, err := agents.Parse("a.yaml", []byte(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Fallbacks(); len(m) != 2 || m["summarize"] != "summarize_small" || m["summarize_small"] != "cached" {
		t.Fatalf("fallbacks %v", m)
	}
	if v := f.Redacted(nil); v.Agents[0].Fallback != "summarize_small" {
		t.Fatalf("view %+v", v.Agents[0])
	}
	for _, tc := range []struct{ name, src, want string }{
		{"unknown", "agents:\n  - kind: a\n    executor: synthetic\n    fallback: b\n", `a.yaml:4: agents[0].fallback: "b" is no agent of this file`},
		{"self", "agents:\n  - kind: a\n    executor: synthetic\n    fallback: a\n", `a.yaml:4: agents[0].fallback: "a": want the kind of another agent`},
		{"cycle", "agents:\n  - kind: a\n    executor: synthetic\n    fallback: b\n  - kind: b\n    executor: synthetic\n    fallback: a\n", "a.yaml:4: agents[0].fallback: fallback chain a → b → a is cyclic"},
		{"canary", "agents:\n  - kind: a\n    executor: synthetic\n    canary: {fallback: b}\n  - kind: b\n    executor: synthetic\n", "a.yaml:4: agents[0].canary.fallback: a canary cannot set fallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := agents.Parse("a.yaml", []byte(tc.src), nil)
			var list *agents.Errors
			if !errors.As(err, &list) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
