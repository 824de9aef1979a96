package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Leader elects one process among every process that runs a Leader with
// the same name on the same layout: the member of the consumer group
// Layout.Group(name) that is assigned the one partition of the flag topic
// leads. When it stops or dies the group reassigns the partition and
// another member leads (on a crash, after the session timeout, 10 s). The
// canary analyzer runs under one, so that several `spine up` processes on
// one cluster take one decision per interval, not several. A Leader is
// safe for concurrent use.
type Leader struct {
	kopts   []kgo.Opt
	group   string
	topic   Topic
	log     *slog.Logger
	leading atomic.Bool
}

// NewLeader returns a Leader for name; it does no I/O.
func NewLeader(kopts []kgo.Opt, layout Layout, name string, log *slog.Logger) *Leader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Leader{kopts: kopts, group: layout.Group(name), topic: layout.Flags(), log: log.With("component", "leader", "group", layout.Group(name))}
}

// Leading reports whether this process leads now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Run takes part in the election until ctx ends; it returns nil then, after
// leaving the group so another member takes over at once.
func (l *Leader) Run(ctx context.Context) error {
	set := func(parts map[string][]int32, v bool) {
		if slices.Contains(parts[string(l.topic)], 0) && l.leading.Swap(v) != v {
			l.log.Info("leadership changed", "leading", v)
		}
	}
	cl, err := kgo.NewClient(append(slices.Clone(l.kopts),
		kgo.ConsumerGroup(l.group),
		kgo.ConsumeTopics(string(l.topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(10*time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, false) }),
	)...)
	if err != nil {
		return fmt.Errorf("leader client: %w", err)
	}
	defer func() {
		l.leading.Store(false)
		cl.Close() // leaves the group
	}()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			l.log.Debug("leader: fetch error", "topic", t, "partition", p, "err", err)
		})
	}
}
