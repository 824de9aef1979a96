package pipeline

import (
	"context"
	crand "crypto/rand"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// eventHeaders are the headers of an event's record: its event type
// (HeaderEventType) and, when its ids are W3C ids, its traceparent
// (thread.HeaderTraceparent). Both values share one buffer.
func eventHeaders(ev *schemas.RuntimeEvent) []kgo.RecordHeader {
	if len(ev.EventType) > maxInlineEventType {
		buf := make([]byte, 0, len(ev.EventType)+thread.TraceparentLen)
		return appendEventHeaders(make([]kgo.RecordHeader, 0, 2), buf, ev)
	}
	// One allocation per record for both headers and their bytes: this
	// runs for every event the loop writes.
	h := new(inlineHeaders)
	return appendEventHeaders(h.hs[:0], h.buf[:0], ev)
}

// maxInlineEventType is the longest event type whose headers fit one
// inlineHeaders (every event type of the thread does).
const maxInlineEventType = 64

type inlineHeaders struct {
	hs  [2]kgo.RecordHeader
	buf [maxInlineEventType + thread.TraceparentLen]byte
}

// appendEventHeaders appends ev's headers to hs, their bytes to buf (which
// has room for them).
func appendEventHeaders(hs []kgo.RecordHeader, buf []byte, ev *schemas.RuntimeEvent) []kgo.RecordHeader {
	buf = append(buf, ev.EventType...)
	typ := buf[:len(ev.EventType):len(ev.EventType)]
	hs = append(hs, kgo.RecordHeader{Key: HeaderEventType, Value: typ})
	if buf, ok := thread.AppendTraceparent(buf, ev.TraceID, ev.SpanID); ok {
		hs = append(hs, kgo.RecordHeader{Key: thread.HeaderTraceparent, Value: buf[len(typ):]})
	}
	return hs
}

// recordHeaders are the headers the loop and the Producer give an
// output's record: an event's (eventHeaders); an intent's traceparent,
// naming its run's root span (thread.RunSpanID).
func recordHeaders(v any) []kgo.RecordHeader {
	switch v := v.(type) {
	case *schemas.RuntimeEvent:
		return eventHeaders(v)
	case *schemas.Intent:
		if tp, ok := thread.AppendTraceparent(nil, v.TraceID, thread.RunSpanID(v.TraceID)); ok {
			return []kgo.RecordHeader{{Key: thread.HeaderTraceparent, Value: tp}}
		}
	}
	return nil
}

// Traceparent returns the traceparent the loop writes on the record of an
// event with trace and span ("" when they are not W3C ids): for a record
// such as an artifact's, written beside its event.
func Traceparent(trace, span string) []byte {
	tp, _ := thread.AppendTraceparent(nil, trace, span)
	return tp
}

// TraceHops returns the Observer that records, after each commit, one
// OpenTelemetry span per committed event: named for its event type, with
// the event's span_id as span id, its parent_span_id as parent and the
// run's trace_id as trace id (so the spans of a run are the trace its
// records' traceparent headers name), from the event's timestamp to the
// commit that made it visible. tracer must come from NewTracerProvider (or a
// provider with ThreadIDs as its IDGenerator): other generators give the
// spans ids of their own. Events whose ids are not W3C ids get no span.
//
// Only a stack with tracing configured adds it: without it the loop does
// no tracing work at all. A span the sampler drops costs no attributes;
// sample per trace id (OTEL_TRACES_SAMPLER=traceidratio) so a run's spans
// are kept or dropped together: each hop's parent is a remote span marked
// sampled, which a parentbased_* sampler follows.
func TraceHops(tracer trace.Tracer, processor string) Observer {
	proc := attribute.String("spine.processor", processor)
	return ObserverFunc(func(outputs []Output) {
		now := time.Now()
		for _, o := range outputs {
			ev, ok := o.Value.(*schemas.RuntimeEvent)
			if !ok || ev == nil {
				continue
			}
			ctx, ok := EventContext(context.Background(), ev.TraceID, ev.ParentSpanID)
			if !ok {
				continue
			}
			sid, err := trace.SpanIDFromHex(ev.SpanID)
			if err != nil {
				continue
			}
			ctx = context.WithValue(ctx, spanIDKey{}, sid)
			start := ev.Timestamp
			if start.IsZero() || start.After(now) {
				start = now
			}
			_, span := tracer.Start(ctx, string(ev.EventType), trace.WithTimestamp(start))
			if !span.IsRecording() { // sampled out (OTEL_TRACES_SAMPLER)
				continue
			}
			span.SetAttributes(
				proc,
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", string(o.Topic)),
				attribute.String("spine.event_id", ev.EventID),
				attribute.String("spine.event_type", string(ev.EventType)),
				attribute.String("spine.phase", string(ev.Phase)),
				attribute.String("spine.state", ev.State),
				attribute.String("spine.intent", ev.Intent),
				attribute.String("spine.actor", ev.Actor),
				attribute.Int("spine.attempt", int(ev.Attempt)),
				attribute.Int("spine.contract_version", int(o.Version)),
			)
			if ev.Route != "" {
				span.SetAttributes(attribute.String("spine.route", ev.Route))
			}
			if ev.ArtifactID != "" {
				span.SetAttributes(attribute.String("spine.artifact_id", ev.ArtifactID))
			}
			if g := ev.Gate; g != nil {
				span.SetAttributes(attribute.String("spine.gate", g.Name), attribute.Bool("spine.gate.passed", g.Passed))
				if g.Reason != "" {
					span.SetAttributes(attribute.String("spine.gate.reason", g.Reason))
				}
			}
			switch {
			case ev.Error != nil:
				span.SetStatus(codes.Error, *ev.Error)
			case ev.Gate != nil && !ev.Gate.Passed:
				span.SetStatus(codes.Error, ev.Gate.Name+": "+ev.Gate.Reason)
			}
			span.End(trace.WithTimestamp(now))
		}
	})
}

// EventContext returns ctx carrying, as its remote parent, the span of the
// run trace named parentSpan (a new root span when parentSpan is empty):
// what a span started from it joins. It reports false when trace, or a
// parentSpan given, is not a W3C id.
func EventContext(ctx context.Context, traceID, parentSpan string) (context.Context, bool) {
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		return ctx, false
	}
	if parentSpan == "" {
		return context.WithValue(ctx, traceIDKey{}, tid), true
	}
	psid, err := trace.SpanIDFromHex(parentSpan)
	if err != nil {
		return ctx, false
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: psid, TraceFlags: trace.FlagsSampled, Remote: true,
	})), true
}

type (
	traceIDKey struct{}
	spanIDKey  struct{}
)

// ThreadIDs returns the IDGenerator that gives a span the ids its context
// names (TraceHops: the event's own span_id, and for a run's root span its
// trace_id) and random ids otherwise (an executor call's span).
func ThreadIDs() sdktrace.IDGenerator { return threadIDs{} }

type threadIDs struct{}

func (threadIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID)
	if !ok {
		_, _ = crand.Read(tid[:])
	}
	return tid, threadIDs{}.NewSpanID(ctx, tid)
}

func (threadIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if sid, ok := ctx.Value(spanIDKey{}).(trace.SpanID); ok {
		return sid
	}
	var sid trace.SpanID
	for !sid.IsValid() {
		_, _ = crand.Read(sid[:])
	}
	return sid
}

// NewTracerProvider returns an OpenTelemetry SDK tracer provider with opts
// and ThreadIDs, so the spans TraceHops records carry the thread's ids.
func NewTracerProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append(opts, sdktrace.WithIDGenerator(ThreadIDs()))...)
}
