package stack_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/agents"
	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas/thread"
)

func writeAgents(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An agents file's problems are reported with the other configuration
// problems, at once, each naming the file, line and key.
func TestLoadConfigReportsAgentsFileErrors(t *testing.T) {
	t.Parallel()
	path := writeAgents(t, "agents:\n  - kind: summarize\n    executor: gpt\n  - kind: lookup\n    executor: mcp\n    tool: lookup\n    api_key_env: K\n")
	_, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"SPINE_AGENTS":     path,
		"SPINE_PARTITIONS": "many",
	}))
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want a *pipeline.ConfigError", err)
	}
	for _, w := range []string{
		"SPINE_PARTITIONS",
		"SPINE_AGENTS: " + path + `:3: agents[0].executor: "gpt" is not one of openai, mcp, synthetic`,
		"SPINE_AGENTS: " + path + ":4: agents[1].command: one of command",
		"SPINE_AGENTS: " + path + ":7: agents[1].api_key_env: not a setting of executor mcp",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	_, err = stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_AGENTS": path + ".missing"}))
	if err == nil || !strings.Contains(err.Error(), "cannot read the agents file") {
		t.Fatalf("missing file: %v", err)
	}
}

const agentsFile = `agents:
  - kind: summarize
    executor: synthetic
    latency_mean: 10ms
    canary: { latency_mean: 500ms }
  - kind: lookup
    executor: mcp
    command: [/nonexistent/server]
    tool: lookup
`

// With an agents file the kinds are the file's, the dataplane routes each
// kind and route to its executor, MCP executors connect only in Run, and
// GET /v1/agents shows what is loaded.
func TestBuildWithAgentsFile(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1",
		"SPINE_AGENTS":  writeAgents(t, agentsFile),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Orchestrator.Kinds(), ","); got != "summarize,lookup" {
		t.Fatalf("intent kinds %s, want the file's", got)
	}
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}, stack.Dataplane)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.Executor.(*dataplane.Agents); !ok {
		t.Fatalf("executor %T, want *dataplane.Agents", st.Executor)
	}
	req := func(kind, route string) dataplane.Request {
		return dataplane.Request{TraceID: "t", DispatchSpan: "s", Kind: kind, Route: route, Input: []byte(`{}`)}
	}
	base, err := st.Executor.Execute(t.Context(), req("summarize", thread.RouteBaseline))
	if err != nil {
		t.Fatal(err)
	}
	canary, err := st.Executor.Execute(t.Context(), req("summarize", thread.RouteCanary))
	if err != nil {
		t.Fatal(err)
	}
	if base.Latency >= canary.Latency || canary.Latency < 200e6 {
		t.Errorf("latency baseline %s canary %s: want the canary's override", base.Latency, canary.Latency)
	}
	_, err = st.Executor.Execute(t.Context(), req("lookup", thread.RouteBaseline))
	if k, retry, _ := dataplane.Classify(err); k != dataplane.KindExecutorNotReady || !retry {
		t.Errorf("mcp before Run: %v, want executor_not_ready, retryable", err)
	}
	_, err = st.Executor.Execute(t.Context(), req("translate", thread.RouteBaseline))
	if dataplane.ErrorKind(err) != dataplane.KindAgentNotFound {
		t.Errorf("unknown kind: %v", err)
	}

	rec := httptest.NewRecorder()
	st.Routes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/agents", nil))
	var v agents.View
	body, _ := io.ReadAll(rec.Body)
	if err := json.Unmarshal(body, &v); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/agents: %d %v %s", rec.Code, err, body)
	}
	if v.File != cfg.Agents.File || len(v.Agents) != 2 || v.Agents[0].Canary == nil || v.Agents[0].Canary.Settings["latency_mean"] != "500ms" ||
		v.Agents[1].Executor != agents.MCP || v.Agents[1].Settings["tool"] != "lookup" {
		t.Fatalf("GET /v1/agents: %s", body)
	}
}

// With no agents file the synthetic executor serves every kind, as before.
func TestBuildWithoutAgentsFile(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}, stack.Dataplane)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Executor.Execute(t.Context(), dataplane.Request{Kind: "anything", Route: thread.RouteBaseline}); err != nil {
		t.Fatalf("synthetic: %v", err)
	}
	v := stack.AgentsView(cfg)
	if v.File != "" || len(v.Agents) != len(cfg.Orchestrator.Kinds()) || v.Agents[0].Executor != agents.Synthetic ||
		v.Agents[0].Settings["latency_mean"] != "50ms" || v.Agents[0].Canary != nil {
		t.Fatalf("view %+v", v)
	}
	// The SPINE_CANARY_* overrides show as the canary's.
	cfg, err = stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_CANARY_LATENCY_MEAN": "300ms"}))
	if err != nil {
		t.Fatal(err)
	}
	v = stack.AgentsView(cfg)
	if c := v.Agents[0].Canary; c == nil || strings.Join(c.Overrides, ",") != "latency_mean" || c.Settings["latency_mean"] != "300ms" {
		t.Fatalf("canary view %+v", v.Agents[0].Canary)
	}
}

// chatServer is an OpenAI-compatible server that answers each model's name
// and the user message.
func chatServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Role, Content string
			} `json:"messages"`
		}
		if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		var parts []string
		for _, m := range req.Messages {
			parts = append(parts, m.Role+":"+m.Content)
		}
		content := req.Model + " " + strings.Join(parts, " ")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"choices": []any{map[string]any{"message": map[string]any{"content": content}, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": 3, "completion_tokens": 2},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An openai agent calls its model; its canary another model, with the
// baseline's prompt.
func TestBuildOpenAIAgent(t *testing.T) {
	t.Parallel()
	srv := chatServer(t)
	file := "agents:\n  - kind: summarize\n    executor: openai\n    base_url: " + srv.URL + "/v1\n    model: model-a\n    system: be brief\n    canary: { model: model-b }\n" +
		"  - kind: same\n    executor: openai\n    base_url: " + srv.URL + "/v1\n    model: model-a\n    canary: { model: model-a }\n"
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1",
		"SPINE_AGENTS":  writeAgents(t, file),
	}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}, stack.Dataplane)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, tt := range []struct{ kind, route, want string }{
		{"summarize", thread.RouteBaseline, "model-a system:be brief user:hello"},
		{"summarize", thread.RouteCanary, "model-b system:be brief user:hello"},
		{"same", thread.RouteCanary, "model-a user:hello"},
	} {
		res, err := st.Executor.Execute(t.Context(), dataplane.Request{Kind: tt.kind, Route: tt.route, Input: []byte("hello")})
		if err != nil || string(res.Content) != tt.want {
			t.Errorf("%s/%s: %q %v, want %q", tt.kind, tt.route, res.Content, err, tt.want)
		}
	}
	// The canary that sets the baseline's settings again shares its executor.
	ag := st.Executor.(*dataplane.Agents)
	b, _ := ag.Executor("same", thread.RouteBaseline)
	c, _ := ag.Executor("same", thread.RouteCanary)
	if b != c {
		t.Error("a canary with the baseline's settings got its own executor")
	}
	b, _ = ag.Executor("summarize", thread.RouteBaseline)
	c, _ = ag.Executor("summarize", thread.RouteCanary)
	if b == c {
		t.Error("a canary with another model shares the baseline's executor")
	}
}
