package schemas_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

func TestRegisterContracts(t *testing.T) {
	t.Parallel()
	prefix := kafkatest.Prefix(t)
	reg := registrytest.Start(t, registry.WithKafka(kgo.SeedBrokers(kafkatest.Brokers(t)...)), registry.WithTopic(prefix+"_schemas"), registry.WithTransactionalID(prefix+"registry"))
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, _ := sr.NewClient(sr.URLs(srv.URL))

	layout := pipeline.Layout{Prefix: prefix, Partitions: 1}
	subjects := layout.ContractSubjects()
	if got := subjects[schemas.ValueSubject(string(layout.Intents()))]; got != schemas.ContractIntent {
		t.Fatalf("intents subject carries %q, want intent", got)
	}
	if got := subjects[schemas.ValueSubject(string(layout.Gate("schema")))]; got != schemas.ContractRuntimeEvent {
		t.Fatalf("gate.schema subject carries %q, want runtime_event", got)
	}
	if _, ok := subjects[schemas.ValueSubject(string(layout.DLQ()))]; ok {
		t.Fatal("the DLQ must have no subject")
	}

	first, err := schemas.RegisterContracts(t.Context(), cl, subjects)
	if err != nil {
		t.Fatal(err)
	}
	again, err := schemas.RegisterContracts(t.Context(), cl, subjects)
	if err != nil {
		t.Fatal(err)
	}
	intentSubj := schemas.ValueSubject(string(layout.Intents()))
	ctlSubj := schemas.ValueSubject(string(layout.Control()))
	for subj, ids := range first {
		if ids[schemas.V1] == ids[schemas.V2] || ids[schemas.V1] <= 0 {
			t.Errorf("%s: ids %v, want distinct positive ids per version", subj, ids)
		}
		if again[subj][schemas.V1] != ids[schemas.V1] || again[subj][schemas.V2] != ids[schemas.V2] {
			t.Errorf("%s: registering again changed ids %v → %v", subj, ids, again[subj])
		}
		if r := cl.Compatibility(t.Context(), subj); r[0].Level != sr.CompatFullTransitive {
			t.Errorf("%s: level %v, want FULL_TRANSITIVE", subj, r[0].Level)
		}
	}
	// Every RuntimeEvent subject shares the same ids; Intent has its own.
	if first[ctlSubj][schemas.V2] == first[intentSubj][schemas.V2] {
		t.Errorf("intent and runtime_event share id %d", first[ctlSubj][schemas.V2])
	}
	if ss, err := cl.SchemaByVersion(t.Context(), ctlSubj, -1); err != nil || ss.Version != 2 {
		t.Errorf("latest %s = %+v, %v; want version 2", ctlSubj, ss, err)
	}
}

// Register Spine's contracts for every thread topic with Spine's own
// registry (any Confluent-compatible registry works the same way).
func ExampleRegisterContracts() {
	broker := pipeline.NewEmbedded(pipeline.EmbeddedConfig{})
	if err := broker.Start(); err != nil {
		panic(err)
	}
	defer broker.Close()
	reg, _ := registry.New(registry.WithKafka(kgo.SeedBrokers(broker.Addrs()...)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-reg.Ready()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	cl, _ := sr.NewClient(sr.URLs(srv.URL))
	layout := pipeline.Layout{Partitions: 1}
	ids, err := schemas.RegisterContracts(ctx, cl, layout.ContractSubjects())
	if err != nil {
		panic(err)
	}
	fmt.Println(len(ids), ids["spine.intents-value"][schemas.V1], ids["spine.intents-value"][schemas.V2])
	// Output: 9 3 4
}
