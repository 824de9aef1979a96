package pipeline

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if !cfg.Embedded() {
		t.Errorf("no KAFKA_BROKERS should mean embedded")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"partitions", cfg.Partitions, int32(6)},
		{"data dir", cfg.DataDir, "./spine-data"},
		{"kafka port", cfg.KafkaPort, 9092},
		{"registry addr", cfg.RegistryAddr, ":8081"},
		{"http addr", cfg.HTTPAddr, ":8080"},
		{"shutdown", cfg.ShutdownTimeout, 10 * time.Second},
		{"retention", cfg.ThreadRetention, 24 * time.Hour},
		{"log level", cfg.LogLevel, "info"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigBrokersAndAlias(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"KAFKA_BROKERS", map[string]string{"KAFKA_BROKERS": "a:9092,b:9093"}, []string{"a:9092", "b:9093"}},
		{"alias", map[string]string{"KAFKA_BOOTSTRAP_SERVERS": "c:1"}, []string{"c:1"}},
		{"KAFKA_BROKERS wins", map[string]string{"KAFKA_BROKERS": "a:1", "KAFKA_BOOTSTRAP_SERVERS": "c:1"}, []string{"a:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(cfg.Brokers, ",") != strings.Join(tc.want, ",") {
				t.Errorf("brokers = %v, want %v", cfg.Brokers, tc.want)
			}
			if cfg.Embedded() {
				t.Error("brokers set: not embedded")
			}
		})
	}
}

// Every missing or invalid variable is reported at once, in one error.
func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SPINE_PARTITIONS":       "many",
		"SPINE_SHUTDOWN_TIMEOUT": "soon",
		"SPINE_KAFKA_PORT":       "x",
		"KAFKA_SASL_MECHANISM":   "GSSAPI",
		"SCHEMA_REGISTRY_URL":    "localhost:8081",
		"SPINE_LOG_FORMAT":       "xml",
		"KAFKA_TLS_CERT_FILE":    "/nonexistent/cert.pem",
	}
	_, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(env))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConfigError, got %v", err)
	}
	msg := err.Error()
	for _, v := range []string{"SPINE_PARTITIONS", "SPINE_SHUTDOWN_TIMEOUT", "SPINE_KAFKA_PORT", "KAFKA_SASL_MECHANISM", "SCHEMA_REGISTRY_URL", "SPINE_LOG_FORMAT", "KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE"} {
		if !strings.Contains(msg, v) {
			t.Errorf("error does not name %s:\n%s", v, msg)
		}
	}
	if len(ce.Errs) < 7 {
		t.Errorf("got %d problems, want at least 7:\n%s", len(ce.Errs), msg)
	}
}

func TestEnvVarsCoverConfig(t *testing.T) {
	t.Parallel()
	// Every env tag of Config must be listed by EnvVars, so manifests can be
	// checked against it.
	known := map[string]bool{}
	for _, v := range EnvVars() {
		known[v] = true
	}
	for _, tag := range configEnvTags() {
		if !known[tag] {
			t.Errorf("EnvVars() misses %s", tag)
		}
	}
}

func TestThreadRetentionBytesAuto(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want int64
	}{
		{map[string]string{}, EmbeddedRetentionBytes},
		{map[string]string{"KAFKA_BROKERS": "k:9092"}, -1},
		{map[string]string{"KAFKA_BROKERS": "k:9092", "SPINE_THREAD_RETENTION_BYTES": "1000"}, 1000},
		{map[string]string{"SPINE_THREAD_RETENTION_BYTES": "-1"}, -1},
	} {
		cfg, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.ThreadRetentionBytesResolved(); got != tc.want {
			t.Errorf("%v: retention bytes %d, want %d", tc.env, got, tc.want)
		}
		if got := NewLayout(cfg).RetentionBytes; got != tc.want {
			t.Errorf("%v: layout retention bytes %d, want %d", tc.env, got, tc.want)
		}
	}
	if _, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_THREAD_RETENTION_BYTES": "-5"})); err == nil {
		t.Error("-5 accepted")
	}
}
