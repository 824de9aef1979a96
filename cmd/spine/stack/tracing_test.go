package stack_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Without OTEL_EXPORTER_OTLP_ENDPOINT there is no tracer; with it, the
// spans of committed events reach an OTLP/HTTP collector (a real
// protobuf endpoint here) with the run's trace id and the event's span id,
// under OTEL_SERVICE_NAME. Another protocol is refused naming the variable.
func TestTracingExportsOverOTLP(t *testing.T) {
	t.Parallel()
	got := make(chan *coltrace.ExportTraceServiceRequest, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
			return
		}
		got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	load := func(env map[string]string) (*stack.Config, error) {
		return stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(env))
	}
	off, err := load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if tp, err := stack.Tracing(t.Context(), off); tp != nil || err != nil {
		t.Fatalf("no endpoint: tracer %v, err %v; want none", tp, err)
	}
	if _, err := load(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Errorf("grpc: %v, want an error naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}

	cfg, err := load(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": "spine-test"})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := stack.Tracing(t.Context(), cfg)
	if err != nil || tp == nil {
		t.Fatalf("tracer %v, err %v", tp, err)
	}
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	ev := &schemas.RuntimeEvent{TraceID: trace, SpanID: thread.RunSpanID(trace), EventType: thread.IntentReceived, Timestamp: time.Now()}
	pipeline.TraceHops(tp.Tracer(stack.TracerName), "orchestrator").Committed([]pipeline.Output{{Topic: "spine.control", Value: ev}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		rs := req.GetResourceSpans()
		if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
			t.Fatalf("export %v: want one span", req)
		}
		sp := rs[0].GetScopeSpans()[0].GetSpans()[0]
		if hex.EncodeToString(sp.GetTraceId()) != trace || hex.EncodeToString(sp.GetSpanId()) != ev.SpanID || sp.GetName() != "intent.received" {
			t.Errorf("span %s trace %x span %x, want intent.received %s %s", sp.GetName(), sp.GetTraceId(), sp.GetSpanId(), trace, ev.SpanID)
		}
		var service string
		for _, kv := range rs[0].GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		if service != "spine-test" {
			t.Errorf("service.name %q, want spine-test", service)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OTLP export reached the collector")
	}
}
