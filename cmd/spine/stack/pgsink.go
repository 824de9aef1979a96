package stack

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/pipeline"
)

// PGSink is the PostgreSQL sink's part: `spine run pgsink`, and part of
// `spine up` when SPINE_PG_URL is set.
const PGSink = postgres.Name

// newPGSink builds the PostgreSQL sink on the stack's codec.
// Under SPINE_STATIC_MEMBERSHIP it joins as the static member
// <group>-<instance id>.
func newPGSink(cfg *Config, kafka []kgo.Opt, layout pipeline.Layout, codec pipeline.Codec, instance string, log *slog.Logger, reg prometheus.Registerer) (*postgres.Sink, error) {
	if !cfg.Postgres.Enabled() {
		return nil, errors.New("pgsink: no database: set SPINE_PG_URL (postgres://user:password@host:port/db)")
	}
	var static string
	if cfg.StaticMembership {
		static = layout.Group(postgres.Name) + "-" + instance
	}
	return postgres.New(postgres.SinkConfig{
		InstanceID:     static,
		Config:         cfg.Postgres,
		Kafka:          kafka,
		Layout:         layout,
		Codec:          codec,
		SessionTimeout: cfg.GroupSessionTimeout,
		Logger:         log,
		Registerer:     reg,
	})
}
