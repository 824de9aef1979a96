package deploy_test

import (
	"context"
	"errors"
	"regexp"
	"sort"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// describingRegisterer records the name of every metric registered through
// it, including vectors with no series yet (a registry's Gather and a
// /metrics scrape leave those out until something is observed), and the
// _bucket/_sum/_count series a histogram exposes.
type describingRegisterer struct {
	inner prometheus.Registerer
	mu    sync.Mutex
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describingRegisterer) Register(c prometheus.Collector) error {
	hist := false
	switch c.(type) {
	case *prometheus.HistogramVec, prometheus.Histogram:
		hist = true
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	d.mu.Lock()
	defer d.mu.Unlock()
	for desc := range ch {
		m := fqName.FindStringSubmatch(desc.String())
		if m == nil {
			continue
		}
		d.names[m[1]] = true
		if hist {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				d.names[m[1]+s] = true
			}
		}
	}
	// An AlreadyRegisteredError goes back to the caller, which reuses the
	// collector already there (as pipeline does for shared metrics).
	return d.inner.Register(c)
}

func (d *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d *describingRegisterer) Unregister(c prometheus.Collector) bool { return d.inner.Unregister(c) }

// idleCodec lets a processor be constructed for its metrics; it is never
// run, so it never encodes or decodes.
type idleCodec struct{}

func (idleCodec) Decode(context.Context, pipeline.Topic, []byte) (any, schemas.ContractVersion, error) {
	return nil, 0, errors.New("idle codec")
}

func (idleCodec) Encode(context.Context, pipeline.Topic, schemas.ContractVersion, any) ([]byte, error) {
	return nil, errors.New("idle codec")
}

// spineMetrics returns every metric name Spine's binary exposes on /metrics:
// it registers Spine's collectors the way the binary does (Go and process
// collectors as in cmd/spine runUp, the golden-path observer, a processor's
// loop metrics, and kprom's client metrics under namespace spine_kafka with
// the processor label) on a describing registry. Constructors do no I/O, so
// nothing connects.
//
// It is the fast, engine-free check; a registered series is not always
// served (kprom registers its per-record and latency series but fills them
// only when enabled), so TestLiveMetrics runs the binary and checks the
// dashboards and rules against its /metrics. TestBriefMetrics pins the
// agreed names here.
func spineMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	d := &describingRegisterer{inner: reg, names: map[string]bool{}}
	d.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	gp, err := thread.NewGoldenPath(d, thread.GateNames...)
	if err != nil {
		t.Fatalf("golden path metrics: %v", err)
	}
	layout := pipeline.NewLayout(&pipeline.Config{Partitions: 1})
	for _, name := range []string{"orchestrator", "dataplane", "gates", "projections"} {
		_, err := pipeline.NewProcessor(name,
			pipeline.HandlerFunc(func(context.Context, []byte, pipeline.Input) (pipeline.Result, error) {
				return pipeline.Result{}, nil
			}),
			pipeline.WithKafka(kgo.SeedBrokers("127.0.0.1:1")),
			pipeline.WithLayout(layout),
			pipeline.WithInputs(layout.Intents()),
			pipeline.WithCodec(idleCodec{}),
			pipeline.WithInstanceID("metrics-test"),
			pipeline.WithObserver(pipeline.ObserveEvents(gp)),
			pipeline.WithRegisterer(d),
		)
		if err != nil {
			t.Fatalf("processor %s: %v", name, err)
		}
		// The loop attaches these kprom hooks to its client in Run.
		km := kprom.NewMetrics("spine_kafka", kprom.Registerer(d),
			kprom.WithStaticLabel(prometheus.Labels{"processor": name}))
		cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.WithHooks(km))
		if err != nil {
			t.Fatalf("kgo client: %v", err)
		}
		cl.Close()
	}
	return d.names
}

// The metric names the golden path and the processors agreed on (the
// thread's design): dashboards and alerts are built on these.
var briefMetrics = []string{
	"spine_golden_path_events_total",
	"spine_golden_path_latency_seconds_bucket",
	"spine_runs_total",
	"spine_run_duration_seconds_bucket",
	"spine_gate_checks_total",
	"spine_processor_records_total",
	"spine_processor_transactions_total",
	"spine_processor_transaction_seconds_bucket",
	"spine_dlq_records_total",
	"spine_kafka_produce_bytes_total",
	"spine_kafka_fetch_bytes_total",
}

func TestBriefMetrics(t *testing.T) {
	t.Parallel()
	names := spineMetrics(t)
	for _, m := range briefMetrics {
		if !names[m] {
			t.Errorf("Spine does not register %s", m)
		}
	}
	if t.Failed() {
		var all []string
		for n := range names {
			all = append(all, n)
		}
		sort.Strings(all)
		t.Logf("registered: %v", all)
	}
}
