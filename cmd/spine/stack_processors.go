package main

import (
	"context"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// wireProcessors adds the orchestrator, dataplane and gates runner to the
// stack, each on its own transactional loop, sharing the golden-path
// metrics.
func (st *stack) wireProcessors(ctx context.Context) error {
	serde, err := schemas.NewSerde(st.sr, schemas.WithLogger(st.a.log))
	if err != nil {
		return err
	}
	codec := pipeline.NewSchemaCodec(serde, pipeline.NewLayout(st.cfg))
	golden, err := thread.NewGoldenPath(st.reg, pipeline.GateNames...)
	if err != nil {
		return err
	}
	deps := processors.Deps{Brokers: st.brokers, Codec: codec, Log: st.a.log, Reg: st.reg, Golden: golden, Router: st.router()}
	for _, name := range processors.Names {
		p, err := processors.New(st.cfg, name, deps)
		if err != nil {
			return err
		}
		st.runners = append(st.runners, p.Run)
	}
	return nil
}
