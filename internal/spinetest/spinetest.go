// Package spinetest holds the helpers every package's tests share: running
// a long-lived part until the test stops it, polling a condition with a
// deadline (never a bare sleep), and reading a metric back from a
// Prometheus registry. It is imported by tests only.
package spinetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StopTimeout bounds how long a stopped part may take to return.
const StopTimeout = 30 * time.Second

// Start runs fn (a part's Run) in a goroutine until the returned stop is
// called or the test ends. stop cancels fn's context and waits for it to
// return, at most StopTimeout; an error it returns, or a part that does
// not stop, fails the test naming the part. stop is idempotent.
func Start(tb testing.TB, name string, fn func(context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					tb.Errorf("%s: %v", name, err)
				}
			case <-time.After(StopTimeout):
				tb.Errorf("%s did not stop within %s", name, StopTimeout)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// pollEvery is how often Eventually checks.
const pollEvery = 20 * time.Millisecond

// Eventually polls check until it returns nil, failing the test with its
// last error when within passes first (or the test's context ends).
func Eventually(tb testing.TB, within time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", within, err)
		}
		select {
		case <-tb.Context().Done():
			tb.Fatalf("test ended while waiting: %v", err)
		case <-time.After(pollEvery):
		}
	}
}

// Holds adapts a condition to Eventually: its error says what was awaited.
func Holds(what string, cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	}
}

// MetricValue sums the counter and gauge series of name on g whose label
// values include every one of labels.
func MetricValue(tb testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			vals := map[string]bool{}
			for _, lp := range m.GetLabel() {
				vals[lp.GetValue()] = true
			}
			for _, l := range labels {
				if !vals[l] {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// HistogramCount sums the sample counts of the histogram series of name.
func HistogramCount(tb testing.TB, g prometheus.Gatherer, name string) uint64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// SeriesCount counts the series of name.
func SeriesCount(tb testing.TB, g prometheus.Gatherer, name string) int {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
