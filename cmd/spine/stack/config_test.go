package stack_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
)

// Every missing or invalid variable is reported at once, in one error,
// whichever component's settings it belongs to.
func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SPINE_PARTITIONS":             "many",
		"SPINE_SHUTDOWN_TIMEOUT":       "soon",
		"SPINE_KAFKA_PORT":             "x",
		"KAFKA_SASL_MECHANISM":         "GSSAPI",
		"SCHEMA_REGISTRY_URL":          "localhost:8081",
		"SPINE_LOG_FORMAT":             "xml",
		"KAFKA_TLS_CERT_FILE":          "/nonexistent/cert.pem",
		"SPINE_VIEW_MAX_RUNS":          "-1",
		"SPINE_EXEC_TIMEOUT":           "later",
		"SPINE_RETRY_MAX_ATTEMPTS":     "-2",
		"SPINE_SYNTHETIC_FAILURE_RATE": "2",
		"SPINE_CANARY_LATENCY_MEAN":    "fast",
		"SPINE_LATENCY_BUDGETS":        "summarize",
		"SPINE_OIDC_ISSUER":            "http://id.example.com",
		"SPINE_OIDC_SKEW":              "5m",
		"SPINE_INGRESS_RATE":           "-1",
	}
	_, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(env))
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConfigError, got %v", err)
	}
	msg := err.Error()
	for v := range env {
		if v == "KAFKA_TLS_CERT_FILE" {
			v = "KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE"
		}
		if !strings.Contains(msg, v) {
			t.Errorf("error does not name %s:\n%s", v, msg)
		}
	}
	// A nested component's unparsable value names its variable and value.
	if !strings.Contains(msg, `SPINE_EXEC_TIMEOUT: "later" is invalid`) || !strings.Contains(msg, `SPINE_CANARY_LATENCY_MEAN: "fast" is invalid`) {
		t.Errorf("nested parse errors not named by variable:\n%s", msg)
	}
	if len(ce.Errs) < len(env) {
		t.Errorf("got %d problems, want at least %d:\n%s", len(ce.Errs), len(env), msg)
	}
}

// The defaults of every component are those each documents.
func TestLoadConfigComponentDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Partitions != 6 || cfg.Orchestrator.ExecTimeout != 30*time.Second || cfg.Orchestrator.RetryMaxAttempts != 3 ||
		cfg.Synthetic.LatencyMean != 50*time.Millisecond || cfg.Synthetic.CanaryFailureRate != -1 ||
		cfg.Performance.LatencyBudget != 2*time.Second || cfg.Projections.ViewMaxRuns != 100000 || cfg.Dataplane.Concurrency != 64 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.OIDC.Enabled() || cfg.OIDC.Skew != time.Minute || cfg.OIDC.MaxTokenBytes != 8192 || cfg.OIDC.HTTPClient != nil || cfg.OIDC.Logger != nil ||
		cfg.Ingress.MaxBodyBytes != 1114112 || cfg.Ingress.Rate != 50 || cfg.Ingress.ReadTimeout != 10*time.Second {
		t.Errorf("OIDC and ingress defaults: %+v %+v", cfg.OIDC, cfg.Ingress)
	}
	if got := strings.Join(cfg.Orchestrator.Kinds(), ","); got != "summarize,classify,extract,answer,tool_call" {
		t.Errorf("intent kinds %s", got)
	}
}

// SPINE_DATAPLANE_CONCURRENCY must be at least 1.
func TestLoadConfigDataplaneConcurrency(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "-3"} {
		_, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_DATAPLANE_CONCURRENCY": v}))
		if err == nil || !strings.Contains(err.Error(), "SPINE_DATAPLANE_CONCURRENCY") {
			t.Errorf("SPINE_DATAPLANE_CONCURRENCY=%s: %v", v, err)
		}
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_DATAPLANE_CONCURRENCY": "8"}))
	if err != nil || cfg.Dataplane.Concurrency != 8 {
		t.Fatalf("SPINE_DATAPLANE_CONCURRENCY=8: %v", err)
	}
}

// EnvVars lists every component's variables, each once.
func TestEnvVarsListsEveryComponent(t *testing.T) {
	t.Parallel()
	vars := stack.EnvVars()
	for _, v := range []string{"KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS", "SPINE_EXEC_TIMEOUT", "SPINE_SYNTHETIC_SLEEP", "SPINE_LATENCY_BUDGETS", "SPINE_VIEW_MAX_RUNS", "OTEL_SERVICE_NAME", "SPINE_OIDC_ISSUER", "SPINE_OIDC_AUDIENCE", "SPINE_INGRESS_MAX_BODY_BYTES", "SPINE_AGENTS", "SPINE_DATAPLANE_CONCURRENCY"} {
		if !slices.Contains(vars, v) {
			t.Errorf("EnvVars misses %s", v)
		}
	}
	seen := map[string]bool{}
	for _, v := range vars {
		if seen[v] {
			t.Errorf("%s listed twice", v)
		}
		seen[v] = true
	}
}

// SPINE_POLICY is compiled with the rest of the config: every problem of
// the file, with its line, among the other config errors.
func TestLoadConfigPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ndefault: maybe\nrules:\n  - name: x\n    stage: admission\n    effect: deny\n    when: \"intent.nope\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_POLICY": bad, "SPINE_PARTITIONS": "many"}))
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConfigError, got %v", err)
	}
	for _, want := range []string{"SPINE_PARTITIONS", "SPINE_POLICY " + bad + ": line 2: default \"maybe\"", "line 7: rule x: when: column 18: undefined field 'nope'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if _, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_POLICY": filepath.Join(dir, "none.yaml")})); err == nil ||
		!strings.Contains(err.Error(), "SPINE_POLICY") {
		t.Fatalf("missing policy file: %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("version: 1\ndefault: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_POLICY": good}))
	if err != nil || cfg.Policy.Path != good {
		t.Fatalf("valid policy: %v", err)
	}
	if !slices.Contains(stack.EnvVars(), "SPINE_POLICY") {
		t.Error("EnvVars does not list SPINE_POLICY")
	}
}

// SPINE_STATEFLOW names a stateflow file validated at start: a bad one is
// refused with its line; per-kind run deadlines parse as kind:duration.
func TestLoadConfigStateflow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "flow.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nstates:\n  - state: received\n    event: intent.received\n    entries: [{from: [none], on: nope}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_STATEFLOW": bad}))
	if err == nil || !strings.Contains(err.Error(), "SPINE_STATEFLOW") || !strings.Contains(err.Error(), bad+":5:") || !strings.Contains(err.Error(), `unknown trigger "nope"`) {
		t.Fatalf("bad stateflow file: %v", err)
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_RUN_DEADLINE_KINDS": "tool_call:2m,summarize:45s"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Orchestrator.RunDeadlineKinds; got["tool_call"] != 2*time.Minute || got["summarize"] != 45*time.Second || cfg.Orchestrator.RunDeadline != 10*time.Minute {
		t.Fatalf("deadlines: %v, default %s", got, cfg.Orchestrator.RunDeadline)
	}
}
