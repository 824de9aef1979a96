package projections

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

// TestStoreWaitsForKafka: a view started while no broker answers (a broker
// restarting, leaders being elected) keeps trying, not ready, instead of
// ending its process; once the broker is up it reads the topics and is
// ready.
func TestStoreWaitsForKafka(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	addr := lis.Addr().String()
	lis.Close() // nothing answers there until the broker starts

	l := pipeline.Layout{Prefix: "wait.", Partitions: 2}
	s, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// Longer than the bounded retries of one listing (10 of them, 4.5 s).
	select {
	case <-done:
		t.Fatalf("the view ended while Kafka was down: %v", runErr)
	case <-time.After(6 * time.Second):
	}
	if s.Status().Ready {
		t.Fatal("ready with no broker")
	}

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(cl), l, -1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); !s.Status().Ready; time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("the view ended: %v", runErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready 90s after the broker came up")
		}
	}
}
