package postgres_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/pipeline"
)

// A sink on the thread of one layout, writing into the database
// SPINE_PG_URL names until ctx ends. `spine run pgsink` builds it this way
// from the environment (package cmd/spine/stack).
func ExampleNew() {
	var codec pipeline.Codec // the stack's: pipeline.NewSchemaCodec(serde, layout)
	sink, err := postgres.New(postgres.SinkConfig{
		Config: postgres.Config{URL: postgres.Secret(os.Getenv("SPINE_PG_URL")), Schema: "spine",
			MaxArtifactBytes: 64 << 10, BatchRecords: 5000},
		Kafka:  []kgo.Opt{kgo.SeedBrokers("localhost:9092")},
		Layout: pipeline.Layout{Partitions: 6},
		Codec:  codec,
		Logger: slog.Default(),
	})
	if err != nil {
		slog.Error("no sink", "err", err)
		return
	}
	_ = sink.Run(context.Background())
}
