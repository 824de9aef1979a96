package main

import (
	"context"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/cmd/spine/stack"
)

// startTracing returns the tracer provider of the stack (nil when
// OTEL_EXPORTER_OTLP_ENDPOINT is unset) and a stop that flushes its spans,
// bounded by the shutdown timeout.
func startTracing(ctx context.Context, log *slog.Logger, cfg *stack.Config) (trace.TracerProvider, func(), error) {
	tp, err := stack.Tracing(ctx, cfg)
	if err != nil || tp == nil {
		return nil, func() {}, err
	}
	shown := cfg.Tracing.URL()
	if u, err := url.Parse(shown); err == nil {
		shown = u.Redacted() // no password in a log
	}
	log.Info("exporting traces over OTLP/HTTP", "url", shown)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout+time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("traces not all exported", "err", err)
		}
	}, nil
}
