package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

func TestNewProcessorValidates(t *testing.T) {
	t.Parallel()
	l := pipeline.Layout{Prefix: "x."}
	ok := []pipeline.ProcessorOpt{
		pipeline.WithKafka(kgo.SeedBrokers("127.0.0.1:1")), pipeline.WithLayout(l),
		pipeline.WithInputs(l.Intents()), pipeline.WithCodec(rawCodec{}), pipeline.WithInstanceID("a"),
	}
	h := &counter{out: l.Control()}
	tests := []struct {
		name    string
		proc    string
		h       pipeline.Handler
		opts    []pipeline.ProcessorOpt
		wantErr []string
	}{
		{"valid", "orchestrator", h, nil, nil},
		{"no handler", "orchestrator", nil, nil, []string{"handler is nil"}},
		{"bad name", "a b", h, nil, []string{"processor name"}},
		{"own state as input", "orchestrator", h, []pipeline.ProcessorOpt{pipeline.WithInputs(l.State("orchestrator"))}, []string{"own state"}},
		{"everything wrong at once", "orchestrator", h, []pipeline.ProcessorOpt{
			pipeline.WithBatchSize(0), pipeline.WithTransactionTimeout(time.Millisecond), pipeline.WithInstanceID(""),
			pipeline.WithTimerTick(0), pipeline.WithRetryBackoff(time.Second, time.Millisecond),
		}, []string{"batch size", "transaction timeout", "instance id", "timer tick", "retry backoff"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := pipeline.NewProcessor(tc.proc, tc.h, append(append([]pipeline.ProcessorOpt{}, ok...), tc.opts...)...)
			if len(tc.wantErr) == 0 {
				if err != nil || p.TransactionalID() != "x.spine-orchestrator-a" {
					t.Fatalf("err %v, txn id %q", err, p.TransactionalID())
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
