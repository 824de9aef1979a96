package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/registry"
)

// Run a registry on an in-process broker and register a schema with
// franz-go's sr client.
func Example() {
	broker := pipeline.NewEmbedded(pipeline.EmbeddedConfig{})
	if err := broker.Start(); err != nil {
		panic(err)
	}
	defer broker.Close()

	reg, err := registry.New(registry.WithKafka(kgo.SeedBrokers(broker.Addrs()...)), registry.WithTopic("_schemas"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-reg.Ready()

	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	cl, _ := sr.NewClient(sr.URLs(srv.URL))
	id, err := cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`}, -1, -1)
	fmt.Println(id, err)

	// A new required field breaks BACKWARD compatibility: refused, naming it.
	_, err = cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}`}, -1, -1)
	var re *sr.ResponseError
	if errors.As(err, &re) {
		fmt.Println(re.ErrorCode)
	}
	// Output:
	// 1 <nil>
	// 409
}
