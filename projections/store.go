package projections

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Kafka are the connection options. Required.
	Kafka []kgo.Opt
	// Layout names the projection topics. Required.
	Layout pipeline.Layout
	// Window is the aggregate window width the runner uses (default
	// DefaultWindow).
	Window time.Duration
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// MaxRuns bounds the runs the view keeps (about 2 KB each): past it the
	// least recently updated run leaves the view, while its figures stay in
	// the aggregates and the run stays on the compacted topic. 0: no bound.
	MaxRuns int
}

// Store is a read-only view of the projections (goka's "view"): it consumes
// the compacted spine.proj.* topics, read_committed, into memory and
// answers queries from there. Every instance of Spine can run one; they
// need no group. A Store is safe for concurrent use: Run writes under a
// lock, queries read under it.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu      sync.RWMutex
	runs    map[string]*viewRun // by trace id
	recent  list.List           // trace ids, most recently updated first
	evicted int64               // runs dropped for MaxRuns
	skipped int64               // records of the runs topic not read at start (runsTail)
	aggs    Cells               // aggregate cells by key
	ready   bool
	last    time.Time // when the last record was applied
	n       int64     // records applied
}

// viewRun is one run in the view: its encoded part per source topic,
// decoded on query, and its place in Store.recent.
type viewRun struct {
	parts map[string][]byte
	at    *list.Element
}

// NewStore returns a Store; it does no I/O.
func NewStore(cfg StoreConfig) (*Store, error) {
	if len(cfg.Kafka) == 0 {
		return nil, errors.New("projections store: no Kafka options")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRuns < 0 {
		return nil, fmt.Errorf("projections store: MaxRuns %d is negative (0: no bound)", cfg.MaxRuns)
	}
	return &Store{cfg: cfg, log: log.With("component", "projections-store"), runs: map[string]*viewRun{}, aggs: Cells{}}, nil
}

// NewMemStore returns a Store serving fixed cells (for example a replay's),
// without Kafka.
func NewMemStore(cells Cells, window time.Duration) *Store {
	s := &Store{cfg: StoreConfig{Window: window}, log: slog.New(slog.DiscardHandler), runs: map[string]*viewRun{}, aggs: Cells{}, ready: true}
	if s.cfg.Window <= 0 {
		s.cfg.Window = DefaultWindow
	}
	for k, c := range cells {
		kk, err := ParseKey(k)
		if err != nil {
			continue
		}
		if kk.Projection == thread.ProjRuns {
			if b, err := EncodeCell(c); err == nil {
				s.putRun(kk, b)
			}
			continue
		}
		s.aggs[k] = c
	}
	return s
}

// Run consumes the projection topics until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	topics := projectionTopicNames(s.cfg.Layout)
	// Ready once caught up with the ends as of the start.
	admCl, err := kgo.NewClient(s.cfg.Kafka...)
	if err != nil {
		return fmt.Errorf("projections store: client: %w", err)
	}
	var ends, starts partOffsets
	for {
		// A view waits for Kafka, however long: it is not ready meanwhile.
		if ends, starts, err = endOffsets(ctx, kadm.NewClient(admCl), topics, nil); err == nil || ctx.Err() != nil {
			break
		}
		s.log.Warn("projections view: cannot list the projection topics' offsets yet; retrying", "err", err)
	}
	admCl.Close()
	if err != nil {
		return nil // ctx ended
	}
	runsTopic := string(s.cfg.Layout.Projection(thread.ProjRuns))
	tail := s.runsTail(len(ends[runsTopic]))
	from := map[string]map[int32]kgo.Offset{runsTopic: {}}
	skipped := int64(0)
	for p, end := range ends[runsTopic] {
		start := starts[runsTopic][p]
		if tail > 0 && end-tail > start {
			skipped += end - tail - start
			start = end - tail
			starts[runsTopic][p] = start
		}
		from[runsTopic][p] = kgo.NewOffset().At(start)
	}
	s.mu.Lock()
	s.skipped = skipped
	s.mu.Unlock()
	if skipped > 0 {
		s.log.Info("the projections view reads the tail of the runs topic only: it keeps the latest runs (SPINE_VIEW_MAX_RUNS)", "max_runs", s.cfg.MaxRuns, "records_per_partition", tail, "records_skipped", skipped)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, s.cfg.Kafka...),
		kgo.ConsumeTopics(slices.DeleteFunc(slices.Clone(topics), func(t string) bool { return t == runsTopic })...),
		kgo.ConsumePartitions(from),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("projections store: client: %w", err)
	}
	defer cl.Close()
	behind := map[string]map[int32]int64{}
	for t, ps := range ends {
		for p, o := range ps {
			if o > starts[t][p] {
				if behind[t] == nil {
					behind[t] = map[int32]int64{}
				}
				behind[t][p] = o
			}
		}
	}
	s.mu.Lock()
	s.ready = len(behind) == 0
	s.mu.Unlock()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		s.mu.Lock()
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				if !r.Attrs.IsControl() {
					s.apply(r.Key, r.Value)
				}
			}
			// Control records are kept so that commit and abort markers
			// advance the position past the end too.
			if end, ok := behind[fp.Topic][fp.Partition]; ok && len(fp.Records) > 0 && fp.Records[len(fp.Records)-1].Offset >= end-1 {
				delete(behind[fp.Topic], fp.Partition)
				if len(behind[fp.Topic]) == 0 {
					delete(behind, fp.Topic)
				}
			}
		})
		if len(behind) == 0 && !s.ready {
			s.ready = true
			s.log.Info("projections view caught up", "runs", len(s.runs), "cells", len(s.aggs))
		}
		s.last = time.Now()
		s.mu.Unlock()
	}
}

// runsTail is how many records at the end of each of the runs topic's
// partitions the view reads at start (0: all of them). The view keeps the
// MaxRuns most recently updated runs, and a run is one record per source
// topic that wrote of it (compaction keeps each part's last): the tail
// holds MaxRuns runs of every source topic's part and half as many again,
// so the runs it cuts at its start, older, leave the view as the newer
// ones come in. What stays is what a read of the whole topic keeps, but
// for a run that lasted longer than the tail spans (a part written before
// it): the view shows that run without that part.
func (s *Store) runsTail(partitions int) int64 {
	if s.cfg.MaxRuns <= 0 || partitions <= 0 {
		return 0
	}
	perRun := int64(len(SourceTopics(s.cfg.Layout)))
	return (int64(s.cfg.MaxRuns)*perRun*3/2 + int64(partitions) - 1) / int64(partitions)
}

// apply applies one projection record; s.mu is held.
func (s *Store) apply(key, value []byte) {
	s.n++
	k, err := ParseKey(string(key))
	if err != nil {
		s.log.Warn("skipping projection record with a bad key", "key", string(key), "err", err)
		return
	}
	if value == nil {
		s.del(k, string(key))
		return
	}
	if k.Projection == thread.ProjRuns {
		// Runs are many and read one at a time: keep the bytes and decode
		// on query. A copy: value is a slice of the whole fetch response,
		// which every run kept from it would pin.
		s.putRun(k, bytes.Clone(value))
		return
	}
	c, err := decodeCell(k.Projection, value)
	if err != nil {
		s.log.Error("skipping corrupt projection cell", "key", string(key), "err", err, "code", Code(err))
		return
	}
	s.aggs[string(key)] = c
}

// putRun stores one part of a run and makes the run the most recent,
// dropping the least recent one past MaxRuns; s.mu is held.
func (s *Store) putRun(k Key, value []byte) {
	r := s.runs[k.TraceID]
	if r == nil {
		r = &viewRun{parts: map[string][]byte{}, at: s.recent.PushFront(k.TraceID)}
		s.runs[k.TraceID] = r
	} else {
		s.recent.MoveToFront(r.at)
	}
	r.parts[k.Source.Topic] = value
	if s.cfg.MaxRuns > 0 && len(s.runs) > s.cfg.MaxRuns {
		old := s.recent.Back()
		trace := s.recent.Remove(old).(string)
		delete(s.runs, trace)
		s.evicted++
		if s.evicted == 1 {
			s.log.Info("the projections view is full: the least recently updated runs leave it (SPINE_VIEW_MAX_RUNS)", "max_runs", s.cfg.MaxRuns)
		}
	}
}

func (s *Store) del(k Key, key string) {
	if k.Projection == thread.ProjRuns {
		if r := s.runs[k.TraceID]; r != nil {
			delete(r.parts, k.Source.Topic)
			if len(r.parts) == 0 {
				s.recent.Remove(r.at)
				delete(s.runs, k.TraceID)
			}
		}
		return
	}
	delete(s.aggs, key)
}

// RunStatus returns the merged status of one run, or an error wrapping
// ErrNotFound.
func (s *Store) RunStatus(trace string) (Run, error) {
	s.mu.RLock()
	var raw map[string][]byte
	if r := s.runs[trace]; r != nil {
		raw = r.parts
	}
	evicted := s.evicted + s.skipped
	parts := make(map[string]*RunPart, len(raw))
	for topic, b := range raw {
		c, err := decodeCell(thread.ProjRuns, b)
		if err != nil {
			s.log.Error("skipping corrupt run cell", "trace_id", trace, "topic", topic, "err", err, "code", Code(err))
			continue
		}
		parts[topic] = c.(*RunPart)
	}
	s.mu.RUnlock()
	r, ok := MergeRun(parts)
	if !ok {
		if evicted > 0 {
			return Run{}, fmt.Errorf("%w (the view keeps the %d most recently updated runs, SPINE_VIEW_MAX_RUNS; spine trace %s reads an older run from the thread)",
				errRunNotFound(trace), s.cfg.MaxRuns, trace)
		}
		return Run{}, errRunNotFound(trace)
	}
	return r, nil
}

// Aggregate merges the aggregate cells inside rng (see Aggregate).
func (s *Store) Aggregate(rng Range) *Aggregates {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Aggregate(s.aggs, rng, s.cfg.Window)
}

// StoreStatus describes how far the store has read.
type StoreStatus struct {
	Ready   bool      `json:"ready"`
	Runs    int       `json:"runs"`
	Cells   int       `json:"aggregate_cells"`
	Records int64     `json:"records_applied"`
	Updated time.Time `json:"updated,omitzero"`
	// RunsEvicted counts runs that left the view for StoreConfig.MaxRuns.
	RunsEvicted int64 `json:"runs_evicted"`
	MaxRuns     int   `json:"max_runs,omitzero"`
}

// Status reports how far the store has read.
func (s *Store) Status() StoreStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return StoreStatus{Ready: s.ready, Runs: len(s.runs), Cells: len(s.aggs), Records: s.n, Updated: s.last, RunsEvicted: s.evicted, MaxRuns: s.cfg.MaxRuns}
}
