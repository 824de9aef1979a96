package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/internal/envconf"
)

// Config is the configuration of Spine's Kafka clients, topic layout,
// embedded broker, transactional loop and process (addresses, logging),
// read from the environment by LoadConfig. Every field documents its
// variable and default. A Config is immutable once loaded. The
// components' own settings (orchestrator, synthetic executor, gates,
// projections) live with each component and are composed with this one
// in the composition root (cmd/spine/stack.Config).
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
	// ProjectionRetention is SPINE_PROJECTION_RETENTION: the projection
	// topics (spine.proj.*, keyed per run or per window) are
	// compact,delete with this retention.ms, so a run's cells leave them
	// after it. 0 keeps them compact only, forever. Default 24h.
	ProjectionRetention time.Duration `env:"SPINE_PROJECTION_RETENTION, default=24h"`
	// EmbeddedMemory is SPINE_EMBEDDED_MEMORY, the memory budget of the
	// embedded broker's data (1GiB, 512MiB, …): `spine up` sizes the
	// retention.bytes and segment.bytes of every topic it creates from it
	// and prints what each gets (also at GET /v1/stack). 0: no budget. An
	// external cluster keeps its own settings. Default 1GiB.
	EmbeddedMemory ByteSize `env:"SPINE_EMBEDDED_MEMORY, default=1GiB"`
	// MemoryLimit is SPINE_MEMORY_LIMIT, the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit) for a process that runs the embedded
	// broker (`spine up`, `spine loadtest --embedded`): the garbage
	// collector works harder near it instead of letting the heap grow to
	// twice what is live. "auto" (default): 90 % of SPINE_EMBEDDED_MEMORY
	// plus MemoryOverhead on the embedded broker with a budget, none
	// otherwise; a size (4GiB) sets it; "off" sets none. GOMEMLIMIT, when
	// set, wins. See MemoryLimitResolved.
	MemoryLimit string `env:"SPINE_MEMORY_LIMIT, default=auto"`

	// DataDir is SPINE_DATA_DIR, where the embedded broker persists.
	// Default ./spine-data.
	DataDir string `env:"SPINE_DATA_DIR, default=./spine-data"`
	// EmbeddedBrokers is SPINE_EMBEDDED_BROKERS, how many in-process brokers
	// the embedded cluster runs on consecutive ports from KafkaPort.
	// Default 1.
	EmbeddedBrokers int `env:"SPINE_EMBEDDED_BROKERS, default=1"`
	// KafkaPort is SPINE_KAFKA_PORT, the first port of the embedded broker
	// (on BindHost). Default 9092.
	KafkaPort int `env:"SPINE_KAFKA_PORT, default=9092"`
	// BindHost is SPINE_BIND_HOST, the interface every listener binds whose
	// address names no host: the embedded broker, and SPINE_REGISTRY_ADDR,
	// SPINE_HTTP_ADDR and SPINE_METRICS_ADDR given as :port. `spine up` is
	// a development stack, so the default is the loopback interface; an
	// operator opts in to others with 0.0.0.0 (every interface), an
	// address of one, or an address with a host in SPINE_*_ADDR. Default
	// 127.0.0.1.
	BindHost string `env:"SPINE_BIND_HOST, default=127.0.0.1"`
	// KafkaAdvertisedHost is SPINE_KAFKA_ADVERTISED_HOST, the host the
	// embedded broker tells clients to connect to. Default empty: BindHost,
	// or the machine's host name when BindHost is 0.0.0.0 or ::.
	KafkaAdvertisedHost string `env:"SPINE_KAFKA_ADVERTISED_HOST"`
	// RegistryAddr is SPINE_REGISTRY_ADDR, where `spine up` and
	// `spine registry` serve the schema registry; :port binds BindHost.
	// Default :8081.
	RegistryAddr string `env:"SPINE_REGISTRY_ADDR, default=:8081"`
	// HTTPAddr is SPINE_HTTP_ADDR, the HTTP server with /healthz, /metrics,
	// the projections API and the dashboard; :port binds BindHost. Default
	// :8080.
	HTTPAddr string `env:"SPINE_HTTP_ADDR, default=:8080"`
	// MetricsAddr is SPINE_METRICS_ADDR, a separate listener for /metrics
	// only. Default empty: /metrics is served on HTTPAddr.
	MetricsAddr string `env:"SPINE_METRICS_ADDR"`

	// ServerTLSCert and ServerTLSKey are SPINE_TLS_CERT and SPINE_TLS_KEY
	// (PEM files, set both or neither): Spine's HTTP servers (API,
	// ingress, registry, metrics) serve https with them. Default: http.
	ServerTLSCert string `env:"SPINE_TLS_CERT"`
	ServerTLSKey  string `env:"SPINE_TLS_KEY"`
	// HTTPReadTimeout is SPINE_HTTP_READ_TIMEOUT, the bound on reading one
	// request, body included, on every HTTP server. Default 30s.
	HTTPReadTimeout time.Duration `env:"SPINE_HTTP_READ_TIMEOUT, default=30s"`
	// HTTPWriteTimeout is SPINE_HTTP_WRITE_TIMEOUT, the bound on one
	// request from its headers to its answer's end; above the longest
	// answer (GET /v1/runs/{id}?wait= waits up to 60s, a CPU profile 30s).
	// Default 90s.
	HTTPWriteTimeout time.Duration `env:"SPINE_HTTP_WRITE_TIMEOUT, default=90s"`
	// HTTPIdleTimeout is SPINE_HTTP_IDLE_TIMEOUT, how long a keep-alive
	// connection waits for its next request. Default 120s.
	HTTPIdleTimeout time.Duration `env:"SPINE_HTTP_IDLE_TIMEOUT, default=120s"`
	// RegistryBearerToken is SCHEMA_REGISTRY_BEARER_TOKEN, a bearer token
	// the registry clients send (for a registry whose writes need one).
	// Default none.
	RegistryBearerToken string `env:"SCHEMA_REGISTRY_BEARER_TOKEN"`
	// RegistryCAFile is SCHEMA_REGISTRY_CA_FILE, a PEM file of the CA(s)
	// the registry clients trust for an https SCHEMA_REGISTRY_URL, besides
	// the system's. Default: the system's only.
	RegistryCAFile string `env:"SCHEMA_REGISTRY_CA_FILE"`

	// Pprof is SPINE_PPROF: serve Go's profiles (net/http/pprof) under
	// /debug/pprof/ on HTTPAddr, for measuring memory and CPU. Default
	// false.
	Pprof bool `env:"SPINE_PPROF, default=false"`

	// ShutdownTimeout is SPINE_SHUTDOWN_TIMEOUT, the bound on a clean
	// shutdown: the transaction in flight gets it to commit, then leaving
	// the group and closing the clients get it again. Default 10s.
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

// ThreadRetentionBytesResolved is the retention.bytes thread topics get:
// the configured size; with 0 (auto), on the embedded broker their share of
// SPINE_EMBEDDED_MEMORY (0 here, sized by the layout's Allocations) or 32
// MiB without a budget, and -1 (none) on an external cluster.
func (c *Config) ThreadRetentionBytesResolved() int64 {
	switch {
	case c.ThreadRetentionBytes != 0:
		return c.ThreadRetentionBytes
	case c.Embedded() && c.EmbeddedMemory > 0:
		return 0
	case c.Embedded():
		return EmbeddedRetentionBytes
	}
	return -1
}

// MemoryOverhead is what a whole embedded stack holds beside its broker's
// data: the projections view (SPINE_VIEW_MAX_RUNS runs), the runner's and
// the orchestrator's state of the runs of their retention windows, client
// buffers and the garbage collector's headroom. SPINE_MEMORY_LIMIT's auto
// value and the memory soak's mark (e2e/scale/soak-memory.sh) add it to
// SPINE_EMBEDDED_MEMORY.
const MemoryOverhead = 3 << 30

// MemoryLimitResolved is the soft memory limit SPINE_MEMORY_LIMIT asks for
// (0: none) and where it comes from: "SPINE_MEMORY_LIMIT" for a size,
// "auto" for 90 % of the budget plus MemoryOverhead (the embedded broker
// with a budget only; the GC's target sits below the mark so that memory
// the runtime does not count — the binary, freed pages not yet returned —
// fits too), "" for none.
func (c *Config) MemoryLimitResolved() (int64, string, error) {
	switch v := strings.ToLower(strings.TrimSpace(c.MemoryLimit)); v {
	case "", "auto":
		if b := c.EmbeddedMemoryResolved(); b > 0 {
			return (b + MemoryOverhead) / 10 * 9, "auto", nil
		}
		return 0, "", nil
	case "off", "none", "0":
		return 0, "", nil
	default:
		var n ByteSize
		if err := n.UnmarshalText([]byte(v)); err != nil {
			return 0, "", fmt.Errorf("SPINE_MEMORY_LIMIT: %w, \"auto\" or \"off\"", err)
		}
		if n < 256<<20 {
			return 0, "", fmt.Errorf("SPINE_MEMORY_LIMIT: %s is less than 256MiB (\"off\" sets none)", n)
		}
		return int64(n), "SPINE_MEMORY_LIMIT", nil
	}
}

// EmbeddedRetentionBytes is the thread topics' retention.bytes per
// partition on the embedded broker without a memory budget.
const EmbeddedRetentionBytes = 32 << 20

// EmbeddedMemoryResolved is the embedded broker's memory budget in bytes:
// SPINE_EMBEDDED_MEMORY on the embedded broker, 0 on an external cluster.
func (c *Config) EmbeddedMemoryResolved() int64 {
	if !c.Embedded() {
		return 0
	}
	return int64(c.EmbeddedMemory)
}

// ListenAddr is where a listener configured as addr binds: addr itself
// when it names a host (0.0.0.0:8080, 10.0.0.5:8080), else BindHost with
// its port (:8080 → 127.0.0.1:8080 by default).
func (c *Config) ListenAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort(c.BindHost, port)
}

// HTTPServer returns an HTTP server named name for handler on addr (bound
// as ListenAddr says), with the configured timeouts and TLS.
func (c *Config) HTTPServer(name, addr string, handler http.Handler, log *slog.Logger) *HTTPServer {
	return &HTTPServer{
		Name: name, Addr: c.ListenAddr(addr), Handler: handler, ShutdownTimeout: c.ShutdownTimeout, Log: log,
		ReadTimeout: c.HTTPReadTimeout, WriteTimeout: c.HTTPWriteTimeout, IdleTimeout: c.HTTPIdleTimeout,
		TLSCertFile: c.ServerTLSCert, TLSKeyFile: c.ServerTLSKey,
	}
}

// Embedded reports whether the config asks for the in-process broker.
func (c *Config) Embedded() bool { return len(c.Brokers) == 0 }

// EnvVars lists every environment variable Config reads, the alias
// KAFKA_BOOTSTRAP_SERVERS included.
func EnvVars() []string {
	return append(envconf.Vars(&Config{}), "KAFKA_BOOTSTRAP_SERVERS")
}

// Aliases are the variables read when another is unset or empty.
var Aliases = map[string]string{"KAFKA_BROKERS": "KAFKA_BOOTSTRAP_SERVERS"}

// LoadConfig reads the process environment.
func LoadConfig(ctx context.Context) (*Config, error) {
	return LoadConfigFrom(ctx, envconfig.OsLookuper())
}

// LoadConfigFrom reads the configuration through l and validates it. Every
// missing or invalid variable is reported at once, in one *ConfigError.
func LoadConfigFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	var cfg Config
	errs := envconf.Load(ctx, l, &cfg, Aliases)
	errs = append(errs, cfg.Validate()...)
	if len(errs) > 0 {
		return nil, &ConfigError{Errs: errs}
	}
	return &cfg, nil
}

// ConfigError lists every problem found in the environment.
type ConfigError = envconf.Error

// Validate checks the settings, returning every problem.
func (c *Config) Validate() []error {
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
	if (c.ServerTLSCert == "") != (c.ServerTLSKey == "") {
		bad("SPINE_TLS_CERT and SPINE_TLS_KEY go together: set both or neither")
	}
	for name, f := range map[string]string{"SPINE_TLS_CERT": c.ServerTLSCert, "SPINE_TLS_KEY": c.ServerTLSKey, "SCHEMA_REGISTRY_CA_FILE": c.RegistryCAFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s: %v", name, err)
		}
	}
	if c.BindHost == "" {
		bad("SPINE_BIND_HOST: must not be empty (127.0.0.1: this machine only; 0.0.0.0: every interface)")
	} else if strings.ContainsAny(c.BindHost, " /,") || (strings.Contains(c.BindHost, ":") && net.ParseIP(c.BindHost) == nil) {
		bad("SPINE_BIND_HOST: %q is not a host name or IP address (no port)", c.BindHost)
	}
	if c.RegistryBearerToken != "" && c.RegistryUsername != "" {
		bad("SCHEMA_REGISTRY_BEARER_TOKEN and SCHEMA_REGISTRY_USERNAME: choose one way to authenticate to the registry")
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_HTTP_READ_TIMEOUT", c.HTTPReadTimeout}, {"SPINE_HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"SPINE_HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout}} {
		if d.d < time.Second {
			bad("%s: %s must be at least 1s", d.name, d.d)
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
	if c.ProjectionRetention < 0 {
		bad("SPINE_PROJECTION_RETENTION: %s must not be negative (0: keep)", c.ProjectionRetention)
	}
	if c.EmbeddedMemory < 0 || (c.EmbeddedMemory > 0 && c.EmbeddedMemory < 64<<20) {
		bad("SPINE_EMBEDDED_MEMORY: %s is neither 0 (no budget) nor at least 64MiB", c.EmbeddedMemory)
	}
	if _, _, err := c.MemoryLimitResolved(); err != nil {
		errs = append(errs, err)
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
