package stack

import (
	"context"
	"fmt"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/agents"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/internal/envconf"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
)

// Config is the whole configuration of a Spine binary: the Kafka clients,
// topic layout, loop and process settings of package pipeline (embedded,
// so cfg.Brokers reads as before) and each component's own settings, each
// validated by its owner. LoadConfig reads it from the environment and
// reports every problem at once.
type Config struct {
	pipeline.Config
	Orchestrator orchestrator.Config
	Dataplane    dataplane.Settings
	Synthetic    synthetic.Config
	Performance  gates.PerformanceConfig
	Projections  projections.Config
	// Policy names the policy file (SPINE_POLICY); LoadConfigFrom
	// compiles it, Build loads it and reloads it on change.
	Policy gates.PolicyConfig
	// OIDC verifies callers' tokens when SPINE_OIDC_ISSUER is set.
	OIDC oidc.Config
	// Ingress is POST /v1/intents.
	Ingress ingress.Config
	// Drift is the drift gate and monitor (SPINE_DRIFT_*).
	Drift gates.DriftConfig
	// Agents names the agents file (SPINE_AGENTS); LoadConfigFrom loads it.
	Agents agents.Config
	// Postgres is the PostgreSQL sink (SPINE_PG_*): `spine run pgsink`,
	// and `spine up` when SPINE_PG_URL is set.
	Postgres postgres.Config
	// Tracing is OpenTelemetry export (OTEL_EXPORTER_OTLP_*).
	Tracing TracingConfig

	// agents is the loaded agents file, nil when SPINE_AGENTS is unset.
	agents *agents.File
}

// AgentsFile is the agents file SPINE_AGENTS names, loaded and validated
// by LoadConfigFrom; nil when it is unset (the synthetic executor serves
// every kind).
func (c *Config) AgentsFile() *agents.File { return c.agents }

// LoadConfig reads the process environment.
func LoadConfig(ctx context.Context) (*Config, error) {
	return LoadConfigFrom(ctx, envconfig.OsLookuper())
}

// LoadConfigFrom reads the configuration through l and validates every
// component's part of it. Every missing or invalid variable is reported at
// once, in one *pipeline.ConfigError.
func LoadConfigFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	var cfg Config
	errs := envconf.Load(ctx, l, &cfg, pipeline.Aliases)
	// The agents file, when given, names the intent kinds.
	file, agentErrs := cfg.Agents.Load(l.Lookup)
	for _, err := range agentErrs {
		errs = append(errs, fmt.Errorf("SPINE_AGENTS: %w", err))
	}
	if file != nil {
		cfg.agents = file
		cfg.Orchestrator.IntentKinds = file.Kinds()
	}
	errs = append(errs, cfg.Config.Validate()...)
	errs = append(errs, cfg.Orchestrator.Validate()...)
	errs = append(errs, cfg.Dataplane.Validate()...)
	errs = append(errs, cfg.Synthetic.Validate()...)
	errs = append(errs, cfg.Performance.Validate()...)
	errs = append(errs, cfg.Projections.Validate()...)
	errs = append(errs, cfg.Postgres.Validate()...)
	errs = append(errs, cfg.Drift.Validate()...)
	errs = append(errs, cfg.Policy.Validate()...)
	errs = append(errs, cfg.OIDC.Validate()...)
	errs = append(errs, cfg.Ingress.Validate()...)
	errs = append(errs, cfg.Tracing.Validate()...)
	if len(errs) > 0 {
		return nil, &pipeline.ConfigError{Errs: errs}
	}
	return &cfg, nil
}

// EnvVars lists every environment variable Config reads, the alias
// KAFKA_BOOTSTRAP_SERVERS included, for docs and for checking deployment
// manifests.
func EnvVars() []string {
	return append(envconf.Vars(&Config{}), "KAFKA_BOOTSTRAP_SERVERS")
}
