package agents

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxErrors bounds the problems one file reports.
const maxErrors = 100

// Load reads and validates the agents file at path. lookup tells whether
// an environment variable named by api_key_env is set (nil: os.LookupEnv);
// only its presence is checked. A file with any problem returns a nil
// *File and an *Errors listing every one.
func Load(path string, lookup func(string) (string, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{Errs: []error{&Error{File: path, Msg: fmt.Sprintf("cannot read the agents file: %v", errors.Unwrap(err))}}}
	}
	return Parse(path, data, lookup)
}

// Parse validates the agents file data, named path in errors; see Load.
func Parse(path string, data []byte, lookup func(string) (string, bool)) (*File, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	p := &parser{file: path, lookup: lookup, seen: map[string]bool{}}
	f := p.parse(data)
	if len(p.errs) > 0 {
		// Top to bottom, as a reader fixes them.
		slices.SortStableFunc(p.errs, func(a, b error) int { return a.(*Error).Line - b.(*Error).Line })
		return nil, &Errors{Errs: p.errs}
	}
	return f, nil
}

// Error is one problem of an agents file: where (file, line) and which key.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem has no line (an unreadable file).
	Line int
	// Key is the key's path, such as agents[1].canary.model; empty for the
	// whole file.
	Key string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are every problem of an agents file, by line.
type Errors struct{ Errs []error }

func (e *Errors) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the individual problems (each an *Error).
func (e *Errors) Unwrap() []error { return e.Errs }

// Keys every agent may have, and each executor's settings.
var (
	commonKeys  = []string{"kind", "executor", "canary", "output_schema", "fallback"}
	settingKeys = map[Executor][]string{
		OpenAI:    {"base_url", "model", "api_key_env", "system", "temperature", "max_tokens", "json", "timeout"},
		MCP:       {"command", "url", "tool", "connect_timeout"},
		Synthetic: {"latency_mean", "latency_p99", "failure_rate", "hang_rate", "score_mean", "score_stddev"},
	}
)

// kindPattern is what a kind may look like (it is a topic-safe word).
var kindPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// envPattern is a portable environment variable name.
var envPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type parser struct {
	file   string
	lookup func(string) (string, bool)
	errs   []error
	seen   map[string]bool // error texts, so a merged canary does not repeat its baseline's
	kinds  map[string]int  // kind → line of its first agent
	// inheriting is set while a canary that keeps its baseline's executor
	// is read: a key missing there is missing in the baseline, reported once.
	inheriting bool
}

func (p *parser) bad(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	e := &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	if s := e.Error(); !p.seen[s] && len(p.errs) < maxErrors {
		p.seen[s] = true
		p.errs = append(p.errs, e)
	}
}

func (p *parser) parse(data []byte) *File {
	f := &File{Path: p.file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.bad(nil, "", "the file is empty: want a mapping with an agents list")
			return f
		}
		p.bad(nil, "", "not valid YAML: %s", yamlMsg(err))
		return f
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		p.bad(&more, "", "more than one YAML document: want one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.bad(root, "", "want a mapping with an agents list, got %s", kindName(root))
		return f
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "agents" {
			p.bad(k, k.Value, "unknown key (the file has one key, agents)")
			continue
		}
		list = v
	}
	if list == nil {
		p.bad(root, "agents", "missing: list the agents, one per intent kind")
		return f
	}
	if list.Kind != yaml.SequenceNode {
		p.bad(list, "agents", "want a list of agents, got %s", kindName(list))
		return f
	}
	if len(list.Content) == 0 {
		p.bad(list, "agents", "empty: list at least one agent")
	}
	p.kinds = map[string]int{}
	for i, n := range list.Content {
		if a, ok := p.agent(fmt.Sprintf("agents[%d]", i), n); ok {
			f.Agents = append(f.Agents, a)
		}
	}
	p.fallbacks(f)
	return f
}

// MaxFallbackChain bounds a chain of fallback agents (an agent's fallback,
// its fallback's, …).
const MaxFallbackChain = 4

// fallbacks checks each agent's fallback: another agent of the file, in a
// chain that ends, no longer than MaxFallbackChain.
func (p *parser) fallbacks(f *File) {
	for i, a := range f.Agents {
		if a.Fallback == "" {
			continue
		}
		path := fmt.Sprintf("agents[%d].fallback", i)
		line := &yaml.Node{Line: a.FallbackLine}
		if _, ok := f.Agent(a.Fallback); !ok {
			p.bad(line, path, "%q is no agent of this file: a fallback runs the intent on another agent", a.Fallback)
			continue
		}
		chain := []string{a.Kind}
		for cur := a; cur.Fallback != ""; {
			if slices.Contains(chain, cur.Fallback) {
				p.bad(line, path, "fallback chain %s → %s is cyclic", strings.Join(chain, " → "), cur.Fallback)
				break
			}
			chain = append(chain, cur.Fallback)
			if len(chain)-1 > MaxFallbackChain {
				p.bad(line, path, "fallback chain %s is longer than %d", strings.Join(chain, " → "), MaxFallbackChain)
				break
			}
			next, ok := f.Agent(cur.Fallback)
			if !ok {
				break
			}
			cur = next
		}
	}
}

// yamlMsg strips the library's prefix and keeps the line it names.
func yamlMsg(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// field is one key of a mapping and its value.
type field struct {
	path string // agents[1].canary.model
	key  *yaml.Node
	val  *yaml.Node
}

// fields reads a mapping's keys; a key given twice is an error.
func (p *parser) fields(path string, n *yaml.Node) map[string]field {
	out := map[string]field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := path + "." + k.Value
		if k.Kind != yaml.ScalarNode {
			p.bad(k, path, "a key must be a plain word, got %s", kindName(k))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.bad(k, kp, "given twice")
			continue
		}
		out[k.Value] = field{path: kp, key: k, val: v}
	}
	return out
}

// agent reads one agent and its canary.
func (p *parser) agent(path string, n *yaml.Node) (Agent, bool) {
	if n.Kind != yaml.MappingNode {
		p.bad(n, path, "want a mapping (kind, executor, settings), got %s", kindName(n))
		return Agent{}, false
	}
	fs := p.fields(path, n)
	nerr := len(p.errs)
	a := Agent{Line: n.Line}
	if f, ok := fs["kind"]; !ok {
		p.bad(n, path+".kind", "missing: which intent kind does this agent serve?")
	} else if a.Kind, ok = p.str(f); ok {
		switch {
		case !kindPattern.MatchString(a.Kind):
			p.bad(f.val, f.path, "%q is not a kind name (letters, digits, _ . -)", a.Kind)
		case p.kinds[a.Kind] != 0:
			p.bad(f.val, f.path, "%q is given twice (first at line %d): one agent per kind", a.Kind, p.kinds[a.Kind])
		default:
			p.kinds[a.Kind] = f.val.Line
		}
	}
	if f, ok := fs["fallback"]; ok {
		if a.Fallback, ok = p.str(f); ok {
			a.FallbackLine = f.val.Line
			if !kindPattern.MatchString(a.Fallback) || a.Fallback == a.Kind {
				p.bad(f.val, f.path, "%q: want the kind of another agent of this file", a.Fallback)
			}
		}
	}
	base := p.settings(path, n, fs, &a, false)
	if f, ok := fs["canary"]; ok {
		a.Canary = p.canary(f, a, base)
		// The output is the kind's contract: a canary that switches
		// executor keeps it unless its block names another.
		if a.Canary != nil && a.Canary.OutputSchema == nil {
			a.Canary.OutputSchema = a.OutputSchema
		}
	}
	return a, len(p.errs) == nerr
}

// canary reads a canary block: the baseline's fields overridden by the
// block's, or, when the block switches executor, the block's alone.
func (p *parser) canary(f field, base Agent, baseFields map[string]field) *Agent {
	if f.val.Kind != yaml.MappingNode {
		p.bad(f.val, f.path, "want a mapping of the settings the canary overrides, got %s", kindName(f.val))
		return nil
	}
	over := p.fields(f.path, f.val)
	for _, k := range []string{"kind", "canary", "fallback"} {
		if o, ok := over[k]; ok {
			p.bad(o.key, o.path, "a canary cannot set %s", k)
			delete(over, k)
		}
	}
	merged := map[string]field{}
	switched := false
	if e, ok := over["executor"]; ok {
		if name, ok := p.str(e); ok && Executor(name) != base.Executor {
			switched = true
		}
	}
	if !switched {
		for k, v := range baseFields {
			if k != "canary" && k != "kind" && k != "fallback" {
				merged[k] = v
			}
		}
	}
	var keys []string
	for k, v := range over {
		merged[k] = v
		keys = append(keys, k)
	}
	slices.Sort(keys)
	c := &Agent{Kind: base.Kind, Line: f.val.Line, Overrides: keys}
	if !switched {
		// The executor is the baseline's unless the block names it again.
		if _, ok := merged["executor"]; !ok {
			c.Executor = base.Executor
		}
	}
	p.inheriting = !switched
	p.settings(f.path, f.val, merged, c, true)
	p.inheriting = false
	return c
}

// settings reads the executor and its settings from fs into a, and
// returns the fields the baseline's canary merges with.
func (p *parser) settings(path string, n *yaml.Node, fs map[string]field, a *Agent, canary bool) map[string]field {
	if f, ok := fs["executor"]; ok {
		if name, ok := p.str(f); ok {
			if !slices.Contains(Executors, Executor(name)) {
				p.bad(f.val, f.path, "%q is not one of %s", name, executorList())
			} else {
				a.Executor = Executor(name)
			}
		}
	} else if a.Executor == "" && !canary {
		p.bad(n, path+".executor", "missing: one of %s", executorList())
	}
	// Unknown keys, whatever the executor.
	known := slices.Concat(commonKeys, settingKeys[OpenAI], settingKeys[MCP], settingKeys[Synthetic])
	for _, k := range sortedKeys(fs) {
		f := fs[k]
		switch {
		case !slices.Contains(known, k):
			p.bad(f.key, f.path, "unknown key (%s settings: %s)", orAny(a.Executor), strings.Join(keysOf(a.Executor), ", "))
		case a.Executor != "" && !slices.Contains(commonKeys, k) && !slices.Contains(settingKeys[a.Executor], k):
			p.bad(f.key, f.path, "not a setting of executor %s (it is %s's; %s settings: %s)", a.Executor, ownerOf(k), a.Executor, strings.Join(settingKeys[a.Executor], ", "))
		}
	}
	if f, ok := fs["output_schema"]; ok {
		a.OutputSchema = p.outputSchema(f)
	}
	switch a.Executor {
	case OpenAI:
		a.OpenAI = p.openai(path, n, fs)
	case MCP:
		a.MCP = p.mcp(path, n, fs)
	case Synthetic:
		a.Synthetic = p.synthetic(fs)
	}
	return fs
}

func (p *parser) openai(path string, n *yaml.Node, fs map[string]field) *OpenAISettings {
	s := &OpenAISettings{}
	if f, ok := p.required(path, n, fs, "base_url", "the API root, such as http://127.0.0.1:11434/v1"); ok {
		if v, ok := p.str(f); ok {
			s.BaseURL = v
			p.httpURL(f, v)
		}
	}
	if f, ok := p.required(path, n, fs, "model", "which model answers"); ok {
		s.Model, _ = p.nonEmpty(f)
	}
	if f, ok := fs["api_key_env"]; ok {
		if v, ok := p.nonEmpty(f); ok {
			switch {
			case !envPattern.MatchString(v):
				p.bad(f.val, f.path, "%q is not an environment variable name: name the variable that holds the key, not the key", v)
			default:
				if val, set := p.lookup(v); !set || val == "" {
					p.bad(f.val, f.path, "environment variable %s is not set", v)
				}
				s.APIKeyEnv = v
			}
		}
	}
	if f, ok := fs["system"]; ok {
		s.System, _ = p.str(f)
	}
	if f, ok := fs["temperature"]; ok {
		if v, ok := p.float(f); ok {
			if v < 0 || v > 2 {
				p.bad(f.val, f.path, "%v is not in 0..2", v)
			} else {
				s.Temperature = &v
			}
		}
	}
	if f, ok := fs["max_tokens"]; ok {
		if v, ok := p.int(f); ok {
			if v < 0 {
				p.bad(f.val, f.path, "%d must not be negative", v)
			} else {
				s.MaxTokens = v
			}
		}
	}
	if f, ok := fs["json"]; ok {
		s.JSON, _ = p.bool(f)
	}
	if f, ok := fs["timeout"]; ok {
		if d, ok := p.duration(f); ok {
			if d <= 0 {
				p.bad(f.val, f.path, "%s must be positive", d)
			} else {
				s.Timeout = d
			}
		}
	}
	return s
}

func (p *parser) mcp(path string, n *yaml.Node, fs map[string]field) *MCPSettings {
	s := &MCPSettings{}
	if f, ok := p.required(path, n, fs, "tool", "which tool of the server each call invokes"); ok {
		s.Tool, _ = p.nonEmpty(f)
	}
	cmd, hasCmd := fs["command"]
	u, hasURL := fs["url"]
	switch {
	case !hasCmd && !hasURL && !p.inheriting:
		p.bad(n, path+".command", "one of command (a stdio server to start) or url (a streamable HTTP endpoint) is required")
	case hasCmd && hasURL:
		p.bad(u.key, u.path, "command (line %d) and url are exclusive: set one", cmd.key.Line)
	}
	if hasCmd {
		s.Command = p.argv(cmd)
	}
	if hasURL {
		if v, ok := p.str(u); ok {
			s.URL = v
			p.httpURL(u, v)
		}
	}
	if f, ok := fs["connect_timeout"]; ok {
		if d, ok := p.duration(f); ok {
			if d <= 0 {
				p.bad(f.val, f.path, "%s must be positive", d)
			} else {
				s.ConnectTimeout = d
			}
		}
	}
	return s
}

func (p *parser) synthetic(fs map[string]field) *SyntheticSettings {
	s := &SyntheticSettings{}
	dur := func(key string) *time.Duration {
		f, ok := fs[key]
		if !ok {
			return nil
		}
		d, ok := p.duration(f)
		if !ok {
			return nil
		}
		if d < 0 {
			p.bad(f.val, f.path, "%s must not be negative", d)
			return nil
		}
		return &d
	}
	num := func(key string, lo, hi float64) *float64 {
		f, ok := fs[key]
		if !ok {
			return nil
		}
		v, ok := p.float(f)
		if !ok {
			return nil
		}
		if v < lo || v > hi {
			p.bad(f.val, f.path, "%v is not in %v..%v", v, lo, hi)
			return nil
		}
		return &v
	}
	s.LatencyMean = dur("latency_mean")
	s.LatencyP99 = dur("latency_p99")
	s.FailureRate = num("failure_rate", 0, 1)
	s.HangRate = num("hang_rate", 0, 1)
	s.ScoreMean = num("score_mean", math.Inf(-1), math.Inf(1))
	s.ScoreStddev = num("score_stddev", 0, math.Inf(1))
	if s.FailureRate != nil && s.HangRate != nil && *s.FailureRate+*s.HangRate > 1 {
		f := fs["hang_rate"]
		p.bad(f.val, f.path, "failure_rate + hang_rate = %v exceeds 1", *s.FailureRate+*s.HangRate)
	}
	return s
}

// required returns fs[key], or reports it missing.
func (p *parser) required(path string, n *yaml.Node, fs map[string]field, key, what string) (field, bool) {
	f, ok := fs[key]
	if !ok && !p.inheriting {
		p.bad(n, path+"."+key, "missing: %s", what)
	}
	return f, ok
}

func (p *parser) scalar(f field, want string) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.Tag == "!!null" {
		p.bad(f.val, f.path, "want %s, got %s", want, kindName(f.val))
		return "", false
	}
	return f.val.Value, true
}

func (p *parser) str(f field) (string, bool) {
	v, ok := p.scalar(f, "a string")
	if ok && f.val.Tag != "!!str" && f.val.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		// 1.0, true, 0x10 are not strings a key means to give.
		p.bad(f.val, f.path, "want a string, got %s %s (quote it if it is meant)", strings.TrimPrefix(f.val.Tag, "!!"), f.val.Value)
		return "", false
	}
	return v, ok
}

func (p *parser) nonEmpty(f field) (string, bool) {
	v, ok := p.str(f)
	if ok && strings.TrimSpace(v) == "" {
		p.bad(f.val, f.path, "must not be empty")
		return "", false
	}
	return v, ok
}

func (p *parser) float(f field) (float64, bool) {
	v, ok := p.scalar(f, "a number")
	if !ok {
		return 0, false
	}
	if f.val.Tag != "!!int" && f.val.Tag != "!!float" {
		p.bad(f.val, f.path, "want a number, got %q", v)
		return 0, false
	}
	x, err := strconv.ParseFloat(strings.ReplaceAll(v, "_", ""), 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		p.bad(f.val, f.path, "want a finite number, got %q", v)
		return 0, false
	}
	return x, true
}

func (p *parser) int(f field) (int, bool) {
	v, ok := p.scalar(f, "a whole number")
	if !ok {
		return 0, false
	}
	var x int
	if f.val.Tag != "!!int" || f.val.Decode(&x) != nil {
		p.bad(f.val, f.path, "want a whole number, got %q", v)
		return 0, false
	}
	return x, true
}

func (p *parser) bool(f field) (bool, bool) {
	v, ok := p.scalar(f, "true or false")
	if !ok {
		return false, false
	}
	var x bool
	if f.val.Tag != "!!bool" || f.val.Decode(&x) != nil {
		p.bad(f.val, f.path, "want true or false, got %q", v)
		return false, false
	}
	return x, true
}

func (p *parser) duration(f field) (time.Duration, bool) {
	v, ok := p.scalar(f, `a duration such as "20s"`)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.bad(f.val, f.path, `%q is not a duration (such as "500ms", "20s", "2m")`, v)
		return 0, false
	}
	return d, true
}

func (p *parser) argv(f field) []string {
	if f.val.Kind != yaml.SequenceNode {
		p.bad(f.val, f.path, "want the server's argv as a list, such as [python3, tools/server.py], got %s", kindName(f.val))
		return nil
	}
	if len(f.val.Content) == 0 {
		p.bad(f.val, f.path, "empty: name the program to run")
		return nil
	}
	var out []string
	for i, n := range f.val.Content {
		el := field{path: fmt.Sprintf("%s[%d]", f.path, i), key: f.key, val: n}
		v, ok := p.scalar(el, "a string")
		if !ok {
			return nil
		}
		if i == 0 && strings.TrimSpace(v) == "" {
			p.bad(n, el.path, "the program to run is empty")
			return nil
		}
		out = append(out, v)
	}
	return out
}

func (p *parser) httpURL(f field, v string) {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		p.bad(f.val, f.path, "%q does not parse as a URL", v)
	case u.Scheme != "http" && u.Scheme != "https":
		p.bad(f.val, f.path, "%q: want an http or https URL", v)
	case u.Host == "":
		p.bad(f.val, f.path, "%q has no host", v)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
}

func executorList() string {
	s := make([]string, len(Executors))
	for i, e := range Executors {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

func sortedKeys(fs map[string]field) []string {
	keys := make([]string, 0, len(fs))
	for k := range fs {
		keys = append(keys, k)
	}
	// File order, so errors read top to bottom.
	slices.SortFunc(keys, func(a, b string) int {
		if d := fs[a].key.Line - fs[b].key.Line; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return keys
}

func keysOf(e Executor) []string {
	if e == "" {
		return slices.Concat(commonKeys, settingKeys[OpenAI], settingKeys[MCP], settingKeys[Synthetic])
	}
	return slices.Concat(commonKeys, settingKeys[e])
}

func orAny(e Executor) string {
	if e == "" {
		return "known"
	}
	return string(e)
}

func ownerOf(key string) Executor {
	for _, e := range Executors {
		if slices.Contains(settingKeys[e], key) {
			return e
		}
	}
	return ""
}
