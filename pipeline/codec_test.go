package pipeline_test

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

// codecOnRegistry returns a SchemaCodec on Spine's registry, auto-registering.
func codecOnRegistry(t *testing.T, layout pipeline.Layout) *pipeline.SchemaCodec {
	t.Helper()
	prefix := kafkatest.Prefix(t)
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(kafkatest.Brokers(t)...)),
		registry.WithTopic(prefix+"_schemas"),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(cl, schemas.WithAutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.NewSchemaCodec(serde, layout)
}

func TestSchemaCodec(t *testing.T) {
	t.Parallel()
	layout := pipeline.Layout{Prefix: "codec."}
	codec := codecOnRegistry(t, layout)
	ctx := t.Context()
	now := time.Now()
	ev := &schemas.RuntimeEvent{EventID: "e1", TraceID: "r1", SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now,
		Phase: schemas.PhaseControl, EventType: "intent.received", State: "received"}
	in := &schemas.Intent{IntentID: "i1", TraceID: "r1", Kind: "summarize", SchemaVersion: schemas.V1, Timestamp: now}

	// Version 0 means V1; the subject is <topic>-value.
	evBytes, err := codec.Encode(ctx, layout.Control(), 0, ev)
	if err != nil {
		t.Fatal(err)
	}
	v, writer, err := codec.Decode(ctx, layout.Control(), evBytes)
	if err != nil || writer != schemas.V1 {
		t.Fatalf("decode: %v, writer %s", err, writer)
	}
	if got := v.(*schemas.RuntimeEvent); got.EventID != "e1" || got.Route != "baseline" {
		t.Fatalf("decoded %+v", got)
	}
	inBytes, err := codec.Encode(ctx, layout.Intents(), schemas.V2, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := codec.Serde().SchemaID(ctx, schemas.ValueSubject(string(layout.Intents())), schemas.ContractIntent, schemas.V2); err != nil {
		t.Fatalf("intent v2 not under %s-value: %v", layout.Intents(), err)
	}

	tests := []struct {
		name  string
		topic pipeline.Topic
		b     []byte
		code  string
	}{
		{"event on the intents topic", layout.Intents(), evBytes, "wrong_contract"},
		{"intent on a gate topic", layout.Gate("drift"), inBytes, "wrong_contract"},
		{"garbage", layout.Control(), []byte("garbage"), "bad_magic"},
		{"empty", layout.Dataplane(), nil, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := codec.Decode(ctx, tt.topic, tt.b)
			if got := pipeline.CodeOf(err); got != tt.code {
				t.Fatalf("code %q (%v), want %q", got, err, tt.code)
			}
		})
	}
	// Outside the thread, either contract decodes.
	if _, _, err := codec.Decode(ctx, layout.DLQ(), inBytes); err != nil {
		t.Fatalf("intent on a non-thread topic: %v", err)
	}
	// Encoding the wrong contract for a topic is refused before the registry.
	_, err = codec.Encode(ctx, layout.Intents(), schemas.V1, ev)
	var ee *schemas.EncodeError
	if !errors.As(err, &ee) || ee.Code != schemas.CodeUnsupportedType {
		t.Fatalf("event encoded for the intents topic: %v", err)
	}
}
