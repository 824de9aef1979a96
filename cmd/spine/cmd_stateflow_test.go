package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/processors/orchestrator"
)

// `spine stateflow` prints the configured machine as a table and as a
// Mermaid diagram; --file refuses a bad file with its line, exit 1.
func TestStateflowCmd(t *testing.T) {
	code, out, stderr := runCLI(t, "", "stateflow")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"(built-in)", "STATE", "ENTRIES", "TIMEOUT", "RETRY", "FALLBACK", "EVENT",
		"queued      routed on queue", "5m0s", "timed_out  run.queued", "3 attempts, 200ms×2 ≤5s, full jitter"} {
		if !strings.Contains(out, w) {
			t.Errorf("table misses %q:\n%s", w, out)
		}
	}
	code, out, _ = runCLI(t, "", "stateflow", "--format", "mermaid")
	if code != exitOK || !strings.HasPrefix(out, "stateDiagram-v2\n") || !strings.Contains(out, "    [*] --> received : intent\n") ||
		!strings.Contains(out, "    queued --> timed_out : timeout, run_timeout\n") || !strings.Contains(out, "    completed --> [*]\n") {
		t.Fatalf("mermaid (exit %d):\n%s", code, out)
	}
	code, _, stderr = runCLI(t, "", "stateflow", "--file", "../../processors/orchestrator/testdata/stateflow/unbounded.yaml")
	if code != exitError || !strings.Contains(stderr, "unbounded.yaml:9: state \"dispatched\" is unbounded") {
		t.Fatalf("bad file: exit %d, %s", code, stderr)
	}
	code, _, _ = runCLI(t, "", "stateflow", "--format", "svg")
	if code == exitOK {
		t.Fatal("unknown format accepted")
	}
}

// The README shows the built-in machine as `spine stateflow --format
// mermaid` prints it.
func TestStateflowInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	flow, err := cfg.Orchestrator.Flow()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```mermaid\n"+flow.Mermaid()+"```") {
		t.Fatalf("README's stateflow diagram is not `spine stateflow --format mermaid`:\n%s", flow.Mermaid())
	}
}

// GET /v1/stateflow serves the machine as JSON, its Mermaid diagram with it.
func TestStateflowAPI(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_QUEUE_TIMEOUT": "90s"}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stack.StateflowHandler(cfg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v stack.StateflowView
	if err := json.Unmarshal(b, &v); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v: %s", resp.StatusCode, err, b)
	}
	if v.Source != "built-in" || !strings.HasPrefix(v.Version, "sha256:") || !strings.HasPrefix(v.Mermaid, "stateDiagram-v2") || len(v.States) != 11 {
		t.Fatalf("view: %+v", v)
	}
	for _, s := range v.States {
		if s.State == string(orchestrator.StateQueued) && (s.Timeout != "1m30s" || s.Fallback != "timed_out") {
			t.Fatalf("queued: %+v", s)
		}
	}
}
