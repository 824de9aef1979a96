package openai_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/adapters/openai"
)

// A call made under a span (the dataplane's executor.call, when tracing is
// on) sends that span as the W3C traceparent header, so the model server's
// trace joins the run's; a call under none sends no traceparent.
func TestTraceparentSent(t *testing.T) {
	t.Parallel()
	base, seen := newServer(t, completion("ok", "stop", 1, 1))
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"under a span", traced, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"under none", t.Context(), ""},
	} {
		if _, err := e.Execute(tc.ctx, req("hi")); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := <-seen
		if tp := got.Header.Get("traceparent"); tp != tc.want {
			t.Errorf("%s: traceparent %q, want %q", tc.name, tp, tc.want)
		}
	}
}
