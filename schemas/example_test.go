package schemas_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
)

// A producer writes a RuntimeEvent with contract v1; a consumer whose Go
// types mirror v2 reads it back, with the v2 fields at their defaults.
func ExampleSerde() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Spine's schema registry, stored on an in-process Kafka broker.
	broker := pipeline.NewEmbedded(pipeline.EmbeddedConfig{})
	if err := broker.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()
	reg, err := registry.New(registry.WithKafka(kgo.SeedBrokers(broker.Addrs()...)))
	if err != nil {
		fmt.Println(err)
		return
	}
	stopped := make(chan error, 1)
	go func() { stopped <- reg.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	select {
	case <-reg.Ready():
	case err := <-stopped:
		fmt.Println("registry:", err)
		return
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		fmt.Println(err)
		return
	}
	serde, err := schemas.NewSerde(cl, schemas.WithAutoRegister())
	if err != nil {
		fmt.Println(err)
		return
	}

	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	b, err := serde.Encode(ctx, schemas.ValueSubject("spine.control"), schemas.V1, &schemas.RuntimeEvent{
		EventID: "ev-1", TraceID: "run-1", SpanID: "s1", Actor: "user:ada", Intent: "summarize",
		SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now,
		Phase: schemas.PhaseControl, EventType: "intent.received", State: "received",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("magic byte %d, schema id %d, %d bytes\n", b[0], binary.BigEndian.Uint32(b[1:5]), len(b))

	v, _, writer, err := serde.Decode(ctx, b)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := v.(*schemas.RuntimeEvent)
	fmt.Printf("written as %s: %s in state %s, route %q, attributes %v\n", writer, ev.EventType, ev.State, ev.Route, ev.Attributes)

	_, _, _, err = serde.Decode(ctx, b[:len(b)-1])
	fmt.Println(schemas.CodeOf(err))
	// Output:
	// magic byte 0, schema id 1, 87 bytes
	// written as V1: intent.received in state received, route "baseline", attributes map[]
	// truncated
}
