package stack_test

import (
	"errors"
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
		cfg.Performance.LatencyBudget != 2*time.Second || cfg.Projections.ViewMaxRuns != 100000 {
		t.Errorf("defaults: %+v", cfg)
	}
	if got := strings.Join(cfg.Orchestrator.Kinds(), ","); got != "summarize,classify,extract,answer,tool_call" {
		t.Errorf("intent kinds %s", got)
	}
}

// EnvVars lists every component's variables, each once.
func TestEnvVarsListsEveryComponent(t *testing.T) {
	t.Parallel()
	vars := stack.EnvVars()
	for _, v := range []string{"KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS", "SPINE_EXEC_TIMEOUT", "SPINE_SYNTHETIC_SLEEP", "SPINE_LATENCY_BUDGETS", "SPINE_VIEW_MAX_RUNS", "OTEL_SERVICE_NAME"} {
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
