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
	// per partition of the thread topics. Default 268435456 (256 MiB).
	ThreadRetentionBytes int64 `env:"SPINE_THREAD_RETENTION_BYTES, default=268435456"`

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
	// BatchMaxRecords is SPINE_BATCH_MAX_RECORDS, the most input records a
	// processor handles in one transaction. Default 1000.
	BatchMaxRecords int `env:"SPINE_BATCH_MAX_RECORDS, default=1000"`
	// TransactionTimeout is SPINE_TRANSACTION_TIMEOUT, the Kafka
	// transaction timeout of processors (at least 1s). Default 10s.
	TransactionTimeout time.Duration `env:"SPINE_TRANSACTION_TIMEOUT, default=10s"`

	// LogLevel is SPINE_LOG_LEVEL: debug, info, warn or error. Default info.
	LogLevel string `env:"SPINE_LOG_LEVEL, default=info"`
	// LogFormat is SPINE_LOG_FORMAT: text or json. Default text.
	LogFormat string `env:"SPINE_LOG_FORMAT, default=text"`
	// ServiceName is OTEL_SERVICE_NAME, the name in logs and client ids.
	// Default spine.
	ServiceName string `env:"OTEL_SERVICE_NAME, default=spine"`
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
		"SPINE_SHUTDOWN_TIMEOUT", "SPINE_INSTANCE_ID", "SPINE_BATCH_MAX_RECORDS",
		"SPINE_TRANSACTION_TIMEOUT", "SPINE_LOG_LEVEL", "SPINE_LOG_FORMAT",
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
	if c.ThreadRetentionBytes <= 0 {
		bad("SPINE_THREAD_RETENTION_BYTES: %d must be positive", c.ThreadRetentionBytes)
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
	if c.BatchMaxRecords < 1 {
		bad("SPINE_BATCH_MAX_RECORDS: %d must be at least 1", c.BatchMaxRecords)
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
