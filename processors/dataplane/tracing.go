package dataplane

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/pipeline"
)

// startCall starts the executor.call span of req, a child of its
// run.dispatch span in the run's trace, and returns ctx carrying it. A run
// whose ids are not W3C ids gets a span in a trace of its own.
func (d *Dataplane) startCall(ctx context.Context, req Request) (context.Context, trace.Span) {
	pctx, _ := pipeline.EventContext(ctx, req.TraceID, req.DispatchSpan)
	attrs := []attribute.KeyValue{
		attribute.String("spine.processor", Name),
		attribute.String("spine.intent", req.Kind),
		attribute.String("spine.route", req.Route),
		attribute.Int("spine.attempt", int(req.Attempt)),
		attribute.Int("spine.contract_version", int(req.Version)),
		attribute.String("spine.idempotency_key", req.IdempotencyKey),
		attribute.Int("spine.input_bytes", len(req.Input)),
	}
	if n, ok := d.exec.(interface{ Name() string }); ok {
		attrs = append(attrs, attribute.String("spine.executor", n.Name()))
	}
	return d.tracer.Start(pctx, "executor.call", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endCall ends an executor.call span with the call's outcome: its error
// kind and text, or the artifact's size and usage.
func endCall(span trace.Span, res Result, err error) {
	switch {
	case err == nil:
		span.SetAttributes(attribute.Int("spine.artifact_bytes", len(res.Content)), attribute.String("spine.content_type", res.ContentType))
		if u := res.Usage; u != nil {
			span.SetAttributes(attribute.Int64("spine.usage.input_tokens", u.InputTokens), attribute.Int64("spine.usage.output_tokens", u.OutputTokens))
		}
	case errors.Is(err, ErrNoAnswer):
		span.SetStatus(codes.Error, "no answer")
	default:
		kind, retryable, _ := Classify(err)
		span.SetAttributes(attribute.String("spine.error_kind", string(kind)), attribute.Bool("spine.retryable", retryable))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
