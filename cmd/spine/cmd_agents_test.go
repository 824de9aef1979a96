package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
)

const agentsYAML = `agents:
  - kind: summarize
    executor: openai
    base_url: http://127.0.0.1:11434/v1
    model: llama3.2
    api_key_env: SPINE_TEST_AGENTS_KEY
    system: "Summarize in one sentence."
    canary: { model: llama3.3 }
  - kind: lookup
    executor: mcp
    url: http://127.0.0.1:9000/mcp
    tool: lookup
`

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// `spine agents --file` checks a file offline: the table, or every
// problem and exit 1.
func TestAgentsFile(t *testing.T) {
	t.Setenv("SPINE_TEST_AGENTS_KEY", "sk-not-to-print")
	path := writeFile(t, agentsYAML)
	code, out, stderr := runCLI(t, "", "agents", "--file", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		path + ": 2 agent(s), valid",
		"KIND       ROUTE     EXECUTOR  SETTINGS",
		`summarize  baseline  openai    api_key_env=SPINE_TEST_AGENTS_KEY base_url=http://127.0.0.1:11434/v1 model=llama3.2 system="Summarize in one sentence."`,
		"summarize  canary    openai    model=llama3.3",
		"lookup     baseline  mcp       tool=lookup url=http://127.0.0.1:9000/mcp",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output misses %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "sk-not-to-print") {
		t.Fatal("the key was printed")
	}
	code, out, _ = runCLI(t, "", "agents", "--file", path, "-o", "json")
	if code != exitOK || !strings.Contains(out, `"name": "SPINE_TEST_AGENTS_KEY"`) || !strings.Contains(out, `"set": true`) || strings.Contains(out, "sk-not") {
		t.Fatalf("json: exit %d:\n%s", code, out)
	}

	bad := writeFile(t, "agents:\n  - kind: a\n    executor: gpt\n  - kind: a\n    executor: mcp\n")
	code, _, stderr = runCLI(t, "", "agents", "--file", bad)
	if code != exitError {
		t.Fatalf("bad file: exit %d, want 1", code)
	}
	for _, w := range []string{bad + `:3: agents[0].executor: "gpt" is not one of`, bad + `:4: agents[1].kind: "a" is given twice`, bad + ":4: agents[1].tool: missing", "4 problem(s)"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr misses %q:\n%s", w, stderr)
		}
	}
}

// `spine agents` prints what the running stack serves on /v1/agents.
func TestAgentsFromAPI(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_INTENT_KINDS": "summarize,classify"}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stack.AgentsHandler(cfg))
	defer srv.Close()
	code, out, stderr := runCLI(t, "", "agents", "--api", srv.URL)
	if code != exitOK || !strings.Contains(out, "no agents file (SPINE_AGENTS unset)") || !strings.Contains(out, "classify   baseline  synthetic") {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	srv.Close()
	code, _, stderr = runCLI(t, "", "agents", "--api", srv.URL)
	if code != exitError || !strings.Contains(stderr, "is spine up at "+srv.URL) {
		t.Fatalf("no stack: exit %d: %s", code, stderr)
	}
}
