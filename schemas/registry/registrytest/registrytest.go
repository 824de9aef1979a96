// Package registrytest runs Spine's schema registry inside a test, on
// whatever Kafka the test uses (see pipeline/kafkatest).
package registrytest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas/registry"
)

// Start builds a registry with opts, runs it until the test ends and waits
// until it has replayed its topic. The cleanup stops it and reports a Run
// error, or a stop that takes longer than 20s.
func Start(tb testing.TB, opts ...registry.Opt) *registry.Registry {
	tb.Helper()
	reg, err := registry.New(opts...)
	if err != nil {
		tb.Fatalf("registry: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("registry Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Error("registry did not stop within 20s")
		}
	})
	select {
	case <-reg.Ready():
	case err := <-done:
		tb.Fatalf("registry stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		tb.Fatal("registry not ready within 60s")
	}
	return reg
}

// Serve is Start with the registry served over HTTP until the test ends;
// it returns the registry and its URL (what a child process or an sr
// client is given).
func Serve(tb testing.TB, opts ...registry.Opt) (*registry.Registry, string) {
	tb.Helper()
	reg := Start(tb, opts...)
	srv := httptest.NewServer(reg.Handler())
	tb.Cleanup(srv.Close)
	return reg, srv.URL
}
