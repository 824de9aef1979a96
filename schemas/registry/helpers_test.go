package registry_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas/registry"
)

// instance is one running registry served over a loopback HTTP server.
type instance struct {
	reg *registry.Registry
	url string
	sr  *sr.Client
}

// backend is a Kafka cluster and a topic for one test's registries.
type backend struct {
	brokers []string
	prefix  string
}

func newBackend(t *testing.T) backend {
	t.Helper()
	return backend{brokers: kafkatest.Brokers(t), prefix: kafkatest.Prefix(t)}
}

// start runs a registry on the backend's topic until the test ends.
func (b backend) start(t *testing.T, opts ...registry.Opt) *instance {
	t.Helper()
	opts = append([]registry.Opt{
		registry.WithKafka(kgo.SeedBrokers(b.brokers...)),
		registry.WithTopic(b.prefix + "_schemas"),
		registry.WithTransactionalID(b.prefix + "schema-registry"),
	}, opts...)
	r, err := registry.New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = r.Run(ctx); close(done) }()
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		select {
		case <-done:
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return within 20s of cancel")
		}
	})
	select {
	case <-r.Ready():
	case <-done:
		t.Fatalf("Run ended before ready: %v", runErr)
	case <-time.After(30 * time.Second):
		t.Fatalf("registry not ready after 30s")
	}
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return &instance{reg: r, url: srv.URL, sr: cl}
}
