package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// flagsEnv creates the layout's topics on a test broker.
func flagsEnv(t *testing.T) ([]string, pipeline.Layout) { return kafkatest.Layout(t, 1) }

func TestLeaderElectsOneAndFailsOver(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	type member struct {
		l      *pipeline.Leader
		cancel context.CancelFunc
		done   chan error
	}
	start := func() *member {
		m := &member{l: pipeline.NewLeader(opts, l, "canary-analyzer", nil), done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(t.Context())
		m.cancel = cancel
		go func() { m.done <- m.l.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-m.done })
		return m
	}
	a, b := start(), start()
	leaders := func() int {
		n := 0
		for _, m := range []*member{a, b} {
			if m.l.Leading() {
				n++
			}
		}
		return n
	}
	spinetest.Eventually(t, 20*time.Second, spinetest.Holds("one leader", func() bool { return leaders() == 1 }))
	lead, other := a, b
	if b.l.Leading() {
		lead, other = b, a
	}
	lead.cancel()
	if err := <-lead.done; err != nil {
		t.Fatal(err)
	}
	lead.done <- nil // for Cleanup
	if lead.l.Leading() {
		t.Fatal("a stopped leader still leads")
	}
	spinetest.Eventually(t, 20*time.Second, spinetest.Holds("the other takes over", other.l.Leading))
}
