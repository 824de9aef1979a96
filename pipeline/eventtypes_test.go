package pipeline_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
)

// typedEmitter answers every input it is handed with a RuntimeEvent named
// after the input's id, and remembers the ids.
type typedEmitter struct {
	out pipeline.Topic
	mu  sync.Mutex
	ids []string
}

func (h *typedEmitter) Handle(_ context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	m := in.Value.(*msg)
	h.mu.Lock()
	h.ids = append(h.ids, m.ID)
	h.mu.Unlock()
	return pipeline.Result{Outputs: []pipeline.Output{{Topic: h.out, Key: in.Key,
		Value: &schemas.RuntimeEvent{EventID: m.ID, TraceID: m.ID, SchemaVersion: schemas.V1, EventType: schemas.EventType("seen." + m.ID)}}}}, nil
}

// TestLoopEventTypes: with WithEventTypes the handler gets the records
// whose event-type header is wanted and those without the header; records
// of other types are committed undecoded (a garbage value is not
// dead-lettered) and counted as skipped. Every RuntimeEvent the loop
// produces carries its type in the header.
func TestLoopEventTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	out := e.layout.Control()
	reg := prometheus.NewRegistry()
	h := &typedEmitter{out: out}
	e.start(t, "dataplane", h, pipeline.WithEventTypes("run.dispatch"), pipeline.WithRegisterer(reg))

	typed := func(id, typ string, value []byte) *kgo.Record {
		r := &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte(id), Value: value}
		if typ != "" {
			r.Headers = []kgo.RecordHeader{{Key: pipeline.HeaderEventType, Value: []byte(typ)}}
		}
		return r
	}
	js := func(id string) []byte { b, _ := json.Marshal(msg{ID: id}); return b }
	cl := kafkatest.Client(t, e.brokers)
	if err := cl.ProduceSync(t.Context(),
		typed("wanted", "run.dispatch", js("wanted")),
		typed("other", "run.routed", []byte("{not json: never decoded")),
		typed("untyped", "", js("untyped")),
		typed("other-empty", "run.completed", nil),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	got := e.readAll(t, out, 2, 500*time.Millisecond, true)
	if len(got) != 2 {
		t.Fatalf("%d outputs, want 2 (wanted and untyped)", len(got))
	}
	for _, r := range got {
		var ev schemas.RuntimeEvent
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		var header string
		for _, hd := range r.Headers {
			if hd.Key == pipeline.HeaderEventType {
				header = string(hd.Value)
			}
		}
		if header != string(ev.EventType) || (ev.TraceID != "wanted" && ev.TraceID != "untyped") {
			t.Errorf("output %s: %s header %q, event type %q", r.Key, pipeline.HeaderEventType, header, ev.EventType)
		}
	}
	waitFor(t, 30*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_processor_records_total", "dataplane", "skipped") == 2 &&
			spinetest.MetricValue(t, reg, "spine_processor_records_total", "dataplane", "ok") == 2
	}, "2 records skipped and 2 handled")
	if n := spinetest.MetricValue(t, reg, "spine_processor_records_total", "dataplane", "dlq"); n != 0 {
		t.Fatalf("%v records dead-lettered, want 0", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ids) != 2 {
		t.Fatalf("handler saw %v, want wanted and untyped", h.ids)
	}
}

// TestLoopSkippedNeedNoTransaction: batches of records that are all passed
// over by type open no transaction each; their offsets are committed by the
// next transaction, within about a second even when nothing else comes.
func TestLoopSkippedNeedNoTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	reg := prometheus.NewRegistry()
	h := &typedEmitter{out: e.layout.Control()}
	e.start(t, "dataplane", h, pipeline.WithEventTypes("run.dispatch"), pipeline.WithRegisterer(reg))

	cl := kafkatest.Client(t, e.brokers)
	const n = 20
	for range n {
		r := &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte("k"), Value: []byte("never decoded"),
			Headers: []kgo.RecordHeader{{Key: pipeline.HeaderEventType, Value: []byte("run.completed")}}}
		if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // one poll each, mostly
	}
	end := int64(n)
	adm := kadm.NewClient(cl)
	group := e.layout.Group("dataplane")
	waitFor(t, 30*time.Second, func() bool {
		offs, err := adm.FetchOffsets(t.Context(), group)
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(string(e.layout.Intents()), 0)
		return ok && o.At >= end
	}, "the skipped records' offsets committed")
	skipped := spinetest.MetricValue(t, reg, "spine_processor_records_total", "dataplane", "skipped")
	txns := spinetest.MetricValue(t, reg, "spine_processor_transactions_total", "dataplane")
	if skipped < n {
		t.Fatalf("%v records counted as skipped, want at least %d", skipped, n)
	}
	// 20 records over ~0.4s (longer on a loaded machine) plus the commit
	// delay: about one transaction per second of it, not one per poll
	// (without deferral: 20).
	if txns > n/2 {
		t.Fatalf("%v transactions for %d skipped records, want at most %d", txns, n, n/2)
	}
	t.Logf("%d skipped records: %v transactions", n, txns)

	// A wanted record after them is handled and commits everything.
	b, _ := json.Marshal(msg{ID: "wanted"})
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte("k"), Value: b,
		Headers: []kgo.RecordHeader{{Key: pipeline.HeaderEventType, Value: []byte("run.dispatch")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.readAll(t, e.layout.Control(), 1, 0, true); len(got) != 1 {
		t.Fatalf("%d outputs, want 1", len(got))
	}
}
