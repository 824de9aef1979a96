package gates_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

// testPolicy is the policy of the rule table: admission rules on the
// caller, kind, tenant, route and input size; artifact rules on the
// artifact.
const testPolicy = `version: 1
default: allow
rules:
  - name: no-anonymous
    stage: admission
    effect: deny
    when: "provenance == null"
    message: "every run needs a verified caller"
  - name: banned-subject
    stage: admission
    effect: deny
    when: "provenance.subject in ['mallory', 'trudy']"
    message: "this caller is banned"
  - name: admins-anything
    stage: admission
    effect: allow
    when: |
      has(provenance.claims.groups) &&
        'admin' in provenance.claims.groups.split(',')
    message: "admins may run anything"
  - name: no-tool-calls
    stage: admission
    effect: deny
    when: "intent.kind == 'tool_call'"
    message: "tool calls are for admins"
  - name: tenant-acme-only
    stage: admission
    effect: deny
    when: "intent.tenant != '' && intent.tenant != 'acme'"
    message: "only tenant acme runs here"
  - name: canary-staff-only
    stage: admission
    effect: deny
    when: "route == 'canary' && !provenance.subject.endsWith('@staff')"
    message: "the canary is for staff"
  - name: big-inputs
    stage: admission
    effect: deny
    when: "size(intent.input) > 100"
    message: "inputs over 100 characters need an admin"
  - name: attribute-lookup
    stage: admission
    effect: deny
    when: "intent.attributes[?'region'].orValue('') == 'mars'"
  - name: no-secrets-out
    stage: artifact
    effect: deny
    when: "artifact.summary.contains('BEGIN PRIVATE KEY')"
    message: "the artifact leaks a key"
  - name: big-artifacts
    stage: artifact
    effect: deny
    when: "artifact.size > 1000000 && intent.contract == 'V1'"
    message: "baseline artifacts stay under 1 MB"
`

func prov(subject string, claims map[string]string) *schemas.Provenance {
	return &schemas.Provenance{Issuer: "https://idp.test", Subject: subject, VerifiedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Claims: claims}
}

func TestPolicyRules(t *testing.T) {
	t.Parallel()
	p, err := gates.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	intent := func(mod func(*gates.PolicyInput)) gates.PolicyInput {
		in := gates.PolicyInput{Kind: "summarize", Actor: "bob", Input: "hello", Contract: schemas.V1, Route: "baseline",
			Provenance: prov("bob", nil)}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	artifact := func(mod func(*gates.PolicyInput)) gates.PolicyInput {
		in := intent(nil)
		in.Input = ""
		in.ArtifactID = "art-1"
		in.Artifact = &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "a fine summary", Score: 0.9, SizeBytes: 100}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	for _, tc := range []struct {
		name    string
		stage   gates.Stage
		in      gates.PolicyInput
		allowed bool
		rule    string
		msg     string // a part of the message
	}{
		{"allowed by default", gates.StageAdmission, intent(nil), true, "default", "default allow"},
		{"denied: no verified caller", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Provenance = nil }), false, "no-anonymous", "verified caller"},
		{"denied by subject", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Provenance = prov("mallory", nil) }), false, "banned-subject", "banned"},
		{"denied by kind", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Kind = "tool_call" }), false, "no-tool-calls", "tool calls"},
		{"allowed: first match wins over a later deny", gates.StageAdmission, intent(func(in *gates.PolicyInput) {
			in.Kind = "tool_call"
			in.Provenance = prov("root", map[string]string{"groups": "ops,admin"})
		}), true, "admins-anything", "admins"},
		{"denied by tenant", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Tenant = "globex" }), false, "tenant-acme-only", "acme"},
		{"allowed tenant", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Tenant = "acme" }), true, "default", ""},
		{"denied by route", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Route = "canary" }), false, "canary-staff-only", "staff"},
		{"allowed on route", gates.StageAdmission, intent(func(in *gates.PolicyInput) {
			in.Route = "canary"
			in.Provenance = prov("eve@staff", nil)
		}), true, "default", ""},
		{"denied by input size", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Input = strings.Repeat("x", 101) }), false, "big-inputs", "100 characters"},
		{"input at the limit", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Input = strings.Repeat("x", 100) }), true, "default", ""},
		{"allowed: another attribute", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Attributes = map[string]string{"region": "earth"} }), true, "default", ""},
		{"denied by attribute, default message", gates.StageAdmission, intent(func(in *gates.PolicyInput) { in.Attributes = map[string]string{"region": "mars"} }), false, "attribute-lookup", "deny by rule attribute-lookup"},
		{"denied: unverified caller on the canary (first match)", gates.StageAdmission, intent(func(in *gates.PolicyInput) {
			in.Provenance = nil
			in.Route = "canary"
		}), false, "no-anonymous", ""},
		{"artifact allowed", gates.StageArtifact, artifact(nil), true, "default", "no artifact rule matched"},
		{"artifact denied by content", gates.StageArtifact, artifact(func(in *gates.PolicyInput) {
			in.Artifact.Summary = "-----BEGIN PRIVATE KEY----- MII..."
		}), false, "no-secrets-out", "leaks a key"},
		{"artifact denied by size and contract", gates.StageArtifact, artifact(func(in *gates.PolicyInput) { in.Artifact.SizeBytes = 2_000_000 }), false, "big-artifacts", "1 MB"},
		{"artifact size allowed on V2", gates.StageArtifact, artifact(func(in *gates.PolicyInput) {
			in.Artifact.SizeBytes = 2_000_000
			in.Contract = schemas.V2
		}), true, "default", ""},
		{"artifact missing fails closed", gates.StageArtifact, artifact(func(in *gates.PolicyInput) { in.Artifact = nil }), false, "no-secrets-out", "policy_error"},
		{"admission rules do not run on artifacts", gates.StageArtifact, artifact(func(in *gates.PolicyInput) { in.Kind = "tool_call" }), true, "default", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Evaluate(t.Context(), tc.stage, tc.in)
			if d.Allowed != tc.allowed || d.Rule != tc.rule || !strings.Contains(d.Message, tc.msg) {
				t.Fatalf("decision %+v, want allowed=%t by %s with %q", d, tc.allowed, tc.rule, tc.msg)
			}
			if d.Version != p.Version() || d.Stage != tc.stage {
				t.Fatalf("decision %+v: version or stage wrong", d)
			}
		})
	}
}

func TestPolicyFailsClosed(t *testing.T) {
	t.Parallel()
	p, err := gates.ParsePolicy([]byte(`version: 1
default: allow
rules:
  - name: staff
    stage: admission
    effect: allow
    when: "provenance.subject.endsWith('@staff')"
  - name: groups
    stage: admission
    effect: deny
    when: "provenance.claims.groups == 'x'"
  - name: scan
    stage: artifact
    effect: deny
    when: "artifact.summary.split(' ').exists(w, w.matches('^(a|b)+$') && w.contains('zz'))"
`))
	if err != nil {
		t.Fatal(err)
	}
	// A null provenance: staff cannot evaluate; the run is denied, though
	// the rule's effect is allow.
	d := p.Evaluate(t.Context(), gates.StageAdmission, gates.PolicyInput{Kind: "summarize"})
	if d.Allowed || d.Rule != "staff" || !strings.HasPrefix(d.Message, "policy_error: ") {
		t.Fatalf("null provenance: %+v, want denied by staff with policy_error", d)
	}
	// A missing claim.
	d = p.Evaluate(t.Context(), gates.StageAdmission, gates.PolicyInput{Provenance: prov("bob", nil)})
	if d.Allowed || d.Rule != "groups" || !strings.Contains(d.Message, "no such key") {
		t.Fatalf("missing claim: %+v", d)
	}
	// Over the cost limit: a summary of a million words.
	big := strings.Repeat("ab ", 1_000_000)
	d = p.Evaluate(t.Context(), gates.StageArtifact, gates.PolicyInput{Artifact: &schemas.ArtifactSummary{Summary: big}})
	if d.Allowed || d.Rule != "scan" || !strings.Contains(d.Message, "policy_error") {
		t.Fatalf("over the cost limit: %+v", d)
	}
}

func TestPolicyCompileErrorsWithLines(t *testing.T) {
	t.Parallel()
	src := `version: 1
default: maybe
rules:
  - name: typo
    stage: admission
    effect: deny
    when: "intent.knd == 'x'"
  - name: artifact-too-early
    stage: admission
    effect: deny
    when: "artifact.size > 10"
  - name: not-bool
    stage: admission
    effect: deny
    when: "intent.kind"
  - name: multi
    stage: artifact
    effect: deny
    when: |
      artifact.size > 10 &&
        artifact.score = 1
  - name: typo
    stage: later
    effect: block
    when: "true"
    colour: blue
  - stage: admission
    effect: deny
`
	_, err := gates.ParsePolicy([]byte(src))
	var pe *gates.PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v, want a *PolicyError", err)
	}
	want := []struct {
		line int
		part string
	}{
		{2, `default "maybe"`},
		{7, "undefined field 'knd'"},
		{11, "undeclared reference to 'artifact'"},
		{15, "want a bool condition"},
		{21, "Syntax error"},
		{22, "two rules (first at line 4)"},
		{23, `stage "later"`},
		{24, `effect "block"`},
		{26, `unknown key "colour"`},
		{27, "name missing"},
		{27, "when missing"},
	}
	for _, w := range want {
		found := false
		for _, p := range pe.Problems {
			if p.Line == w.line && strings.Contains(p.Msg, w.part) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d with %q; got:\n%s", w.line, w.part, strings.ReplaceAll(err.Error(), "; ", "\n"))
		}
	}
}

func TestPolicyVersion(t *testing.T) {
	t.Parallel()
	a, err := gates.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	b, err := gates.ParsePolicy([]byte(testPolicy + "# a comment changes the version\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.Version(), "sha256:") || len(a.Version()) != len("sha256:")+12 || a.Version() == b.Version() {
		t.Fatalf("versions %s %s", a.Version(), b.Version())
	}
	if a.Version() != gates.PolicyVersion([]byte(testPolicy)) || len(a.Rules()) != 10 || a.Default() != gates.EffectAllow {
		t.Fatalf("policy %s: %d rules, default %s", a.Version(), len(a.Rules()), a.Default())
	}
	for _, src := range []string{"version: 1\n", "version: 1\ndefault: deny\nrules: []\n"} {
		if _, err := gates.ParsePolicy([]byte(src)); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
	for _, src := range []string{"", "[1, 2]", "default: allow\n", "version: 2\n", "version: 1\nrules: {a: 1}\n", "version: 1\n\tbad"} {
		if _, err := gates.ParsePolicy([]byte(src)); err == nil {
			t.Errorf("%q: parsed", src)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	p, err := gates.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	c := gates.PolicyGate(p)
	if c.Name() != "policy" {
		t.Fatalf("name %s", c.Name())
	}
	s := delivered(func(e *schemas.RuntimeEvent) {
		e.Artifact.Summary = "BEGIN PRIVATE KEY"
		e.Provenance = prov("bob", nil)
	})
	o, err := c.Check(t.Context(), s)
	if err != nil || o.Passed || o.Rule != "no-secrets-out" || o.PolicyVersion != p.Version() || o.Code != "no-secrets-out" || o.Evidence["stage"] != "artifact" {
		t.Fatalf("outcome %+v, %v", o, err)
	}
	if o, _ := c.Check(t.Context(), delivered(nil)); !o.Passed || o.Rule != "default" {
		t.Fatalf("clean artifact: %+v", o)
	}
}

// TestPolicyReload: a changed file is in force within 2 s, with its new
// version; a broken change keeps the old one.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	v1 := "version: 1\ndefault: allow\n"
	v2 := "version: 1\ndefault: allow\nrules:\n  - name: no-summaries\n    stage: admission\n    effect: deny\n    when: \"intent.kind == 'summarize'\"\n"
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	f, err := gates.LoadPolicyFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	in := gates.PolicyInput{Kind: "summarize"}
	if d := f.Current().Evaluate(t.Context(), gates.StageAdmission, in); !d.Allowed || d.Version != gates.PolicyVersion([]byte(v1)) {
		t.Fatalf("v1: %+v", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	if err := os.WriteFile(path, []byte(v2), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	waitFor(t, 2*time.Second, func() bool {
		d := f.Current().Evaluate(t.Context(), gates.StageAdmission, in)
		return !d.Allowed && d.Rule == "no-summaries" && d.Version == gates.PolicyVersion([]byte(v2))
	})
	t.Logf("new policy in force %s after the write", time.Since(changed).Round(time.Millisecond))
	waitFor(t, time.Second, func() bool { return strings.Contains(logs.String(), "version="+gates.PolicyVersion([]byte(v2))) })

	// A broken policy is refused; v2 stays in force.
	if err := os.WriteFile(path, []byte(v2+"    colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool {
		return strings.Contains(logs.String(), "rejected, keeping version "+gates.PolicyVersion([]byte(v2)))
	})
	if v := f.Current().Version(); v != gates.PolicyVersion([]byte(v2)) {
		t.Fatalf("version %s after a broken change", v)
	}
	if !strings.Contains(logs.String(), "line 8") {
		t.Fatalf("the refusal does not say the line:\n%s", logs.String())
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(testPolicy))
	f.Add([]byte("version: 1\ndefault: deny\n"))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    stage: artifact\n    effect: allow\n    when: |\n      artifact.score >\n"))
	f.Add([]byte("rules: [[], {}, 1]\nversion: [1]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := gates.ParsePolicy(src)
		if err != nil {
			var pe *gates.PolicyError
			if errors.As(err, &pe) && len(pe.Problems) == 0 {
				t.Fatal("a policy error without problems")
			}
			return
		}
		if p.Version() != gates.PolicyVersion(src) {
			t.Fatal("version is not the content's")
		}
		// A valid policy decides every stage without panicking.
		for _, st := range []gates.Stage{gates.StageAdmission, gates.StageArtifact} {
			d := p.Evaluate(t.Context(), st, gates.PolicyInput{Kind: "summarize", Artifact: &schemas.ArtifactSummary{}})
			if d.Rule == "" || d.Version != p.Version() {
				t.Fatalf("decision %+v", d)
			}
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPolicyCheckCanceled(t *testing.T) {
	t.Parallel()
	p, err := gates.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := gates.PolicyGate(p).Check(ctx, delivered(nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled check: %v", err)
	}
}
