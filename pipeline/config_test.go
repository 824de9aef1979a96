package pipeline

import (
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

// Reporting every problem at once, for pipeline.Config's variables and
// every component's, is tested where the whole Config is composed:
// cmd/spine/stack's TestLoadConfigReportsEveryProblemAtOnce.

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
		{map[string]string{}, 0}, // from SPINE_EMBEDDED_MEMORY
		{map[string]string{"SPINE_EMBEDDED_MEMORY": "0"}, EmbeddedRetentionBytes},
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

// SPINE_MEMORY_LIMIT: auto follows the embedded budget (90 % of it plus
// MemoryOverhead), none on an external cluster or without a budget; a size
// is taken as given; "off" sets none; anything else is refused by name.
func TestMemoryLimitResolved(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want int64
		src  string
	}{
		{map[string]string{}, ((1 << 30) + MemoryOverhead) / 10 * 9, "auto"},
		{map[string]string{"SPINE_EMBEDDED_MEMORY": "512MiB"}, ((512 << 20) + MemoryOverhead) / 10 * 9, "auto"},
		{map[string]string{"SPINE_EMBEDDED_MEMORY": "0"}, 0, ""},
		{map[string]string{"KAFKA_BROKERS": "k:9092"}, 0, ""},
		{map[string]string{"SPINE_MEMORY_LIMIT": "6GiB"}, 6 << 30, "SPINE_MEMORY_LIMIT"},
		{map[string]string{"SPINE_MEMORY_LIMIT": "OFF"}, 0, ""},
	} {
		cfg, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		got, src, err := cfg.MemoryLimitResolved()
		if err != nil || got != tc.want || src != tc.src {
			t.Errorf("%v: limit %d from %q (%v), want %d from %q", tc.env, got, src, err, tc.want, tc.src)
		}
	}
	for _, bad := range []string{"lots", "-1GiB", "100MiB"} {
		_, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_MEMORY_LIMIT": bad}))
		if err == nil || !strings.Contains(err.Error(), "SPINE_MEMORY_LIMIT") {
			t.Errorf("SPINE_MEMORY_LIMIT=%s: %v, want an error naming it", bad, err)
		}
	}
}
