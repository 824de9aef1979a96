package verify_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/verify"
)

// Check a stack on localhost: its thread, DLQ and artifacts, and its
// projections against a replay. (Compiled, not run: it needs the stack.)
func ExampleRun() {
	ctx := context.Background()
	srcl, err := sr.NewClient(sr.URLs("http://127.0.0.1:8081"))
	if err != nil {
		panic(err)
	}
	serde, err := schemas.NewSerde(srcl)
	if err != nil {
		panic(err)
	}
	layout := pipeline.Layout{Partitions: 8}
	flow := orchestrator.MustStateflow(orchestrator.DefaultStates(orchestrator.DefaultRetry, 30*time.Second, 30*time.Second))
	rep, err := verify.Run(ctx, verify.Config{
		Kafka:  []kgo.Opt{kgo.SeedBrokers("127.0.0.1:9092")},
		Layout: layout,
		Codec:  pipeline.NewSchemaCodec(serde, layout),
		SchemaText: func(ctx context.Context, id int) (string, error) {
			s, err := srcl.SchemaByID(ctx, id)
			return s.Schema, err
		},
		Legal:       flow.Legal,
		Timeout:     flow.StateTimeout,
		Projections: true,
	})
	if err != nil {
		panic(err)
	}
	rep.WriteText(os.Stdout, 20)
	if !rep.Clean {
		fmt.Println(verify.ErrAnomalies)
	}
}
