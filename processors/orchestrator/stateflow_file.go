package orchestrator

import (
	_ "embed"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	"go.yaml.in/yaml/v3"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// DefaultFile is the built-in stateflow file (stateflow.yaml): the machine
// a run follows unless SPINE_STATEFLOW names another.
//
//go:embed stateflow.yaml
var DefaultFile []byte

// DefaultFileName names the built-in file in errors.
const DefaultFileName = "stateflow.yaml (built in)"

// MaxStateflowBytes bounds a stateflow file.
const MaxStateflowBytes = 1 << 20

// ParseStateflow parses and validates a stateflow file (see stateflow.yaml
// for the format); path names it in errors. It returns a *StateflowError
// listing every problem, each at its line.
func ParseStateflow(path string, src []byte) (*Stateflow, error) {
	specs, probs := parseStateflowFile(src)
	if len(probs) > 0 {
		return nil, &StateflowError{Path: path, Problems: probs}
	}
	return newStateflow(path, specs)
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// parseStateflowFile reads a file's states; problems carry their lines.
func parseStateflowFile(src []byte) ([]Spec, []Problem) {
	var probs []Problem
	bad := func(line int, format string, args ...any) {
		probs = append(probs, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if len(src) > MaxStateflowBytes {
		bad(0, "the file is %d bytes, more than %d", len(src), MaxStateflowBytes)
		return nil, probs
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		bad(line, "not YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, probs
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		bad(1, "want a mapping with version and states")
		return nil, probs
	}
	root := doc.Content[0]
	var statesNode *yaml.Node
	sawVersion := false
	eachKey(root, bad, func(k, v *yaml.Node) {
		switch k.Value {
		case "version":
			sawVersion = true
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				bad(v.Line, "version %q: the only format version is 1", v.Value)
			}
		case "states":
			if v.Kind != yaml.SequenceNode {
				bad(v.Line, "states: want a list of states")
				return
			}
			statesNode = v
		default:
			bad(k.Line, "unknown key %q (want version, states)", k.Value)
		}
	})
	if !sawVersion {
		bad(root.Line, "version missing: write version: 1")
	}
	if statesNode == nil {
		if sawVersion {
			bad(root.Line, "states missing")
		}
		return nil, probs
	}
	// "*" in an entry's from: every non-terminal state, known once all are read.
	type star struct{ spec, entry int }
	var stars []star
	var specs []Spec
	for _, sn := range statesNode.Content {
		s, ok := parseState(sn, bad)
		if !ok {
			continue
		}
		for ei, e := range s.Entry {
			if slices.Contains(e.From, "*") {
				stars = append(stars, star{len(specs), ei})
			}
		}
		specs = append(specs, s)
	}
	for _, st := range stars {
		e := &specs[st.spec].Entry[st.entry]
		var from []State
		for _, f := range e.From {
			if f != "*" {
				from = append(from, f)
			}
		}
		for _, s := range specs {
			if !s.Terminal && !slices.Contains(from, s.State) {
				from = append(from, s.State)
			}
		}
		e.From = from
		e.anyFrom = true
	}
	return specs, probs
}

// eachKey calls fn for each key of mapping m, reporting duplicate keys.
func eachKey(m *yaml.Node, bad func(int, string, ...any), fn func(k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			bad(k.Line, "%s given twice (first at line %d)", k.Value, prev)
			continue
		}
		seen[k.Value] = k.Line
		fn(k, v)
	}
}

func scalar(v *yaml.Node, key string, bad func(int, string, ...any)) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		bad(v.Line, "%s: want a single value", key)
		return "", false
	}
	return v.Value, true
}

func duration(v *yaml.Node, key string, bad func(int, string, ...any)) (time.Duration, bool) {
	s, ok := scalar(v, key, bad)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		bad(v.Line, "%s %q: want a non-negative Go duration (30s, 1m30s)", key, s)
		return 0, false
	}
	return d, true
}

func boolean(v *yaml.Node, key string, bad func(int, string, ...any)) bool {
	s, ok := scalar(v, key, bad)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		bad(v.Line, "%s %q: want true or false", key, s)
	}
	return b
}

func parseState(sn *yaml.Node, bad func(int, string, ...any)) (Spec, bool) {
	s := Spec{Line: sn.Line}
	if sn.Kind != yaml.MappingNode {
		bad(sn.Line, "a state is a mapping with state, event, entries, …")
		return s, false
	}
	ok := true
	fail := func(line int, format string, args ...any) {
		bad(line, format, args...)
		ok = false
	}
	eachKey(sn, fail, func(k, v *yaml.Node) {
		switch k.Value {
		case "state":
			if name, sok := scalar(v, "state", fail); sok {
				if name == "" || name == "none" || name == "*" {
					fail(v.Line, "state %q: not a state name", name)
				}
				s.State = State(name)
			}
		case "event":
			if ev, sok := scalar(v, "event", fail); sok {
				s.Event = schemas.EventType(ev)
			}
		case "terminal":
			s.Terminal = boolean(v, "terminal", fail)
		case "transient":
			s.Transient = boolean(v, "transient", fail)
		case "timeout":
			s.Timeout, _ = duration(v, "timeout", fail)
		case "fallback":
			if fb, sok := scalar(v, "fallback", fail); sok {
				s.Fallback = State(fb)
			}
		case "retry":
			if r, rok := parseRetry(v, fail); rok {
				s.Retry = &r
			}
		case "entries":
			if v.Kind != yaml.SequenceNode {
				fail(v.Line, "entries: want a list of {from, on, when}")
				return
			}
			for _, en := range v.Content {
				if e, eok := parseEntry(en, fail); eok {
					s.Entry = append(s.Entry, e)
				}
			}
		default:
			fail(k.Line, "unknown key %q (want state, event, entries, timeout, retry, fallback, terminal, transient)", k.Value)
		}
	})
	for _, req := range []string{"state", "event"} {
		if !hasKey(sn, req) {
			fail(sn.Line, "%s missing", req)
		}
	}
	return s, ok
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

func parseRetry(v *yaml.Node, fail func(int, string, ...any)) (RetryPolicy, bool) {
	r := RetryPolicy{NonRetryableErrorKinds: thread.NonRetryableErrorKinds}
	if v.Kind != yaml.MappingNode {
		fail(v.Line, "retry: want a mapping with initial_interval, backoff_coefficient, maximum_interval, maximum_attempts")
		return r, false
	}
	ok := true
	f := func(line int, format string, args ...any) {
		fail(line, format, args...)
		ok = false
	}
	eachKey(v, f, func(k, v *yaml.Node) {
		switch k.Value {
		case "initial_interval":
			r.InitialInterval, _ = duration(v, k.Value, f)
		case "maximum_interval":
			r.MaximumInterval, _ = duration(v, k.Value, f)
		case "backoff_coefficient":
			if s, sok := scalar(v, k.Value, f); sok {
				c, err := strconv.ParseFloat(s, 64)
				if err != nil || c < 1 {
					f(v.Line, "backoff_coefficient %q: want a number ≥ 1", s)
				}
				r.BackoffCoefficient = c
			}
		case "maximum_attempts":
			if s, sok := scalar(v, k.Value, f); sok {
				n, err := strconv.ParseInt(s, 10, 32)
				if err != nil || n < 0 {
					f(v.Line, "maximum_attempts %q: want 0 (unlimited) or a positive count", s)
				}
				r.MaximumAttempts = int32(n)
			}
		case "non_retryable_error_kinds":
			if v.Kind != yaml.SequenceNode {
				f(v.Line, "non_retryable_error_kinds: want a list of error kinds")
				return
			}
			r.NonRetryableErrorKinds = []string{}
			for _, kn := range v.Content {
				if s, sok := scalar(kn, k.Value, f); sok {
					r.NonRetryableErrorKinds = append(r.NonRetryableErrorKinds, s)
				}
			}
		default:
			f(k.Line, "unknown key %q in retry (want initial_interval, backoff_coefficient, maximum_interval, maximum_attempts, non_retryable_error_kinds)", k.Value)
		}
	})
	if ok {
		if err := r.validate(); err != nil {
			f(v.Line, "retry: %v", err)
		}
	}
	return r, ok
}

func parseEntry(en *yaml.Node, fail func(int, string, ...any)) (Entry, bool) {
	e := Entry{Line: en.Line}
	if en.Kind != yaml.MappingNode {
		fail(en.Line, "an entry is a mapping {from: [states], on: trigger, when: guard}")
		return e, false
	}
	ok := true
	f := func(line int, format string, args ...any) {
		fail(line, format, args...)
		ok = false
	}
	eachKey(en, f, func(k, v *yaml.Node) {
		switch k.Value {
		case "from":
			add := func(n *yaml.Node) {
				if s, sok := scalar(n, "from", f); sok {
					if s == "none" {
						s = string(StateNone)
					}
					e.From = append(e.From, State(s))
				}
			}
			if v.Kind == yaml.SequenceNode {
				for _, n := range v.Content {
					add(n)
				}
			} else {
				add(v)
			}
			if len(e.From) == 0 {
				f(v.Line, "from: name at least one state")
			}
		case "on":
			if s, sok := scalar(v, "on", f); sok {
				e.On = Trigger(s)
			}
		case "when":
			if s, sok := scalar(v, "when", f); sok {
				if strings.TrimSpace(s) == "" {
					f(v.Line, "when is empty: want a CEL condition or no when")
				}
				e.When = s
				e.whenLine = v.Line
				e.whenBlock = v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
			}
		default:
			f(k.Line, "unknown key %q in entry (want from, on, when)", k.Value)
		}
	})
	for _, req := range []string{"from", "on"} {
		if !hasKey(en, req) {
			f(en.Line, "entry: %s missing", req)
		}
	}
	return e, ok
}

// Guard is what an entry's CEL guard sees of a run: the variable run (kind,
// agent, route, attempt, error_kind, input_size, actor, tenant, priority,
// contract, state) and provenance (issuer, subject, claims; empty when the run has no
// verified caller).
type Guard struct {
	Kind, Route, Actor, Tenant, Contract, State string
	// Agent is the agent running the intent: its kind, or a fallback
	// agent's.
	Agent string
	// ErrorKind is the kind of the failure that fired the trigger
	// ("timeout" for a timer), "" for none.
	ErrorKind         string
	Attempt, Priority int64
	InputSize         int64
	Provenance        *schemas.Provenance
}

type guardRun struct {
	Kind      string `cel:"kind"`
	Agent     string `cel:"agent"`
	Route     string `cel:"route"`
	Actor     string `cel:"actor"`
	Tenant    string `cel:"tenant"`
	Contract  string `cel:"contract"`
	State     string `cel:"state"`
	ErrorKind string `cel:"error_kind"`
	Attempt   int64  `cel:"attempt"`
	Priority  int64  `cel:"priority"`
	InputSize int64  `cel:"input_size"`
}

type guardProvenance struct {
	Issuer  string            `cel:"issuer"`
	Subject string            `cel:"subject"`
	Claims  map[string]string `cel:"claims"`
}

func (g Guard) activation() map[string]any {
	p := guardProvenance{Claims: map[string]string{}}
	if g.Provenance != nil {
		p.Issuer, p.Subject = g.Provenance.Issuer, g.Provenance.Subject
		if g.Provenance.Claims != nil {
			p.Claims = g.Provenance.Claims
		}
	}
	return map[string]any{
		"run": guardRun{Kind: g.Kind, Agent: g.Agent, Route: g.Route, Actor: g.Actor, Tenant: g.Tenant, Contract: g.Contract, State: g.State,
			ErrorKind: g.ErrorKind, Attempt: g.Attempt, Priority: g.Priority, InputSize: g.InputSize},
		"provenance": p,
	}
}

// guardEnv is the CEL environment of guards, built once: a cel.Env is
// immutable and safe for concurrent use.
var guardEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[guardRun](), reflect.TypeFor[guardProvenance](), ext.ParseStructTags(true)),
		ext.Strings(),
		cel.Variable("run", cel.ObjectType("orchestrator.guardRun")),
		cel.Variable("provenance", cel.ObjectType("orchestrator.guardProvenance")),
	)
})

// compileGuard type-checks an entry's guard; a problem carries the file
// line of the CEL error.
func compileGuard(env *cel.Env, e *Entry, line int) (cel.Program, []Problem) {
	base := e.whenLine
	if base == 0 {
		base = line
	}
	if e.whenBlock {
		base++ // a block scalar starts on the line after its indicator
	}
	ast, iss := env.Compile(e.When)
	if iss != nil && iss.Err() != nil {
		var probs []Problem
		for _, ce := range iss.Errors() {
			l := base
			if cl := ce.Location.Line(); cl > 1 {
				l = base + cl - 1
			}
			probs = append(probs, Problem{Line: l, Msg: fmt.Sprintf("when %q: %s", e.When, ce.Message)})
		}
		return nil, probs
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, []Problem{{Line: base, Msg: fmt.Sprintf("when %q: is a %s, want a bool", e.When, ast.OutputType())}}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []Problem{{Line: base, Msg: fmt.Sprintf("when %q: %v", e.When, err)}}
	}
	return prg, nil
}
