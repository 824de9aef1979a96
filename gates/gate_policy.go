package gates

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
	"go.yaml.in/yaml/v3"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// PolicyName is the policy gate's name: its events go to gate.policy.
const PolicyName = thread.PolicyGate

// Stage is when a policy rule is evaluated.
type Stage string

// The stages of a policy.
const (
	// StageAdmission rules judge an intent before its run starts (the
	// orchestrator evaluates them): a denied run never reaches the data
	// plane.
	StageAdmission Stage = "admission"
	// StageArtifact rules judge a delivered artifact before handoff (the
	// gatekeeper evaluates them): a denied artifact rejects the run.
	StageArtifact Stage = "artifact"
)

// Effect is what a matching rule decides.
type Effect string

// The effects of a rule.
const (
	EffectAllow Effect = "allow"
	EffectDeny  Effect = "deny"
)

// Limits of a policy file.
const (
	// MaxPolicyBytes is the largest policy file read.
	MaxPolicyBytes = 1 << 20
	// PolicyCostLimit bounds the cost of evaluating one rule (CEL's cost
	// units, about one per operation or per ten bytes a string function
	// scans): a 4 MiB input scanned once costs about 420 000. A rule over
	// it fails to evaluate, which denies (fail closed).
	PolicyCostLimit = 1_000_000
)

// DefaultRuleName is the Rule of a decision no rule matched: the policy's
// default decided.
const DefaultRuleName = "default"

// Policy codes: the Code of a policy outcome at the artifact stage and the
// reason prefix of an error.
const (
	// CodePolicyError is an evaluation that failed (a missing key, a cost
	// over the limit, a non-bool result): the policy denies, fail closed.
	CodePolicyError = "policy_error"
)

// PolicyRule is one rule of a policy file, as written.
type PolicyRule struct {
	Name    string
	Stage   Stage
	Effect  Effect
	When    string
	Message string
	// Line is the rule's line in the file.
	Line int
}

// Policy is a compiled policy file: named CEL rules per stage, a default
// effect and a version (the hash of the file's content). It is immutable
// and safe for concurrent use.
//
// A stage's rules are evaluated in file order; the first whose condition is
// true decides with its effect and message. When none matches, the default
// decides. An evaluation error (a missing map key, a cost over
// PolicyCostLimit, a result that is not a bool) denies with the reason
// policy_error: the policy fails closed.
type Policy struct {
	version string
	def     Effect
	rules   []PolicyRule
	progs   map[Stage][]compiledRule
	// defaultMsgs are the default decision's messages at admission and
	// artifact.
	defaultMsgs [2]string
}

type compiledRule struct {
	PolicyRule
	prg cel.Program
	// bounded: the condition's static cost estimate is within
	// PolicyCostLimit whatever the input (no comprehension over it, no
	// function whose cost grows with it), so prg tracks no cost and
	// checks no interrupt: it is evaluated plainly.
	bounded bool
}

// PolicyProblem is one problem of a policy file, at its line.
type PolicyProblem struct {
	Line int
	// Rule names the rule, if the problem is in one.
	Rule string
	Msg  string
}

func (p PolicyProblem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Rule != "" {
		fmt.Fprintf(&b, "rule %s: ", p.Rule)
	}
	b.WriteString(p.Msg)
	return b.String()
}

// PolicyError lists every problem of a policy file, in line order.
type PolicyError struct {
	Problems []PolicyProblem
}

func (e *PolicyError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid policy: " + strings.Join(lines, "; ")
}

// PolicyVersion returns the version of a policy file's content: "sha256:"
// and the first 12 hex digits of its SHA-256.
func PolicyVersion(src []byte) string {
	sum := sha256.Sum256(src)
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

// The CEL view of a policy input. Field names are the CEL names (cel tags).
type policyIntent struct {
	Kind       string            `cel:"kind"`
	Actor      string            `cel:"actor"`
	Tenant     string            `cel:"tenant"`
	Priority   int64             `cel:"priority"`
	Input      string            `cel:"input"`
	Attributes map[string]string `cel:"attributes"`
	Contract   string            `cel:"contract"`
}

type policyProvenance struct {
	Issuer     string            `cel:"issuer"`
	Subject    string            `cel:"subject"`
	VerifiedAt time.Time         `cel:"verified_at"`
	Claims     map[string]string `cel:"claims"`
}

type policyArtifact struct {
	ID          string  `cel:"id"`
	ContentType string  `cel:"content_type"`
	Size        int64   `cel:"size"`
	Summary     string  `cel:"summary"`
	Score       float64 `cel:"score"`
	LatencyMs   int64   `cel:"latency_ms"`
}

// celTypeName is the CEL name of a native type: its package and type name.
func celTypeName[T any]() string {
	t := reflect.TypeFor[T]()
	return "gates." + t.Name()
}

// policyEnv returns the CEL environment of a stage: intent, provenance and
// route, and at the artifact stage artifact; the strings extension (split,
// lowerAscii, ...).
func policyEnv(stage Stage) (*cel.Env, error) {
	opts := []cel.EnvOption{
		ext.NativeTypes(reflect.TypeFor[policyIntent](), reflect.TypeFor[policyProvenance](), reflect.TypeFor[policyArtifact](), ext.ParseStructTags(true)),
		ext.Strings(),
		cel.OptionalTypes(),
		cel.Variable("intent", cel.ObjectType(celTypeName[policyIntent]())),
		cel.Variable("provenance", cel.ObjectType(celTypeName[policyProvenance]())),
		cel.Variable("route", cel.StringType),
	}
	if stage == StageArtifact {
		opts = append(opts, cel.Variable("artifact", cel.ObjectType(celTypeName[policyArtifact]())))
	}
	return cel.NewEnv(opts...)
}

// policyEnvs are the environments of the stages, built once: a cel.Env is
// immutable and safe for concurrent use, and building one costs more than
// compiling a rule.
var policyEnvs = sync.OnceValues(func() (map[Stage]*cel.Env, error) {
	envs := map[Stage]*cel.Env{}
	for _, st := range []Stage{StageAdmission, StageArtifact} {
		env, err := policyEnv(st)
		if err != nil {
			return nil, err
		}
		envs[st] = env
	}
	return envs, nil
})

var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// ParsePolicy parses and compiles a policy file (see the README's "Policy"
// for the format): every rule's condition is type-checked once, here. It
// returns a *PolicyError listing every problem, each at its line.
func ParsePolicy(src []byte) (*Policy, error) {
	var probs []PolicyProblem
	bad := func(line int, rule, format string, args ...any) {
		probs = append(probs, PolicyProblem{Line: line, Rule: rule, Msg: fmt.Sprintf(format, args...)})
	}
	if len(src) > MaxPolicyBytes {
		bad(0, "", "the file is %d bytes, more than %d", len(src), MaxPolicyBytes)
		return nil, &PolicyError{Problems: probs}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		bad(line, "", "not YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, &PolicyError{Problems: probs}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		bad(1, "", "the file is empty: want version, default and rules")
		return nil, &PolicyError{Problems: probs}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		bad(root.Line, "", "want a mapping with version, default and rules")
		return nil, &PolicyError{Problems: probs}
	}
	p := &Policy{version: PolicyVersion(src), def: EffectAllow, progs: map[Stage][]compiledRule{}}
	var rulesNode *yaml.Node
	sawVersion := false
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			bad(k.Line, "", "%s given twice (first at line %d)", k.Value, prev)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "version":
			sawVersion = true
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				bad(v.Line, "", "version %q: the only format version is 1", v.Value)
			}
		case "default":
			e, ok := parseEffect(v)
			if !ok {
				bad(v.Line, "", "default %q: want allow or deny", v.Value)
			}
			p.def = e
		case "rules":
			if v.Kind != yaml.SequenceNode && !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
				bad(v.Line, "", "rules: want a list of rules")
				continue
			}
			rulesNode = v
		default:
			bad(k.Line, "", "unknown key %q (want version, default, rules)", k.Value)
		}
	}
	if !sawVersion {
		bad(root.Line, "", "version missing: write version: 1")
	}
	envs, err := policyEnvs()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	names := map[string]int{}
	if rulesNode != nil {
		for _, rn := range rulesNode.Content {
			r, whenNode, ok := parseRule(rn, bad)
			if r.Name != "" {
				if prev, dup := names[r.Name]; dup {
					bad(rn.Line, r.Name, "name given to two rules (first at line %d)", prev)
					ok = false
				} else {
					names[r.Name] = rn.Line
				}
			}
			if !ok {
				continue
			}
			cr, cprobs := compileRule(envs[r.Stage], r, whenNode)
			if len(cprobs) > 0 {
				probs = append(probs, cprobs...)
				continue
			}
			p.rules = append(p.rules, r)
			p.progs[r.Stage] = append(p.progs[r.Stage], cr)
		}
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, &PolicyError{Problems: probs}
	}
	for i, st := range []Stage{StageAdmission, StageArtifact} {
		p.defaultMsgs[i] = fmt.Sprintf("no %s rule matched: default %s", st, p.def)
	}
	return p, nil
}

func parseEffect(v *yaml.Node) (Effect, bool) {
	if v.Kind != yaml.ScalarNode {
		return "", false
	}
	switch e := Effect(v.Value); e {
	case EffectAllow, EffectDeny:
		return e, true
	}
	return "", false
}

// parseRule reads one rule; ok is false when it has a problem (reported
// through bad).
func parseRule(rn *yaml.Node, bad func(line int, rule, format string, args ...any)) (r PolicyRule, when *yaml.Node, ok bool) {
	r.Line = rn.Line
	if rn.Kind != yaml.MappingNode {
		bad(rn.Line, "", "a rule is a mapping with name, stage, effect, when and message")
		return r, nil, false
	}
	for i := 0; i+1 < len(rn.Content); i += 2 {
		if rn.Content[i].Value == "name" {
			r.Name = rn.Content[i+1].Value
		}
	}
	ok = true
	fail := func(line int, format string, args ...any) {
		bad(line, r.Name, format, args...)
		ok = false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(rn.Content); i += 2 {
		k, v := rn.Content[i], rn.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			fail(k.Line, "%s given twice (first at line %d)", k.Value, prev)
			continue
		}
		seen[k.Value] = k.Line
		if v.Kind != yaml.ScalarNode {
			fail(v.Line, "%s: want a single value", k.Value)
			continue
		}
		switch k.Value {
		case "name":
			if !ruleNameRE.MatchString(v.Value) {
				fail(v.Line, "name %q: want letters, digits, '-', '_' or '.', at most 64", v.Value)
			}
		case "stage":
			switch s := Stage(v.Value); s {
			case StageAdmission, StageArtifact:
				r.Stage = s
			default:
				fail(v.Line, "stage %q: want admission or artifact", v.Value)
			}
		case "effect":
			e, eok := parseEffect(v)
			if !eok {
				fail(v.Line, "effect %q: want allow or deny", v.Value)
			}
			r.Effect = e
		case "when":
			if strings.TrimSpace(v.Value) == "" {
				fail(v.Line, "when is empty: want a CEL condition")
			}
			r.When, when = v.Value, v
		case "message":
			r.Message = v.Value
		default:
			fail(k.Line, "unknown key %q (want name, stage, effect, when, message)", k.Value)
		}
	}
	for _, req := range []string{"name", "stage", "effect", "when"} {
		if _, has := seen[req]; !has {
			fail(rn.Line, "%s missing", req)
		}
	}
	if r.Message == "" {
		r.Message = fmt.Sprintf("%s by rule %s", r.Effect, r.Name)
	}
	return r, when, ok
}

// compileRule type-checks a rule's condition in its stage's environment;
// each problem carries the file line of the CEL error.
func compileRule(env *cel.Env, r PolicyRule, when *yaml.Node) (compiledRule, []PolicyProblem) {
	base := when.Line
	if when.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		base++ // a block scalar starts on the line after its indicator
	}
	ast, iss := env.Compile(r.When)
	if iss != nil && iss.Err() != nil {
		var probs []PolicyProblem
		for _, e := range iss.Errors() {
			line := base
			if l := e.Location.Line(); l > 1 {
				line = base + l - 1
			}
			msg := e.Message
			if r.Stage == StageAdmission && strings.Contains(msg, "undeclared reference to 'artifact'") {
				msg += " (artifact is known at stage artifact only)"
			}
			probs = append(probs, PolicyProblem{Line: line, Rule: r.Name, Msg: fmt.Sprintf("when: column %d: %s", fileColumn(when, e.Location.Line(), e.Location.Column()), msg)})
		}
		return compiledRule{}, probs
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return compiledRule{}, []PolicyProblem{{Line: base, Rule: r.Name, Msg: fmt.Sprintf("when is of type %s: want a bool condition", t)}}
	}
	opts := []cel.ProgramOption{cel.CostLimit(PolicyCostLimit), cel.InterruptCheckFrequency(100)}
	bounded := false
	if est, err := env.EstimateCost(ast, unknownSizes{}); err == nil && est.Max <= PolicyCostLimit {
		// Nothing to limit or interrupt: spare every evaluation the
		// cost tracker and the context watch.
		opts, bounded = nil, true
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return compiledRule{}, []PolicyProblem{{Line: base, Rule: r.Name, Msg: fmt.Sprintf("when: %v", err)}}
	}
	return compiledRule{PolicyRule: r, prg: prg, bounded: bounded}, nil
}

// unknownSizes is the cost estimator that knows no input's size: a string,
// list or map of the input may be as large as can be, so a condition whose
// cost depends on one is estimated unbounded.
type unknownSizes struct{}

func (unknownSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (unknownSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// fileColumn is the file column (1-based) of a CEL error at line, col
// (col 0-based) of the condition when: exact for a condition on one line
// of the file; in a block scalar, the column within the condition's line.
func fileColumn(when *yaml.Node, line, col int) int {
	switch {
	case line > 1 || when.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return col + 1
	case when.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		return when.Column + 1 + col
	}
	return when.Column + col
}

// sortProblems orders problems by line, stably: those of one line keep the
// order they were found in.
func sortProblems(ps []PolicyProblem) {
	slices.SortStableFunc(ps, func(a, b PolicyProblem) int { return a.Line - b.Line })
}

// Version returns the policy's version: "sha256:" and 12 hex digits of its
// file's hash.
func (p *Policy) Version() string { return p.version }

// Default returns the effect when no rule of a stage matches.
func (p *Policy) Default() Effect { return p.def }

// Rules returns the rules in file order.
func (p *Policy) Rules() []PolicyRule { return append([]PolicyRule(nil), p.rules...) }

// Current returns p itself: a fixed policy is its own PolicySource.
func (p *Policy) Current() *Policy { return p }

// Warnings lists what is valid but likely not meant: a deny default with a
// stage that has no rules denies everything at that stage.
func (p *Policy) Warnings() []string {
	var out []string
	if p.def == EffectDeny {
		for _, st := range []Stage{StageAdmission, StageArtifact} {
			if len(p.progs[st]) == 0 {
				out = append(out, fmt.Sprintf("default deny and no %s rules: every %s is denied", st, map[Stage]string{StageAdmission: "intent", StageArtifact: "artifact"}[st]))
			}
		}
	}
	return out
}

// PolicyInput is what a policy judges: the intent's facts, its verified
// caller, its route and, at the artifact stage, the artifact.
type PolicyInput struct {
	Kind, Actor, Tenant string
	Priority            int32
	// Input is the intent's input (at the admission stage only; the
	// artifact.delivered event does not carry it).
	Input      string
	Attributes map[string]string
	// Contract is the run's contract version.
	Contract schemas.ContractVersion
	// Provenance is the verified caller, nil when none was verified.
	Provenance *schemas.Provenance
	Route      string
	// Artifact and ArtifactID are the delivered artifact (artifact stage).
	Artifact   *schemas.ArtifactSummary
	ArtifactID string
}

// IntentInput is the admission input of intent it on route, run under
// contract version v; prov is the verified caller (nil for none).
func IntentInput(it *schemas.Intent, prov *schemas.Provenance, route string, v schemas.ContractVersion) PolicyInput {
	return PolicyInput{
		Kind: it.Kind, Actor: it.Actor, Tenant: it.Tenant, Priority: it.Priority, Input: it.Input,
		Attributes: it.Attributes, Contract: v, Provenance: prov, Route: route,
	}
}

// EventInput is the artifact-stage input of a data-plane event (an
// artifact.delivered) written under contract version v.
func EventInput(ev *schemas.RuntimeEvent, v schemas.ContractVersion) PolicyInput {
	route := ev.Route
	if route == "" {
		route = thread.RouteBaseline
	}
	return PolicyInput{
		Kind: ev.Intent, Actor: ev.Actor, Tenant: ev.Tenant, Priority: ev.Priority, Input: ev.Input,
		Attributes: ev.Attributes, Contract: v, Provenance: ev.Provenance, Route: route,
		Artifact: ev.Artifact, ArtifactID: ev.ArtifactID,
	}
}

// activation resolves the variables of stage's conditions from in, each
// built when a condition first reads it: no map per evaluation.
type activation struct {
	in    *PolicyInput
	stage Stage

	intent     *policyIntent
	provenance *policyProvenance
	artifact   *policyArtifact
}

// noStrings is the empty map a missing attributes or claims map reads as;
// CEL never writes to it.
var noStrings = map[string]string{}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "intent":
		if a.intent == nil {
			attrs := in.Attributes
			if attrs == nil {
				attrs = noStrings
			}
			contract := ""
			if in.Contract.Valid() {
				contract = in.Contract.String()
			}
			a.intent = &policyIntent{Kind: in.Kind, Actor: in.Actor, Tenant: in.Tenant, Priority: int64(in.Priority),
				Input: in.Input, Attributes: attrs, Contract: contract}
		}
		return a.intent, true
	case "provenance":
		pv := in.Provenance
		if pv == nil {
			return nil, true
		}
		if a.provenance == nil {
			claims := pv.Claims
			if claims == nil {
				claims = noStrings
			}
			a.provenance = &policyProvenance{Issuer: pv.Issuer, Subject: pv.Subject, VerifiedAt: pv.VerifiedAt, Claims: claims}
		}
		return a.provenance, true
	case "route":
		return in.Route, true
	case "artifact":
		if a.stage != StageArtifact {
			return nil, false
		}
		art := in.Artifact
		if art == nil {
			return nil, true
		}
		if a.artifact == nil {
			a.artifact = &policyArtifact{ID: in.ArtifactID, ContentType: art.ContentType, Size: art.SizeBytes,
				Summary: art.Summary, Score: art.Score, LatencyMs: art.LatencyMs}
		}
		return a.artifact, true
	}
	return nil, false
}

// Parent implements interpreter.Activation: there is none.
func (a *activation) Parent() interpreter.Activation { return nil }

// PolicyDecision is a policy's decision at one stage.
type PolicyDecision struct {
	Allowed bool
	// Rule is the rule that decided, DefaultRuleName when none matched.
	Rule string
	// Message is the rule's message; for an evaluation error,
	// "policy_error: " and the error.
	Message string
	// Version is the policy's version.
	Version string
	Stage   Stage
}

// Reason is "<rule>: <message>", the reason a gate.policy event carries.
func (d PolicyDecision) Reason() string { return d.Rule + ": " + d.Message }

// Outcome is the decision as a gate.policy outcome: Rule, PolicyVersion
// and the stage as evidence.
func (d PolicyDecision) Outcome() *schemas.GateOutcome {
	return &schemas.GateOutcome{
		Name: PolicyName, Passed: d.Allowed, Reason: d.Reason(), Rule: d.Rule, PolicyVersion: d.Version,
		Evidence: map[string]string{"stage": string(d.Stage)},
	}
}

// Evaluate decides stage for in: the first of the stage's rules whose
// condition holds decides, else the default; an evaluation error denies
// (policy_error). It honours ctx's cancellation within a comprehension.
func (p *Policy) Evaluate(ctx context.Context, stage Stage, in PolicyInput) PolicyDecision {
	vars := &activation{in: &in, stage: stage}
	for _, r := range p.progs[stage] {
		var out ref.Val
		var err error
		if r.bounded {
			out, _, err = r.prg.Eval(vars)
		} else {
			out, _, err = r.prg.ContextEval(ctx, vars)
		}
		if err == nil {
			if b, ok := out.Value().(bool); !ok {
				err = fmt.Errorf("when gave %s, not a bool", out.Type().TypeName())
			} else if !b {
				continue
			}
		}
		if err != nil {
			return PolicyDecision{Rule: r.Name, Message: CodePolicyError + ": " + evalError(err), Version: p.version, Stage: stage}
		}
		return PolicyDecision{Allowed: r.Effect == EffectAllow, Rule: r.Name, Message: r.Message, Version: p.version, Stage: stage}
	}
	return PolicyDecision{Allowed: p.def == EffectAllow, Rule: DefaultRuleName, Message: p.defaultMessage(stage), Version: p.version, Stage: stage}
}

// evalError is an evaluation error in words, bounded: CEL errors are short,
// but one may quote a value.
func evalError(err error) string {
	s := err.Error()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		s = "evaluation interrupted: " + s
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// PolicySource gives the policy in force: a *Policy (fixed) or a
// *PolicyFile (reloaded when its file changes). Current is safe for
// concurrent use and never nil.
type PolicySource interface {
	Current() *Policy
}

// PolicyCheck is the policy gate at the artifact stage: it evaluates the
// policy's artifact rules on every delivered artifact. Its outcome's Code is
// the rule that decided, its Reason the rule's message; Rule and
// PolicyVersion say which rule of which policy version decided. It is safe
// for concurrent use.
type PolicyCheck struct {
	src PolicySource
}

var _ Check = (*PolicyCheck)(nil)

// PolicyGate returns the artifact-stage policy check over src.
func PolicyGate(src PolicySource) *PolicyCheck { return &PolicyCheck{src: src} }

// Name returns "policy".
func (c *PolicyCheck) Name() string { return PolicyName }

// Check implements Check. It errors only when ctx ends during the
// evaluation.
func (c *PolicyCheck) Check(ctx context.Context, s Subject) (Outcome, error) {
	if s.Event == nil {
		return Outcome{Code: "missing_event", Reason: "no event to judge"}, nil
	}
	d := c.src.Current().Evaluate(ctx, StageArtifact, EventInput(s.Event, s.Version))
	if err := ctx.Err(); err != nil {
		return Outcome{}, err // cut short: decided nothing, the record is retried
	}
	return Outcome{
		Passed: d.Allowed, Code: d.Rule, Reason: d.Message,
		Rule: d.Rule, PolicyVersion: d.Version, Evidence: map[string]string{"stage": string(StageArtifact)},
	}, nil
}

// defaultMessage is the message of the default decision at stage, made
// once per policy and stage.
func (p *Policy) defaultMessage(stage Stage) string {
	switch stage {
	case StageAdmission:
		return p.defaultMsgs[0]
	case StageArtifact:
		return p.defaultMsgs[1]
	}
	return fmt.Sprintf("no %s rule matched: default %s", stage, p.def)
}
