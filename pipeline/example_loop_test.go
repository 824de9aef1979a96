package pipeline_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// A processor is a pure Handler put on the loop: the loop owns the consumer
// group, the transaction, the state changelog, timers and the DLQ.
func ExampleNewProcessor() {
	ctx := context.Background()
	cfg, err := pipeline.LoadConfig(ctx)
	if err != nil {
		panic(err)
	}
	base, err := cfg.ProcessorOpts() // brokers, SASL/TLS, layout, instance id, batch size, timeouts
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	golden, err := thread.NewGoldenPath(reg)
	if err != nil {
		panic(err)
	}
	layout := pipeline.NewLayout(cfg)
	handler := pipeline.HandlerFunc(func(ctx context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
		return pipeline.Result{Outputs: []pipeline.Output{{Topic: layout.Control(), Key: in.Key, Value: in.Value, Version: in.Version}}}, nil
	})
	var codec pipeline.Codec // schemas.Serde in Spine
	p, err := pipeline.NewProcessor("orchestrator", handler, append(base,
		pipeline.WithInputs(layout.Intents()),
		pipeline.WithCodec(codec),
		pipeline.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		pipeline.WithRegisterer(reg),
		pipeline.WithObserver(pipeline.ObserveEvents(golden)),
	)...)
	if err != nil {
		panic(err)
	}
	_ = p.Run(ctx) // blocks until ctx ends
}
