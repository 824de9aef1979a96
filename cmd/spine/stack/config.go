package stack

import (
	"context"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/internal/envconf"
	"github.com/spinerun/spine/pipeline"
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
	Synthetic    synthetic.Config
	Performance  gates.PerformanceConfig
	Projections  projections.Config
}

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
	errs = append(errs, cfg.Config.Validate()...)
	errs = append(errs, cfg.Orchestrator.Validate()...)
	errs = append(errs, cfg.Synthetic.Validate()...)
	errs = append(errs, cfg.Performance.Validate()...)
	errs = append(errs, cfg.Projections.Validate()...)
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
