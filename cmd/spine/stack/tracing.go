package stack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/spinerun/spine/pipeline"
)

// TracerName is the instrumentation scope of Spine's spans.
const TracerName = "github.com/spinerun/spine"

// TracingConfig is OpenTelemetry tracing, under the variable names every
// OpenTelemetry SDK reads. With neither endpoint set there is no tracer at
// all: the thread processors do no tracing work (every record still carries
// its traceparent header).
type TracingConfig struct {
	// Endpoint is the OTLP collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT,
	// for example http://localhost:4318; spans go to its /v1/traces).
	// Default none: no export.
	Endpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// TracesEndpoint is the full URL of the traces endpoint
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it wins over Endpoint. Default none.
	TracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	// Protocol is OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf (the
	// default) is built in.
	Protocol string `env:"OTEL_EXPORTER_OTLP_PROTOCOL, default=http/protobuf"`
}

// URL is where spans go: TracesEndpoint as it is, else Endpoint's
// /v1/traces (as every OpenTelemetry SDK reads the two).
func (c TracingConfig) URL() string {
	if c.TracesEndpoint != "" {
		return c.TracesEndpoint
	}
	return strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
}

// Enabled reports whether spans are exported.
func (c TracingConfig) Enabled() bool { return c.Endpoint != "" || c.TracesEndpoint != "" }

// Validate reports a protocol Spine does not speak.
func (c TracingConfig) Validate() []error {
	if c.Enabled() && c.Protocol != "http/protobuf" {
		return []error{fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is built in (point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port, usually 4318)", c.Protocol)}
	}
	return nil
}

// Tracing returns the tracer provider that exports the thread's spans over
// OTLP/HTTP, and nil when no endpoint is configured. The exporter reads the
// other OTEL_EXPORTER_OTLP_* variables itself (headers, timeout, TLS).
// It does no I/O: spans are sent in batches once there are some. Shut it
// down to flush them.
func Tracing(ctx context.Context, cfg *Config) (*sdktrace.TracerProvider, error) {
	if !cfg.Tracing.Enabled() {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Tracing.URL()))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, errors.Join(err, exp.Shutdown(ctx))
	}
	return pipeline.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
	), nil
}
