package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/internal/spinetest"
)

// instance is one in-process sink with its own metrics.
type instance struct {
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (r *rig) startInstance(t *testing.T) *instance {
	t.Helper()
	in := &instance{reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	s, err := postgres.New(postgres.SinkConfig{Config: r.cfg.Postgres, Kafka: r.kopts, Layout: r.layout, Codec: r.codec,
		SessionTimeout: 6 * time.Second, RetryBackoff: 200 * time.Millisecond, Logger: testLog(), Registerer: in.reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- s.Run(ctx) }()
	t.Cleanup(func() { in.stop(t) })
	return in
}

func (in *instance) stop(t *testing.T) {
	in.cancel()
	select {
	case err, ok := <-in.done:
		if ok && err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sink: %v", err)
		}
		if ok {
			close(in.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("sink did not stop within 30s")
	}
}

func (in *instance) metric(t *testing.T, name string, labels ...string) float64 {
	return spinetest.MetricValue(t, in.reg, name, labels...)
}

// Two sink instances share the partitions; instances join and leave while
// intents arrive (each join and leave a rebalance), and the database still
// equals the thread: nothing lost, nothing doubled. Both instances wrote.
func TestSinkRebalanceTwoInstances(t *testing.T) {
	t.Parallel()
	n := envInt("PG_REBALANCE_INTENTS", 1200)
	r := newRig(t, nil, map[string]string{"SPINE_PG_BATCH_RECORDS": "100"})
	r.startThread()
	conn := r.db()
	events := func() int64 {
		got, _ := count(conn, "SELECT count(*) FROM events")
		return got
	}
	progress := func(what string) {
		before := events()
		spinetest.Eventually(t, 90*time.Second, spinetest.Holds(what, func() bool { return events() > before+200 }))
	}
	a := r.startInstance(t)
	outs := intents("rb", n)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for i := 0; i < n; i += 20 {
			r.produce(outs[i:min(i+20, n)])
			time.Sleep(50 * time.Millisecond)
		}
	}()
	progress("instance a writing")
	b := r.startInstance(t) // a rebalance: a and b share
	progress("a and b writing")
	a.stop(t) // b takes every partition
	progress("b alone writing")
	a = r.startInstance(t) // and they share again
	progress("a and b writing again")
	<-prodDone
	r.waitRuns(t, conn, n, 3*time.Minute)
	checkEqualsThread(t, r, conn, n)
	for name, in := range map[string]*instance{"a (second run)": a, "b": b} {
		t.Logf("instance %s: %v events written, %v batches fenced, %v session restarts", name,
			in.metric(t, "spine_pgsink_rows_total", "events"), in.metric(t, "spine_pgsink_skipped_total", "fenced"),
			in.metric(t, "spine_pgsink_session_restarts_total"))
	}
	if b.metric(t, "spine_pgsink_rows_total", "events") == 0 {
		t.Error("instance b wrote nothing")
	}
}
