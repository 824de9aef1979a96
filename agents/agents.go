// Package agents is "agents as data": the agents file (SPINE_AGENTS) that
// maps each intent kind to the executor that serves it — an
// OpenAI-compatible model, an MCP tool, or the synthetic simulator — and
// its settings, with an optional canary block that overrides them for the
// v2 route, so a canary can be another model, prompt or tool.
//
//	agents:
//	  - kind: summarize
//	    executor: openai          # openai | mcp | synthetic
//	    base_url: http://127.0.0.1:11434/v1
//	    model: llama3.2
//	    api_key_env: OPENAI_API_KEY   # optional: the variable holding the key
//	    system: "Summarize in one sentence."
//	    canary: { model: llama3.3 }
//	    fallback: summarize_small     # optional: runs the intent when this agent cannot
//	  - kind: lookup
//	    executor: mcp
//	    command: [python3, tools/server.py]   # or url: http://127.0.0.1:9000/mcp
//	    tool: lookup
//	    output_schema: {type: array}          # any executor: see OutputSchema
//
// The package is data only: it parses and validates the file and exposes
// typed values; it imports no adapter, so anything may import it. The
// composition root (cmd/spine/stack) turns each Agent into an executor.
//
// A fallback names another agent of the file: when a run's retries on
// this agent are spent, the stateflow may re-run the intent there (a
// run.fallback event says from, to and why). Fallback chains are acyclic
// and at most MaxFallbackChain long.
//
// Every problem of a file is reported at once, each naming the file, the
// line and the key (agents.yaml:7: agents[1].executor: "gpt" is not one of
// openai, mcp, synthetic). Unknown keys and duplicate kinds are errors.
// A key's secret value is never read here: api_key_env names a variable
// that must be set, and only its name is kept.
package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Executor names the kind of executor that serves an intent kind.
type Executor string

// The executors an agent may name.
const (
	OpenAI    Executor = "openai"
	MCP       Executor = "mcp"
	Synthetic Executor = "synthetic"
)

// Executors are the known executors, in the order errors list them.
var Executors = []Executor{OpenAI, MCP, Synthetic}

// File is a loaded, valid agents file.
type File struct {
	// Path is the file as named (SPINE_AGENTS).
	Path string
	// Agents are the file's agents in file order, one per kind.
	Agents []Agent
}

// Kinds are the intent kinds the file serves, in file order.
func (f *File) Kinds() []string {
	out := make([]string, len(f.Agents))
	for i, a := range f.Agents {
		out[i] = a.Kind
	}
	return out
}

// Agent returns the agent serving kind.
func (f *File) Agent(kind string) (Agent, bool) {
	for _, a := range f.Agents {
		if a.Kind == kind {
			return a, true
		}
	}
	return Agent{}, false
}

// Agent is the executor serving one intent kind and its settings. Exactly
// one of OpenAI, MCP and Synthetic is set, the one Executor names.
type Agent struct {
	Kind     string
	Executor Executor
	// Line is where the agent starts in the file.
	Line      int
	OpenAI    *OpenAISettings
	MCP       *MCPSettings
	Synthetic *SyntheticSettings
	// OutputSchema, from output_schema, is the JSON Schema every artifact
	// of the kind must validate against (gate.schema); nil: none.
	OutputSchema *OutputSchema
	// Canary is the agent of the canary (v2) route: the baseline's settings
	// with the canary block's overrides merged in, or, when the canary
	// block switches executor, the block's own settings. Nil when the file
	// has no canary block: the canary route runs the baseline's agent.
	Canary *Agent
	// Overrides are the keys the canary block set, sorted (on Canary only).
	Overrides []string
	// Fallback is fallback, the kind of another agent of the file that runs
	// the intent when this one cannot (its retries spent): the stateflow's
	// degraded path. Empty: none.
	Fallback string
	// FallbackLine is where fallback is set.
	FallbackLine int
}

// Fallbacks maps each agent's kind to its fallback agent's, for agents
// that have one.
func (f *File) Fallbacks() map[string]string {
	m := map[string]string{}
	for _, a := range f.Agents {
		if a.Fallback != "" {
			m[a.Kind] = a.Fallback
		}
	}
	return m
}

// Route returns the agent that serves route: the canary's for canary when
// there is one, else a itself.
func (a Agent) Route(canary bool) Agent {
	if canary && a.Canary != nil {
		return *a.Canary
	}
	return a
}

// SameSettings reports whether a and b run the same executor with the same
// settings (a canary block that overrides nothing, or sets the baseline's
// values again): the two routes may share one executor.
func SameSettings(a, b Agent) bool {
	if a.Executor != b.Executor {
		return false
	}
	switch a.Executor {
	case OpenAI:
		return a.OpenAI.equal(b.OpenAI)
	case MCP:
		return a.MCP.equal(b.MCP)
	case Synthetic:
		return a.Synthetic.equal(b.Synthetic)
	}
	return false
}

// OpenAISettings are the settings of an OpenAI-compatible Chat Completions
// model (OpenAI, Ollama, vLLM, llama.cpp's server, ...).
type OpenAISettings struct {
	// BaseURL is base_url, the API root (…/v1). Required.
	BaseURL string
	// Model is model. Required.
	Model string
	// APIKeyEnv is api_key_env, the name of the environment variable that
	// holds the API key; it must be set. Empty: no key is sent.
	APIKeyEnv string
	// System is system, the system prompt. Empty: none.
	System string
	// Temperature is temperature, 0..2. Nil: the server's default.
	Temperature *float64
	// MaxTokens is max_tokens, ≥ 0. 0: the server's default.
	MaxTokens int
	// JSON is json: ask for a JSON object answer.
	JSON bool
	// Timeout is timeout, a Go duration ("20s") bounding one call. 0: the
	// state's timeout only.
	Timeout time.Duration
}

func (s *OpenAISettings) equal(o *OpenAISettings) bool {
	if s == nil || o == nil {
		return s == o
	}
	a, b := *s, *o
	if (a.Temperature == nil) != (b.Temperature == nil) || (a.Temperature != nil && *a.Temperature != *b.Temperature) {
		return false
	}
	a.Temperature, b.Temperature = nil, nil
	return a == b
}

// MCPSettings are the settings of one tool of an MCP server, started over
// stdio (Command) or reached over streamable HTTP (URL): exactly one.
type MCPSettings struct {
	// Command is command, the server's argv.
	Command []string
	// URL is url, a streamable HTTP endpoint.
	URL string
	// Tool is tool, the tool every call invokes. Required.
	Tool string
	// ConnectTimeout is connect_timeout, bounding one connection attempt.
	// 0: the adapter's default.
	ConnectTimeout time.Duration
}

func (s *MCPSettings) equal(o *MCPSettings) bool {
	if s == nil || o == nil {
		return s == o
	}
	return slices.Equal(s.Command, o.Command) && s.URL == o.URL && s.Tool == o.Tool && s.ConnectTimeout == o.ConnectTimeout
}

// SyntheticSettings override the synthetic simulator's parameters for one
// kind; a nil field keeps the process's (SPINE_SYNTHETIC_*, and for the
// canary route SPINE_CANARY_*).
type SyntheticSettings struct {
	LatencyMean *time.Duration // latency_mean
	LatencyP99  *time.Duration // latency_p99
	FailureRate *float64       // failure_rate, 0..1
	HangRate    *float64       // hang_rate, 0..1
	ScoreMean   *float64       // score_mean
	ScoreStddev *float64       // score_stddev, ≥ 0
}

func (s *SyntheticSettings) equal(o *SyntheticSettings) bool {
	if s == nil || o == nil {
		return s == o
	}
	eqd := func(a, b *time.Duration) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	eqf := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return eqd(s.LatencyMean, o.LatencyMean) && eqd(s.LatencyP99, o.LatencyP99) && eqf(s.FailureRate, o.FailureRate) &&
		eqf(s.HangRate, o.HangRate) && eqf(s.ScoreMean, o.ScoreMean) && eqf(s.ScoreStddev, o.ScoreStddev)
}

// View is what GET /v1/agents and `spine agents` show of a file: every
// setting but secrets. An API key appears as its variable's name and
// whether it is set, never its value.
type View struct {
	File   string      `json:"file"`
	Agents []AgentView `json:"agents"`
}

// AgentView is one agent as shown.
type AgentView struct {
	Kind     string         `json:"kind"`
	Executor Executor       `json:"executor"`
	Settings map[string]any `json:"settings"`
	// Canary is the canary route's agent (merged), with the keys the canary
	// block overrides; absent when the canary runs the baseline's agent.
	Canary *CanaryView `json:"canary,omitempty"`
	// Fallback is the agent that runs the intent when this one cannot.
	Fallback string `json:"fallback,omitempty"`
}

// CanaryView is the canary route's agent as shown.
type CanaryView struct {
	Executor  Executor       `json:"executor"`
	Overrides []string       `json:"overrides"`
	Settings  map[string]any `json:"settings"`
}

// Redacted returns the file as shown by GET /v1/agents: settings by their
// file keys, api_key_env as {"name": NAME, "set": bool} with set asked of
// lookup (nil: reported unset), never the key.
func (f *File) Redacted(lookup func(string) (string, bool)) View {
	v := View{File: f.Path, Agents: []AgentView{}}
	for _, a := range f.Agents {
		av := AgentView{Kind: a.Kind, Executor: a.Executor, Settings: a.settings(lookup), Fallback: a.Fallback}
		if a.Canary != nil {
			av.Canary = &CanaryView{Executor: a.Canary.Executor, Overrides: a.Canary.Overrides, Settings: a.Canary.settings(lookup)}
			if av.Canary.Overrides == nil {
				av.Canary.Overrides = []string{}
			}
		}
		v.Agents = append(v.Agents, av)
	}
	return v
}

// settings are a's settings by file key, secrets redacted.
func (a Agent) settings(lookup func(string) (string, bool)) map[string]any {
	m := map[string]any{}
	switch {
	case a.OpenAI != nil:
		s := a.OpenAI
		m["base_url"], m["model"] = s.BaseURL, s.Model
		if s.APIKeyEnv != "" {
			set := false
			if lookup != nil {
				v, ok := lookup(s.APIKeyEnv)
				set = ok && v != ""
			}
			m["api_key_env"] = map[string]any{"name": s.APIKeyEnv, "set": set}
		}
		if s.System != "" {
			m["system"] = s.System
		}
		if s.Temperature != nil {
			m["temperature"] = *s.Temperature
		}
		if s.MaxTokens != 0 {
			m["max_tokens"] = s.MaxTokens
		}
		if s.JSON {
			m["json"] = true
		}
		if s.Timeout != 0 {
			m["timeout"] = s.Timeout.String()
		}
	case a.MCP != nil:
		s := a.MCP
		m["tool"] = s.Tool
		if len(s.Command) > 0 {
			m["command"] = s.Command
		}
		if s.URL != "" {
			m["url"] = s.URL
		}
		if s.ConnectTimeout != 0 {
			m["connect_timeout"] = s.ConnectTimeout.String()
		}
	case a.Synthetic != nil:
		s := a.Synthetic
		for k, d := range map[string]*time.Duration{"latency_mean": s.LatencyMean, "latency_p99": s.LatencyP99} {
			if d != nil {
				m[k] = d.String()
			}
		}
		for k, f := range map[string]*float64{"failure_rate": s.FailureRate, "hang_rate": s.HangRate, "score_mean": s.ScoreMean, "score_stddev": s.ScoreStddev} {
			if f != nil {
				m[k] = *f
			}
		}
	}
	return m
}

// Summary is a one-line account of a's settings for tables and logs:
// "model=llama3.2 base_url=http://…", secrets never included.
func (a Agent) Summary() string {
	return SummaryOf(a.settings(nil))
}

// SummaryOf renders shown settings as sorted key=value pairs; an api key
// shows as its variable's name.
func SummaryOf(settings map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		v := settings[k]
		if k == "api_key_env" {
			if m, ok := v.(map[string]any); ok {
				v = m["name"]
			}
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
			if strings.ContainsAny(s, " \t\"") {
				s = fmt.Sprintf("%q", s)
			}
		default:
			b, _ := json.Marshal(v)
			s = string(b)
		}
		parts = append(parts, k+"="+s)
	}
	return strings.Join(parts, " ")
}

// Config is the agents' setting, read from the environment by the
// composition root.
type Config struct {
	// File is SPINE_AGENTS, the path of the agents file. Default empty:
	// the synthetic executor serves every kind of SPINE_INTENT_KINDS (the
	// SPINE_SYNTHETIC_* and SPINE_CANARY_* settings). When set, the file's
	// kinds are the intent kinds, SPINE_INTENT_KINDS is not used, and a
	// file that does not load stops the process at start.
	File string `env:"SPINE_AGENTS"`
}

// Load loads the file named, if any: nil and no errors when none is.
// lookup tells whether a variable named by api_key_env is set.
func (c *Config) Load(lookup func(string) (string, bool)) (*File, []error) {
	if c.File == "" {
		return nil, nil
	}
	f, err := Load(c.File, lookup)
	if err != nil {
		var list *Errors
		if errors.As(err, &list) {
			return nil, list.Errs
		}
		return nil, []error{err}
	}
	return f, nil
}
