package drift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// ErrStatusNotReady is returned by Statuses.DriftStatus until the view has
// read the status topic up to where it ended when Run started.
var ErrStatusNotReady = errors.New("drift status view is catching up")

// encodeStatus is a status record's value: the status as JSON.
func encodeStatus(st gates.DriftStatus) []byte {
	b, err := json.Marshal(st)
	if err != nil { // a DriftStatus always marshals: no NaN (finite statistics)
		panic(fmt.Sprintf("drift: encode status: %v", err))
	}
	return b
}

// Statuses is a process's view of spine.drift.status: every kind and
// route's latest drift status, kept current by Run. Lookups (DriftStatus,
// the gatekeeper's hot path) load an immutable map atomically, lock-free.
//
// Concurrency: one goroutine (Run) reads the topic and is the only writer;
// it replaces the map after each polled batch (copy on write: there is one
// entry per kind and route). DriftStatus is safe for concurrent use.
type Statuses struct {
	kopts []kgo.Opt
	topic pipeline.Topic
	log   *slog.Logger

	cur   atomic.Pointer[map[string]gates.DriftStatus]
	ready atomic.Bool

	readyOnce sync.Once
	readyCh   chan struct{}
}

var _ gates.DriftStatuses = (*Statuses)(nil)

// NewStatuses returns the view of layout's status topic, reached through
// kopts (Config.KafkaOpts). It does no I/O; Run connects.
func NewStatuses(kopts []kgo.Opt, layout pipeline.Layout, log *slog.Logger) *Statuses {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Statuses{kopts: kopts, topic: layout.DriftStatus(), log: log.With("component", "drift-status"), readyCh: make(chan struct{})}
	s.cur.Store(&map[string]gates.DriftStatus{})
	return s
}

// DriftStatus implements gates.DriftStatuses.
func (s *Statuses) DriftStatus(kind, route string) (gates.DriftStatus, bool, error) {
	if !s.ready.Load() {
		return gates.DriftStatus{}, false, ErrStatusNotReady
	}
	st, ok := (*s.cur.Load())[thread.DriftKey(kind, route)]
	return st, ok, nil
}

// All returns every status read so far, by kind/route key.
func (s *Statuses) All() map[string]gates.DriftStatus { return maps.Clone(*s.cur.Load()) }

// WaitReady blocks until the view is current, or ctx ends.
func (s *Statuses) WaitReady(ctx context.Context) error {
	select {
	case <-s.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drift status view of %s: %w (is Kafka reachable?)", s.topic, ctx.Err())
	}
}

func (s *Statuses) markReady() {
	s.readyOnce.Do(func() { s.ready.Store(true); close(s.readyCh) })
}

// Run reads the status topic from the start (read_committed: the monitor
// writes it in its transactions) and keeps applying statuses until ctx
// ends. It returns nil when ctx ends, or the error that stopped it.
func (s *Statuses) Run(ctx context.Context) error {
	opts := append(slices.Clone(s.kopts),
		kgo.ConsumeTopics(string(s.topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit markers tell how far the view has read when the
		// topic's last offset is one.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("drift status client: %w", err)
	}
	defer cl.Close()

	// The end offsets at start: once read up to them, the view is current.
	var ends map[int32]int64
	for ends == nil {
		lo, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, string(s.topic))
		if err == nil {
			err = lo.Error()
		}
		if err == nil {
			ends = map[int32]int64{}
			lo.Each(func(o kadm.ListedOffset) {
				if o.Offset > 0 {
					ends[o.Partition] = o.Offset
				}
			})
			break
		}
		s.log.Warn("drift status: cannot read the end of the topic yet; retrying", "topic", s.topic, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if len(ends) == 0 {
		s.markReady()
	}
	// A partition whose last offset was compacted away never shows it:
	// after quietFor without a record the view counts as read, with a
	// warning (as the loop's restore does), so enforce mode cannot wait
	// forever.
	const quietFor = 5 * time.Second
	lastRecord := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if fs.NumRecords() > 0 {
			lastRecord = time.Now()
		} else if len(ends) > 0 && time.Since(lastRecord) > quietFor {
			s.log.Warn("drift status: no record for a while before the start-time end; taking the topic as read", "topic", s.topic, "partitions", len(ends))
			clear(ends)
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.Warn("drift status: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		var next map[string]gates.DriftStatus
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var st gates.DriftStatus
			if err := json.Unmarshal(r.Value, &st); err != nil || thread.DriftKey(st.Kind, st.Route) != string(r.Key) {
				s.log.Warn("drift status: skipping a record that is not a status", "offset", r.Offset, "key", string(r.Key), "err", err)
				return
			}
			if next == nil {
				next = maps.Clone(*s.cur.Load())
			}
			// One writer per key (the monitor instance owning its
			// partition), transactional: the later record is the newer.
			next[string(r.Key)] = st
		})
		if next != nil {
			s.cur.Store(&next)
		}
		if len(ends) == 0 {
			s.markReady()
		}
	}
}
