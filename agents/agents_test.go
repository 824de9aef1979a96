package agents_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/agents"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const good = `agents:
  - kind: summarize
    executor: openai
    base_url: http://127.0.0.1:11434/v1
    model: llama3.2
    api_key_env: OPENAI_API_KEY
    system: "Summarize in one sentence."
    temperature: 0.2
    max_tokens: 256
    timeout: 20s
    canary: { model: llama3.3 }
  - kind: lookup
    executor: mcp
    command: [python3, tools/server.py]
    tool: lookup
  - kind: classify
    executor: synthetic
    latency_mean: 80ms
    canary: { executor: openai, base_url: "http://127.0.0.1:8000/v1", model: qwen }
  - kind: extract
    executor: mcp
    url: http://127.0.0.1:9000/mcp
    tool: extract
    canary: {}
`

func TestParse(t *testing.T) {
	t.Parallel()
	f, err := agents.Parse("agents.yaml", []byte(good), env(map[string]string{"OPENAI_API_KEY": "sk-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Kinds(), ","); got != "summarize,lookup,classify,extract" {
		t.Fatalf("kinds %s", got)
	}
	s := f.Agents[0]
	if s.Executor != agents.OpenAI || s.OpenAI.BaseURL != "http://127.0.0.1:11434/v1" || s.OpenAI.Model != "llama3.2" ||
		s.OpenAI.APIKeyEnv != "OPENAI_API_KEY" || s.OpenAI.System != "Summarize in one sentence." ||
		*s.OpenAI.Temperature != 0.2 || s.OpenAI.MaxTokens != 256 || s.OpenAI.Timeout != 20*time.Second || s.Line != 2 {
		t.Fatalf("summarize: %+v %+v", s, s.OpenAI)
	}
	// The canary is the baseline merged with its overrides.
	c := s.Canary
	if c == nil || c.Executor != agents.OpenAI || c.OpenAI.Model != "llama3.3" || c.OpenAI.BaseURL != s.OpenAI.BaseURL ||
		c.OpenAI.System != s.OpenAI.System || strings.Join(c.Overrides, ",") != "model" {
		t.Fatalf("summarize canary: %+v", c)
	}
	if agents.SameSettings(s, *c) || s.Route(true).OpenAI.Model != "llama3.3" || s.Route(false).OpenAI.Model != "llama3.2" {
		t.Fatal("a canary with another model shares the baseline's settings")
	}
	l := f.Agents[1]
	if l.Executor != agents.MCP || strings.Join(l.MCP.Command, " ") != "python3 tools/server.py" || l.MCP.Tool != "lookup" || l.Canary != nil {
		t.Fatalf("lookup: %+v %+v", l, l.MCP)
	}
	if l.Route(true).MCP != l.MCP {
		t.Fatal("no canary block: the canary route runs the baseline's agent")
	}
	// A canary may switch executor: then it carries only its own settings.
	cl := f.Agents[2]
	if cl.Synthetic == nil || *cl.Synthetic.LatencyMean != 80*time.Millisecond || cl.Canary.Executor != agents.OpenAI ||
		cl.Canary.OpenAI.Model != "qwen" || cl.Canary.Synthetic != nil {
		t.Fatalf("classify: %+v canary %+v", cl, cl.Canary)
	}
	// An empty canary block is the baseline's settings again.
	x := f.Agents[3]
	if x.Canary == nil || !agents.SameSettings(x, *x.Canary) || len(x.Canary.Overrides) != 0 {
		t.Fatalf("extract: %+v", x.Canary)
	}
}

// Every problem is reported at once, each with file, line and key.
func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()
	const bad = `agents:
  - kind: summarize
    executor: openai
    model: llama3.2
    temperature: 3
    max_tokens: many
    timeout: soon
    api_key_env: MISSING_KEY
    colour: blue
    canary: { model: 7, kind: other, url: "http://x" }
  - kind: lookup
    executor: gpt
  - kind: lookup
    executor: mcp
    command: [python3]
    url: ftp://nowhere
  - kind: fetch
    executor: mcp
  - executor: synthetic
    failure_rate: 2
  - kind: summarize2
    executor: synthetic
    canary: { executor: openai }
`
	_, err := agents.Parse("agents.yaml", []byte(bad), env(nil))
	var list *agents.Errors
	if !errors.As(err, &list) {
		t.Fatalf("err %v, want *agents.Errors", err)
	}
	want := []string{
		"agents.yaml:2: agents[0].base_url: missing",
		"agents.yaml:5: agents[0].temperature: 3 is not in 0..2",
		`agents.yaml:6: agents[0].max_tokens: want a whole number, got "many"`,
		`agents.yaml:7: agents[0].timeout: "soon" is not a duration`,
		"agents.yaml:8: agents[0].api_key_env: environment variable MISSING_KEY is not set",
		"agents.yaml:9: agents[0].colour: unknown key",
		"agents.yaml:10: agents[0].canary.model: want a string, got int 7",
		"agents.yaml:10: agents[0].canary.kind: a canary cannot set kind",
		"agents.yaml:10: agents[0].canary.url: not a setting of executor openai (it is mcp's",
		`agents.yaml:12: agents[1].executor: "gpt" is not one of openai, mcp, synthetic`,
		`agents.yaml:13: agents[2].kind: "lookup" is given twice (first at line 11)`,
		"agents.yaml:16: agents[2].url: command (line 15) and url are exclusive",
		`agents.yaml:16: agents[2].url: "ftp://nowhere": want an http or https URL`,
		"agents.yaml:13: agents[2].tool: missing",
		"agents.yaml:17: agents[3].command: one of command",
		"agents.yaml:17: agents[3].tool: missing",
		"agents.yaml:19: agents[4].kind: missing",
		"agents.yaml:20: agents[4].failure_rate: 2 is not in 0..1",
		"agents.yaml:23: agents[5].canary.base_url: missing",
		"agents.yaml:23: agents[5].canary.model: missing",
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
	if len(list.Errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(list.Errs), len(want), msg)
	}
	for _, e := range list.Errs {
		var one *agents.Error
		if !errors.As(e, &one) || one.Line == 0 || one.File != "agents.yaml" {
			t.Errorf("%v: want an *agents.Error with file and line", e)
		}
	}
}

func TestParseRejectsShapes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, want string }{
		{"empty", "", "the file is empty"},
		{"not yaml", "agents: [", "not valid YAML"},
		{"list", "- kind: x", "want a mapping with an agents list"},
		{"no agents", "kinds: []", "f.yaml:1: kinds: unknown key"},
		{"agents missing", "{}", "agents: missing"},
		{"agents not a list", "agents: 3", "agents: want a list of agents"},
		{"no agent", "agents: []", "agents: empty"},
		{"agent not a mapping", "agents: [summarize]", "agents[0]: want a mapping"},
		{"two documents", "agents: []\n---\nagents: []\n", "more than one YAML document"},
		{"key twice", "agents:\n- kind: a\n  kind: b\n  executor: synthetic\n", "f.yaml:3: agents[0].kind: given twice"},
		{"command not a list", "agents:\n- {kind: a, executor: mcp, tool: t, command: python3}\n", "agents[0].command: want the server's argv as a list"},
		{"api key given as value", "agents:\n- {kind: a, executor: openai, base_url: 'http://h/v1', model: m, api_key_env: sk-123}\n", `"sk-123" is not an environment variable name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := agents.Parse("f.yaml", []byte(tt.in), env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agents.Load(path, env(map[string]string{"OPENAI_API_KEY": "x"})); err != nil {
		t.Fatal(err)
	}
	_, err := agents.Load(path+".missing", nil)
	if err == nil || !strings.Contains(err.Error(), path+".missing: cannot read the agents file") {
		t.Fatalf("err %v", err)
	}
}

// The view of /v1/agents shows every setting, the api key's variable by
// name and whether it is set, never the key.
func TestRedacted(t *testing.T) {
	t.Parallel()
	vars := env(map[string]string{"OPENAI_API_KEY": "sk-secret"})
	f, err := agents.Parse("agents.yaml", []byte(good), vars)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f.Redacted(vars))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "sk-secret") {
		t.Fatalf("the key leaked: %s", s)
	}
	for _, w := range []string{
		`"file":"agents.yaml"`,
		`"api_key_env":{"name":"OPENAI_API_KEY","set":true}`,
		`"canary":{"executor":"openai","overrides":["model"],"settings":{`,
		`"model":"llama3.3"`,
		`"command":["python3","tools/server.py"]`,
		`"timeout":"20s"`,
	} {
		if !strings.Contains(s, w) {
			t.Errorf("view misses %s:\n%s", w, s)
		}
	}
	if got := f.Agents[0].Summary(); !strings.Contains(got, "api_key_env=OPENAI_API_KEY") || !strings.Contains(got, "model=llama3.2") ||
		!strings.Contains(got, `system="Summarize in one sentence."`) {
		t.Errorf("summary %s", got)
	}
	unset := f.Redacted(nil)
	if unset.Agents[0].Settings["api_key_env"].(map[string]any)["set"] != false {
		t.Error("an unknown variable shows as set")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("agents: [{kind: a, executor: synthetic, canary: {executor: mcp}}]"))
	f.Add([]byte("agents:\n- &a {kind: x}\n- *a\n"))
	f.Add([]byte("agents: [{<<: {kind: a}, executor: openai}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := agents.Parse("f.yaml", data, env(map[string]string{"K": "v"}))
		if (file == nil) == (err == nil) {
			t.Fatalf("file %v and err %v: want exactly one", file, err)
		}
		if file != nil {
			for _, a := range file.Agents {
				if (a.OpenAI != nil) != (a.Executor == agents.OpenAI) || (a.MCP != nil) != (a.Executor == agents.MCP) ||
					(a.Synthetic != nil) != (a.Executor == agents.Synthetic) {
					t.Fatalf("agent %+v: settings do not match the executor", a)
				}
			}
			if _, err := json.Marshal(file.Redacted(nil)); err != nil {
				t.Fatal(err)
			}
		}
	})
}
