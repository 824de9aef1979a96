package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// One run through the stack `spine up` builds, traced with the SDK's
// in-memory exporter, is one trace: its trace id is the run's trace_id,
// each hop of the golden path is a span (the event's own span_id, its
// parent_span_id as parent) in the order of the path, the executor call
// is a span under the dispatch, and every record of the run carries the
// traceparent of its event.
func TestOneRunIsOneTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	s := newStack(t, nil, nil)
	exp := tracetest.NewInMemoryExporter()
	tp := pipeline.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s.tracer = tp
	s.startAll(nil)

	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	outs := intents("otel", 1)
	it := outs[0].Value.(*schemas.Intent)
	it.TraceID, it.IntentID = trace, "i-"+trace
	outs[0].Key = []byte(trace)
	s.produce(t.Context(), outs)

	done := func() bool {
		return slices.ContainsFunc(exp.GetSpans(), func(sp tracetest.SpanStub) bool { return sp.Name == string(thread.RunCompleted) })
	}
	waitFor(t, 60*time.Second, done, func() string { return fmt.Sprintf("run.completed span (have %d spans)", len(exp.GetSpans())) })

	spans := exp.GetSpans()
	byID := map[string]tracetest.SpanStub{}
	for _, sp := range spans {
		if got := sp.SpanContext.TraceID().String(); got != trace {
			t.Errorf("span %s has trace id %s, want the run's %s", sp.Name, got, trace)
		}
		byID[sp.SpanContext.SpanID().String()] = sp
	}
	var root []string
	for _, sp := range spans {
		if !sp.Parent.IsValid() {
			root = append(root, sp.Name)
			continue
		}
		if _, ok := byID[sp.Parent.SpanID().String()]; !ok {
			t.Errorf("span %s has parent %s, which is no span of the trace", sp.Name, sp.Parent.SpanID())
		}
	}
	if len(root) != 1 || root[0] != string(thread.IntentReceived) {
		t.Errorf("root spans %v, want one: intent.received", root)
	}
	if r, ok := byID[thread.RunSpanID(trace)]; !ok || r.Name != string(thread.IntentReceived) {
		t.Errorf("the root span is not intent.received with span id thread.RunSpanID (%s)", thread.RunSpanID(trace))
	}

	// The hops, in the order the path takes them (by start; a span ends
	// when its transaction commits).
	slices.SortStableFunc(spans, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Name)
	}
	path := []string{string(thread.IntentReceived), string(thread.RunDispatch), string(thread.DataplaneDispatched),
		"executor.call", string(thread.ArtifactDelivered), string(thread.GatePassed), string(thread.RunCompleted)}
	at := 0
	for _, n := range names {
		if at < len(path) && n == path[at] {
			at++
		}
	}
	if at != len(path) {
		t.Errorf("spans in start order %v: want the hops %v in that order (missing from %s)", names, path, path[at])
	}
	for _, sp := range spans {
		if sp.EndTime.Before(sp.StartTime) {
			t.Errorf("span %s ends before it starts", sp.Name)
		}
		if sp.Name == "executor.call" {
			if p, ok := byID[sp.Parent.SpanID().String()]; !ok || p.Name != string(thread.RunDispatch) {
				t.Errorf("executor.call's parent is %q, want run.dispatch", p.Name)
			}
		}
	}

	// Every record of the run carries the traceparent of its event.
	var topics []string
	for _, tp := range append(s.layout.ThreadTopics(), s.layout.Artifacts()) {
		topics = append(topics, string(tp))
	}
	cl := kafkatest.Client(t, s.brokers, kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	wants := []string{"intent", "artifact", string(thread.IntentReceived), string(thread.ArtifactDelivered), string(thread.RunCompleted)}
	// Until every kind of record wanted is read: the topics' partitions
	// are fetched in no particular order.
	for ctx.Err() == nil && slices.ContainsFunc(wants, func(w string) bool { return seen[w] == 0 }) {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			tp := header(r, thread.HeaderTraceparent)
			if r.Topic == string(s.layout.Artifacts()) {
				if header(r, thread.HeaderTraceID) == trace {
					seen["artifact"]++
					if !strings.HasPrefix(tp, "00-"+trace+"-") {
						t.Errorf("artifact record traceparent %q", tp)
					}
				}
				return
			}
			if string(r.Key) != trace {
				return
			}
			v, _, err := s.codec.Decode(ctx, pipeline.Topic(r.Topic), r.Value)
			if err != nil {
				t.Fatalf("%s@%d: %v", r.Topic, r.Offset, err)
			}
			span := thread.RunSpanID(trace)
			name := "intent"
			if ev, ok := v.(*schemas.RuntimeEvent); ok {
				span, name = ev.SpanID, string(ev.EventType)
			}
			seen[name]++
			if want := "00-" + trace + "-" + span + "-01"; tp != want {
				t.Errorf("%s record on %s: traceparent %q, want %q", name, r.Topic, tp, want)
			}
		})
	}
	t.Logf("spans in start order: %v; records: %v", names, seen)
	for _, want := range wants {
		if seen[want] == 0 {
			t.Errorf("no %s record of the run read back (read %v)", want, seen)
		}
	}
}

// header returns r's header key, or "".
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
