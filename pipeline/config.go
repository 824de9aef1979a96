package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Config is the whole configuration of a Spine binary, read from the
// environment by LoadConfig. Every field documents its variable and default.
// A Config is immutable once loaded.
type Config struct {
	// Brokers is KAFKA_BROKERS (alias KAFKA_BOOTSTRAP_SERVERS), a
	// comma-separated list of host:port. Empty (the default) means the
	// embedded kfake broker.
	Brokers []string `env:"KAFKA_BROKERS"`

	// RegistryURL is SCHEMA_REGISTRY_URL, the Confluent-compatible schema
	// registry. Empty (the default) means Spine's own registry, served by
	// `spine up` on RegistryAddr.
	RegistryURL string `env:"SCHEMA_REGISTRY_URL"`
	// RegistryUsername and RegistryPassword are SCHEMA_REGISTRY_USERNAME and
	// SCHEMA_REGISTRY_PASSWORD: HTTP basic auth, both for Spine's registry
	// server and for clients calling any registry. Default: no auth.
	RegistryUsername string `env:"SCHEMA_REGISTRY_USERNAME"`
	RegistryPassword string `env:"SCHEMA_REGISTRY_PASSWORD"`

	// SASL is KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512;
	// default none), KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD.
	SASLMechanism string `env:"KAFKA_SASL_MECHANISM"`
	SASLUsername  string `env:"KAFKA_SASL_USERNAME"`
	SASLPassword  string `env:"KAFKA_SASL_PASSWORD"`

	// TLS is KAFKA_TLS_ENABLED (default false; implied by any file below),
	// KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE (PEM).
	TLSEnabled  bool   `env:"KAFKA_TLS_ENABLED, default=false"`
	TLSCAFile   string `env:"KAFKA_TLS_CA_FILE"`
	TLSCertFile string `env:"KAFKA_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"KAFKA_TLS_KEY_FILE"`

	// TopicPrefix is SPINE_TOPIC_PREFIX, prepended to every topic and group
	// name. Default empty.
	TopicPrefix string `env:"SPINE_TOPIC_PREFIX"`
	// Partitions is SPINE_PARTITIONS, the partition count of every thread
	// topic (they must all match so a run is co-partitioned). Default 6.
	Partitions int32 `env:"SPINE_PARTITIONS, default=6"`
	// ReplicationFactor is SPINE_REPLICATION_FACTOR for created topics;
	// -1 (the default) takes the broker's default.
	ReplicationFactor int16 `env:"SPINE_REPLICATION_FACTOR, default=-1"`
	// ThreadRetention is SPINE_THREAD_RETENTION, retention.ms of the
	// append-only thread topics. Default 24h.
	ThreadRetention time.Duration `env:"SPINE_THREAD_RETENTION, default=24h"`
	// ThreadRetentionBytes is SPINE_THREAD_RETENTION_BYTES, retention.bytes
	// per partition of the thread topics. Default 0, which means: 33554432
	// (32 MiB) on the embedded broker, which keeps records in memory as well
	// as on disk, and none (retention by time only) on an external cluster;
	// -1 is none everywhere.
	ThreadRetentionBytes int64 `env:"SPINE_THREAD_RETENTION_BYTES, default=0"`

	// DataDir is SPINE_DATA_DIR, where the embedded broker persists.
	// Default ./spine-data.
	DataDir string `env:"SPINE_DATA_DIR, default=./spine-data"`
	// EmbeddedBrokers is SPINE_EMBEDDED_BROKERS, how many in-process brokers
	// the embedded cluster runs on consecutive ports from KafkaPort.
	// Default 1.
	EmbeddedBrokers int `env:"SPINE_EMBEDDED_BROKERS, default=1"`
	// KafkaPort is SPINE_KAFKA_PORT, the first port of the embedded broker
	// (127.0.0.1). Default 9092.
	KafkaPort int `env:"SPINE_KAFKA_PORT, default=9092"`
	// RegistryAddr is SPINE_REGISTRY_ADDR, where `spine up` and
	// `spine registry` serve the schema registry. Default :8081.
	RegistryAddr string `env:"SPINE_REGISTRY_ADDR, default=:8081"`
	// HTTPAddr is SPINE_HTTP_ADDR, the HTTP server with /healthz, /metrics,
	// the projections API and the dashboard. Default :8080.
	HTTPAddr string `env:"SPINE_HTTP_ADDR, default=:8080"`
	// MetricsAddr is SPINE_METRICS_ADDR, a separate listener for /metrics
	// only. Default empty: /metrics is served on HTTPAddr.
	MetricsAddr string `env:"SPINE_METRICS_ADDR"`

	// ShutdownTimeout is SPINE_SHUTDOWN_TIMEOUT, the bound on a clean
	// shutdown. Default 10s.
	ShutdownTimeout time.Duration `env:"SPINE_SHUTDOWN_TIMEOUT, default=10s"`
	// InstanceID is SPINE_INSTANCE_ID, this instance's name among the
	// instances of a processor: the transactional id is the processor's
	// group plus "-" plus it, so it must be stable across restarts and
	// unique among live instances. Default empty: the host name.
	InstanceID string `env:"SPINE_INSTANCE_ID"`
	// ViewMaxRuns is SPINE_VIEW_MAX_RUNS, the most runs the projections view
	// (GET /v1/runs/{trace_id}) keeps in memory, about 2 KB each; past it
	// the least recently updated run leaves the view (its figures stay in
	// the aggregates, the run stays on the compacted topic). 0: no bound.
	// Default 100000.
	ViewMaxRuns int `env:"SPINE_VIEW_MAX_RUNS, default=100000"`
	// BatchMaxRecords is SPINE_BATCH_MAX_RECORDS, the most input records a
	// processor handles in one transaction. Default 1000.
	BatchMaxRecords int `env:"SPINE_BATCH_MAX_RECORDS, default=1000"`
	// TransactionTimeout is SPINE_TRANSACTION_TIMEOUT, the Kafka
	// transaction timeout of processors (at least 1s). Default 10s.
	TransactionTimeout time.Duration `env:"SPINE_TRANSACTION_TIMEOUT, default=10s"`

	// IntentKinds is SPINE_INTENT_KINDS, the intent kinds the orchestrator
	// accepts, comma-separated; others are dead-lettered with
	// unknown_intent_kind. Default summarize,classify,extract,answer,tool_call.
	IntentKinds []string `env:"SPINE_INTENT_KINDS, default=summarize,classify,extract,answer,tool_call"`
	// MaxRunsPerActor is SPINE_MAX_RUNS_PER_ACTOR, the most runs of one
	// actor between dispatch and their end; more wait in state queued.
	// Default 0: no limit (and no arbitration hops).
	MaxRunsPerActor int `env:"SPINE_MAX_RUNS_PER_ACTOR, default=0"`
	// ExecTimeout is SPINE_EXEC_TIMEOUT, how long a run may stay dispatched
	// or executing before it is retried or times out. Default 30s.
	ExecTimeout time.Duration `env:"SPINE_EXEC_TIMEOUT, default=30s"`
	// GateTimeout is SPINE_GATE_TIMEOUT, how long a run may wait for its
	// gate verdict before it times out. Default 30s.
	GateTimeout time.Duration `env:"SPINE_GATE_TIMEOUT, default=30s"`
	// RunDeadline is SPINE_RUN_DEADLINE, the end-to-end deadline of a run
	// whose intent sets none. Default 0: none.
	RunDeadline time.Duration `env:"SPINE_RUN_DEADLINE, default=0s"`
	// RetryMaxAttempts is SPINE_RETRY_MAX_ATTEMPTS, the attempts of a
	// dispatch, the first included (Temporal's MaximumAttempts). Default 3.
	RetryMaxAttempts int32 `env:"SPINE_RETRY_MAX_ATTEMPTS, default=3"`
	// RetryInitialInterval is SPINE_RETRY_INITIAL_INTERVAL, the delay before
	// the first retry. Default 200ms.
	RetryInitialInterval time.Duration `env:"SPINE_RETRY_INITIAL_INTERVAL, default=200ms"`
	// RetryBackoffCoefficient is SPINE_RETRY_BACKOFF_COEFFICIENT, the growth
	// of the delay per retry (≥ 1). Default 2.
	RetryBackoffCoefficient float64 `env:"SPINE_RETRY_BACKOFF_COEFFICIENT, default=2"`
	// RetryMaxInterval is SPINE_RETRY_MAX_INTERVAL, the cap of the delay.
	// Default 5s.
	RetryMaxInterval time.Duration `env:"SPINE_RETRY_MAX_INTERVAL, default=5s"`
	// LatencyBudget is SPINE_LATENCY_BUDGET, the performance gate's latency
	// budget for intent kinds without their own. Default 2s.
	LatencyBudget time.Duration `env:"SPINE_LATENCY_BUDGET, default=2s"`
	// LatencyBudgets is SPINE_LATENCY_BUDGETS, budgets per intent kind as
	// kind=duration pairs, e.g. "summarize=1500ms,classify=500ms". Default
	// empty.
	LatencyBudgets string `env:"SPINE_LATENCY_BUDGETS"`
	// SyntheticLatencyMean is SPINE_SYNTHETIC_LATENCY_MEAN, the synthetic
	// executor's mean simulated latency. Default 50ms.
	SyntheticLatencyMean time.Duration `env:"SPINE_SYNTHETIC_LATENCY_MEAN, default=50ms"`
	// SyntheticLatencyP99 is SPINE_SYNTHETIC_LATENCY_P99, its 99th
	// percentile (log-normal). Default 200ms.
	SyntheticLatencyP99 time.Duration `env:"SPINE_SYNTHETIC_LATENCY_P99, default=200ms"`
	// SyntheticFailureRate is SPINE_SYNTHETIC_FAILURE_RATE, the share of
	// executions that fail, 0..1. Default 0.
	SyntheticFailureRate float64 `env:"SPINE_SYNTHETIC_FAILURE_RATE, default=0"`
	// SyntheticHangRate is SPINE_SYNTHETIC_HANG_RATE, the share of
	// executions that never answer, 0..1. Default 0.
	SyntheticHangRate float64 `env:"SPINE_SYNTHETIC_HANG_RATE, default=0"`
	// SyntheticScoreMean is SPINE_SYNTHETIC_SCORE_MEAN, the mean artifact
	// score. Default 0.8.
	SyntheticScoreMean float64 `env:"SPINE_SYNTHETIC_SCORE_MEAN, default=0.8"`
	// SyntheticScoreStddev is SPINE_SYNTHETIC_SCORE_STDDEV. Default 0.1.
	SyntheticScoreStddev float64 `env:"SPINE_SYNTHETIC_SCORE_STDDEV, default=0.1"`
	// SyntheticSleep is SPINE_SYNTHETIC_SLEEP: really wait the simulated
	// latency instead of only reporting it. Default false.
	SyntheticSleep bool `env:"SPINE_SYNTHETIC_SLEEP, default=false"`
	// CanaryLatencyMean is SPINE_CANARY_LATENCY_MEAN, the canary route's
	// mean latency. Default 0: the baseline's.
	CanaryLatencyMean time.Duration `env:"SPINE_CANARY_LATENCY_MEAN, default=0s"`
	// CanaryLatencyP99 is SPINE_CANARY_LATENCY_P99. Default 0: the
	// baseline's.
	CanaryLatencyP99 time.Duration `env:"SPINE_CANARY_LATENCY_P99, default=0s"`
	// CanaryFailureRate is SPINE_CANARY_FAILURE_RATE, 0..1. Default -1: the
	// baseline's.
	CanaryFailureRate float64 `env:"SPINE_CANARY_FAILURE_RATE, default=-1"`
	// CanaryScoreShift is SPINE_CANARY_SCORE_SHIFT, added to the canary's
	// mean score (a drifted model). Default 0.
	CanaryScoreShift float64 `env:"SPINE_CANARY_SCORE_SHIFT, default=0"`

	// GroupSessionTimeout is SPINE_GROUP_SESSION_TIMEOUT, how long a
	// processor instance that stopped heartbeating (crashed) keeps its
	// partitions before the group moves them. Apache Kafka accepts 6s..30s
	// by default. Default 10s.
	GroupSessionTimeout time.Duration `env:"SPINE_GROUP_SESSION_TIMEOUT, default=10s"`
	// StaticMembership is SPINE_STATIC_MEMBERSHIP: processors join their
	// group as static members named by their transactional id, so an
	// instance restarted with the same SPINE_INSTANCE_ID takes its
	// partitions back at once instead of after the session timeout; the
	// price is that a cleanly stopped static member does not leave the
	// group either. Default false.
	StaticMembership bool `env:"SPINE_STATIC_MEMBERSHIP, default=false"`

	// LogLevel is SPINE_LOG_LEVEL: debug, info, warn or error. Default info.
	LogLevel string `env:"SPINE_LOG_LEVEL, default=info"`
	// LogFormat is SPINE_LOG_FORMAT: text or json. Default text.
	LogFormat string `env:"SPINE_LOG_FORMAT, default=text"`
	// ServiceName is OTEL_SERVICE_NAME, the name in logs and client ids.
	// Default spine.
	ServiceName string `env:"OTEL_SERVICE_NAME, default=spine"`
}

// EmbeddedRetentionBytes is the thread topics' retention.bytes per
// partition on the embedded broker when SPINE_THREAD_RETENTION_BYTES is 0.
const EmbeddedRetentionBytes = 32 << 20

// ThreadRetentionBytesResolved is the retention.bytes thread topics get:
// the configured size, or with 0 (auto) EmbeddedRetentionBytes on the
// embedded broker and -1 (none) on an external cluster.
func (c *Config) ThreadRetentionBytesResolved() int64 {
	switch {
	case c.ThreadRetentionBytes != 0:
		return c.ThreadRetentionBytes
	case c.Embedded():
		return EmbeddedRetentionBytes
	}
	return -1
}

// Embedded reports whether the config asks for the in-process broker.
func (c *Config) Embedded() bool { return len(c.Brokers) == 0 }

// EnvVars lists every environment variable Config reads, for docs and for
// checking deployment manifests.
func EnvVars() []string {
	return []string{
		"KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS",
		"SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_USERNAME", "SCHEMA_REGISTRY_PASSWORD",
		"KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
		"KAFKA_TLS_ENABLED", "KAFKA_TLS_CA_FILE", "KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE",
		"SPINE_TOPIC_PREFIX", "SPINE_PARTITIONS", "SPINE_REPLICATION_FACTOR",
		"SPINE_THREAD_RETENTION", "SPINE_THREAD_RETENTION_BYTES",
		"SPINE_DATA_DIR", "SPINE_EMBEDDED_BROKERS", "SPINE_KAFKA_PORT",
		"SPINE_REGISTRY_ADDR", "SPINE_HTTP_ADDR", "SPINE_METRICS_ADDR",
		"SPINE_SHUTDOWN_TIMEOUT", "SPINE_INSTANCE_ID", "SPINE_VIEW_MAX_RUNS", "SPINE_BATCH_MAX_RECORDS",
		"SPINE_TRANSACTION_TIMEOUT", "SPINE_GROUP_SESSION_TIMEOUT", "SPINE_STATIC_MEMBERSHIP", "SPINE_LOG_LEVEL", "SPINE_LOG_FORMAT",
		"SPINE_INTENT_KINDS", "SPINE_MAX_RUNS_PER_ACTOR", "SPINE_EXEC_TIMEOUT", "SPINE_GATE_TIMEOUT",
		"SPINE_RUN_DEADLINE", "SPINE_RETRY_MAX_ATTEMPTS", "SPINE_RETRY_INITIAL_INTERVAL",
		"SPINE_RETRY_BACKOFF_COEFFICIENT", "SPINE_RETRY_MAX_INTERVAL", "SPINE_LATENCY_BUDGET",
		"SPINE_LATENCY_BUDGETS", "SPINE_SYNTHETIC_LATENCY_MEAN", "SPINE_SYNTHETIC_LATENCY_P99",
		"SPINE_SYNTHETIC_FAILURE_RATE", "SPINE_SYNTHETIC_HANG_RATE", "SPINE_SYNTHETIC_SCORE_MEAN",
		"SPINE_SYNTHETIC_SCORE_STDDEV", "SPINE_SYNTHETIC_SLEEP", "SPINE_CANARY_LATENCY_MEAN",
		"SPINE_CANARY_LATENCY_P99", "SPINE_CANARY_FAILURE_RATE", "SPINE_CANARY_SCORE_SHIFT",
		"OTEL_SERVICE_NAME",
	}
}

// LoadConfig reads the process environment.
func LoadConfig(ctx context.Context) (*Config, error) {
	return LoadConfigFrom(ctx, envconfig.OsLookuper())
}

// go-envconfig names the Go field in its errors ("Partitions: ...").
var envErrField = regexp.MustCompile(`^([A-Za-z0-9_]+): `)

// envKeyOf maps Config's Go field names to their variables.
func envKeyOf(field string) (string, bool) {
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		return "", false
	}
	tag := f.Tag.Get("env")
	if tag == "" {
		return "", false
	}
	return strings.TrimSpace(strings.Split(tag, ",")[0]), true
}

// LoadConfigFrom reads the configuration through l and validates it. Every
// missing or invalid variable is reported at once, joined in one error.
func LoadConfigFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	// go-envconfig stops at the first bad variable. To report them all, hide
	// each bad variable (so its default applies) and process again.
	hidden := map[string]bool{}
	var errs []error
	var cfg Config
	for range 64 {
		cfg = Config{}
		lk := envconfig.LookuperFunc(func(key string) (string, bool) {
			if hidden[key] {
				return "", false
			}
			if key == "KAFKA_BROKERS" {
				if v, ok := l.Lookup(key); ok && v != "" {
					return v, true
				}
				return l.Lookup("KAFKA_BOOTSTRAP_SERVERS")
			}
			return l.Lookup(key)
		})
		err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: lk})
		if err == nil {
			break
		}
		m := envErrField.FindStringSubmatch(err.Error())
		key, ok := "", false
		if m != nil {
			key, ok = envKeyOf(m[1])
		}
		if !ok || hidden[key] {
			return nil, &ConfigError{Errs: append(errs, err)}
		}
		v, _ := lk.Lookup(key)
		hidden[key] = true
		errs = append(errs, fmt.Errorf("%s: %q is invalid: %v", key, v, errors.Unwrap(err)))
	}
	errs = append(errs, cfg.validate()...)
	if len(errs) > 0 {
		return nil, &ConfigError{Errs: errs}
	}
	return &cfg, nil
}

// ConfigError lists every problem found in the environment.
type ConfigError struct{ Errs []error }

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Errs))
	if len(e.Errs) > 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, err := range e.Errs {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the individual problems.
func (e *ConfigError) Unwrap() []error { return e.Errs }

func (c *Config) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
			bad("KAFKA_BROKERS: %q is not host:port", b)
		}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		bad("KAFKA_SASL_MECHANISM: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	if c.SASLMechanism != "" && (c.SASLUsername == "" || c.SASLPassword == "") {
		bad("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with KAFKA_SASL_MECHANISM=%s", c.SASLMechanism)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together: set both or neither")
	}
	for name, f := range map[string]string{"KAFKA_TLS_CA_FILE": c.TLSCAFile, "KAFKA_TLS_CERT_FILE": c.TLSCertFile, "KAFKA_TLS_KEY_FILE": c.TLSKeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s: %v", name, err)
		}
	}
	if (c.RegistryUsername == "") != (c.RegistryPassword == "") {
		bad("SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD go together: set both or neither")
	}
	if c.RegistryURL != "" && !strings.HasPrefix(c.RegistryURL, "http://") && !strings.HasPrefix(c.RegistryURL, "https://") {
		bad("SCHEMA_REGISTRY_URL: %q must start with http:// or https://", c.RegistryURL)
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		bad("SPINE_PARTITIONS: %d is not in 1..10000", c.Partitions)
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		bad("SPINE_REPLICATION_FACTOR: %d is not -1 (broker default) or a positive count", c.ReplicationFactor)
	}
	if c.ThreadRetention <= 0 {
		bad("SPINE_THREAD_RETENTION: %s must be positive", c.ThreadRetention)
	}
	if c.ThreadRetentionBytes < -1 {
		bad("SPINE_THREAD_RETENTION_BYTES: %d is not -1 (none), 0 (auto) or a positive size", c.ThreadRetentionBytes)
	}
	if c.DataDir == "" {
		bad("SPINE_DATA_DIR: must not be empty")
	}
	if c.EmbeddedBrokers < 1 || c.EmbeddedBrokers > 9 {
		bad("SPINE_EMBEDDED_BROKERS: %d is not in 1..9", c.EmbeddedBrokers)
	}
	if c.KafkaPort < 0 || c.KafkaPort > 65535-c.EmbeddedBrokers {
		bad("SPINE_KAFKA_PORT: %d is not a port", c.KafkaPort)
	}
	for name, a := range map[string]string{"SPINE_REGISTRY_ADDR": c.RegistryAddr, "SPINE_HTTP_ADDR": c.HTTPAddr, "SPINE_METRICS_ADDR": c.MetricsAddr} {
		if a == "" && name == "SPINE_METRICS_ADDR" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("%s: %q is not host:port or :port", name, a)
		}
	}
	if c.ShutdownTimeout <= 0 {
		bad("SPINE_SHUTDOWN_TIMEOUT: %s must be positive", c.ShutdownTimeout)
	}
	if strings.ContainsAny(c.InstanceID, " /\\,:") {
		bad("SPINE_INSTANCE_ID: %q must not contain spaces or separators", c.InstanceID)
	}
	if c.ViewMaxRuns < 0 {
		bad("SPINE_VIEW_MAX_RUNS: %d must not be negative (0: no bound)", c.ViewMaxRuns)
	}
	if c.BatchMaxRecords < 1 {
		bad("SPINE_BATCH_MAX_RECORDS: %d must be at least 1", c.BatchMaxRecords)
	}
	if c.GroupSessionTimeout < time.Second {
		bad("SPINE_GROUP_SESSION_TIMEOUT: %s must be at least 1s", c.GroupSessionTimeout)
	}
	if c.TransactionTimeout < time.Second {
		bad("SPINE_TRANSACTION_TIMEOUT: %s must be at least 1s", c.TransactionTimeout)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		bad("SPINE_LOG_LEVEL: %v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("SPINE_LOG_FORMAT: %q is not text or json", c.LogFormat)
	}
	errs = append(errs, c.validateProcessors()...)
	if strings.ContainsAny(c.TopicPrefix, " /\\,:") {
		bad("SPINE_TOPIC_PREFIX: %q has characters Kafka topic names do not allow", c.TopicPrefix)
	}
	return errs
}

// ParseLogLevel parses debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, errors.New("want debug, info, warn or error")
	}
	return l, nil
}

// NewLogger builds the process logger the config asks for, writing to w.
func (c *Config) NewLogger(w *os.File) *slog.Logger {
	lvl, _ := ParseLogLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// validateProcessors checks the processors' settings (orchestrator,
// dataplane, gates).
func (c *Config) validateProcessors() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	kinds := 0
	for _, k := range c.IntentKinds {
		if strings.TrimSpace(k) != "" {
			kinds++
		}
	}
	if kinds == 0 {
		bad("SPINE_INTENT_KINDS: name at least one intent kind")
	}
	if c.MaxRunsPerActor < 0 {
		bad("SPINE_MAX_RUNS_PER_ACTOR: %d must be 0 (no limit) or positive", c.MaxRunsPerActor)
	}
	for name, d := range map[string]time.Duration{"SPINE_EXEC_TIMEOUT": c.ExecTimeout, "SPINE_GATE_TIMEOUT": c.GateTimeout, "SPINE_LATENCY_BUDGET": c.LatencyBudget} {
		if d <= 0 {
			bad("%s: %s must be positive", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"SPINE_RUN_DEADLINE": c.RunDeadline, "SPINE_RETRY_INITIAL_INTERVAL": c.RetryInitialInterval,
		"SPINE_SYNTHETIC_LATENCY_MEAN": c.SyntheticLatencyMean, "SPINE_SYNTHETIC_LATENCY_P99": c.SyntheticLatencyP99,
		"SPINE_CANARY_LATENCY_MEAN": c.CanaryLatencyMean, "SPINE_CANARY_LATENCY_P99": c.CanaryLatencyP99} {
		if d < 0 {
			bad("%s: %s must not be negative", name, d)
		}
	}
	if c.RetryMaxAttempts < 0 {
		bad("SPINE_RETRY_MAX_ATTEMPTS: %d must be 0 (unlimited) or positive", c.RetryMaxAttempts)
	}
	if c.RetryBackoffCoefficient < 1 {
		bad("SPINE_RETRY_BACKOFF_COEFFICIENT: %v must be at least 1", c.RetryBackoffCoefficient)
	}
	if c.RetryMaxInterval < c.RetryInitialInterval {
		bad("SPINE_RETRY_MAX_INTERVAL: %s is below SPINE_RETRY_INITIAL_INTERVAL %s", c.RetryMaxInterval, c.RetryInitialInterval)
	}
	for _, part := range strings.Split(c.LatencyBudgets, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if d, err := time.ParseDuration(strings.TrimSpace(v)); !ok || strings.TrimSpace(k) == "" || err != nil || d <= 0 {
			bad("SPINE_LATENCY_BUDGETS: %q is not kind=duration (e.g. summarize=1500ms)", part)
		}
	}
	for name, r := range map[string]float64{"SPINE_SYNTHETIC_FAILURE_RATE": c.SyntheticFailureRate, "SPINE_SYNTHETIC_HANG_RATE": c.SyntheticHangRate} {
		if r < 0 || r > 1 {
			bad("%s: %v is not in 0..1", name, r)
		}
	}
	if c.SyntheticFailureRate+c.SyntheticHangRate > 1 {
		bad("SPINE_SYNTHETIC_FAILURE_RATE + SPINE_SYNTHETIC_HANG_RATE: %v exceeds 1", c.SyntheticFailureRate+c.SyntheticHangRate)
	}
	if c.CanaryFailureRate != -1 && (c.CanaryFailureRate < 0 || c.CanaryFailureRate > 1) {
		bad("SPINE_CANARY_FAILURE_RATE: %v is not in 0..1 (or -1 for the baseline's)", c.CanaryFailureRate)
	}
	if c.SyntheticScoreStddev < 0 {
		bad("SPINE_SYNTHETIC_SCORE_STDDEV: %v must not be negative", c.SyntheticScoreStddev)
	}
	return errs
}
