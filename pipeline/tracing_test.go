package pipeline_test

import (
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// runEvents is a run's chain of three events, each the parent of the next.
func runEvents(trace string) []pipeline.Output {
	var outs []pipeline.Output
	parent := ""
	for i, typ := range []schemas.EventType{thread.IntentReceived, thread.RunDispatch, thread.RunCompleted} {
		span := thread.SpanID(trace, "o", thread.Step(uint32(i)))
		outs = append(outs, pipeline.Output{Topic: "spine.control", Value: &schemas.RuntimeEvent{
			TraceID: trace, SpanID: span, ParentSpanID: parent, EventType: typ, Timestamp: time.Now(),
		}})
		parent = span
	}
	return outs
}

// TraceHops records each committed event as a span with the event's own
// ids; sampled per trace id, a run's spans are kept or dropped together;
// events whose ids are not W3C ids get none.
func TestTraceHops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{"all", sdktrace.AlwaysSample()},
		{"half the traces", sdktrace.TraceIDRatioBased(0.5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exp := tracetest.NewInMemoryExporter()
			tp := pipeline.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(tc.sampler))
			hops := pipeline.TraceHops(tp.Tracer("test"), "orchestrator")
			const runs = 200
			want := map[string]string{} // span id → parent span id
			for i := range runs {
				trace := thread.ID(fmt.Sprint("run", i))
				outs := runEvents(trace)
				for _, o := range outs {
					ev := o.Value.(*schemas.RuntimeEvent)
					want[ev.SpanID] = ev.ParentSpanID
				}
				hops.Committed(outs)
			}
			hops.Committed([]pipeline.Output{{Value: &schemas.RuntimeEvent{TraceID: "not-hex", SpanID: "x", EventType: thread.IntentReceived}}})
			perTrace := map[string]int{}
			for _, sp := range exp.GetSpans() {
				id := sp.SpanContext.SpanID().String()
				parent, ok := want[id]
				switch {
				case !ok:
					t.Fatalf("span %s %s is no event's", sp.Name, id)
				case parent == "" && sp.Parent.IsValid(), parent != "" && sp.Parent.SpanID().String() != parent:
					t.Errorf("span %s: parent %s, want %q", sp.Name, sp.Parent.SpanID(), parent)
				}
				perTrace[sp.SpanContext.TraceID().String()]++
			}
			for trace, n := range perTrace {
				if n != 3 {
					t.Errorf("trace %s has %d of its 3 spans", trace, n)
				}
			}
			if tc.name == "all" && len(perTrace) != runs || len(perTrace) == 0 || len(perTrace) == runs && tc.name != "all" {
				t.Errorf("%d of %d traces kept", len(perTrace), runs)
			}
		})
	}
}
