package verify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// plan lists the partitions to read and the offsets to read them between.
func (v *verifier) plan(ctx context.Context, adm *kadm.Client) error {
	l := v.cfg.Layout
	add := func(t pipeline.Topic, k topicKind) *topicInfo {
		ti := &topicInfo{name: string(t), short: strings.TrimPrefix(string(t), l.Prefix), kind: k, index: uint8(len(v.topics))}
		v.byName[ti.name] = ti
		v.topics = append(v.topics, ti)
		return ti
	}
	for _, t := range l.ThreadTopics() {
		k := kindGate
		switch t {
		case l.Intents():
			k = kindIntents
		case l.Control():
			k = kindControl
		case l.Dataplane():
			k = kindDataplane
		}
		v.scanned = append(v.scanned, add(t, k))
	}
	v.scanned = append(v.scanned, add(l.Artifacts(), kindArtifacts))
	v.dlq = add(l.DLQ(), kindDLQ)

	var names []string
	for n := range v.byName {
		names = append(names, n)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(lctx, names...)
	if err != nil {
		return fmt.Errorf("verify: list offsets (is Kafka reachable?): %w", err)
	}
	list := adm.ListCommittedOffsets
	if v.cfg.ReadUncommitted {
		list = adm.ListEndOffsets
	}
	ends, err := list(lctx, names...)
	if err != nil {
		return fmt.Errorf("verify: list offsets: %w", err)
	}
	var from, until kadm.ListedOffsets
	if !v.cfg.Since.IsZero() {
		if from, err = adm.ListOffsetsAfterMilli(lctx, v.cfg.Since.Add(-v.cfg.Lookback).UnixMilli(), names...); err != nil {
			return fmt.Errorf("verify: list offsets by time: %w", err)
		}
		v.partial = true
	}
	if !v.cfg.Until.IsZero() {
		if until, err = adm.ListOffsetsAfterMilli(lctx, v.cfg.Until.Add(v.cfg.Grace).UnixMilli(), names...); err != nil {
			return fmt.Errorf("verify: list offsets by time: %w", err)
		}
	}
	var events int64
	for name, ti := range v.byName {
		ps := ends[name]
		if len(ps) == 0 {
			continue
		}
		n := int32(0)
		for p := range ps {
			n = max(n, p+1)
		}
		ti.parts = make([]*partState, n)
		for p, e := range ps {
			if p < 0 || e.Err != nil {
				continue
			}
			st := &partState{end: e.Offset}
			if s, ok := starts.Lookup(name, p); ok && s.Err == nil {
				st.from = s.Offset
				if s.Offset > 0 && ti.kind != kindArtifacts && ti.kind != kindDLQ {
					v.partial = true // retention removed the oldest runs' start
				}
			}
			if o, ok := from.Lookup(name, p); ok && o.Err == nil && o.Offset > st.from {
				st.from = o.Offset
			}
			// The artifacts are read to their end: an artifact's record may
			// carry a time other than its run's (a producer's clock).
			if o, ok := until.Lookup(name, p); ok && ti.kind != kindArtifacts && o.Err == nil && o.Offset >= 0 && o.Offset < st.end {
				st.end = o.Offset
			}
			ti.parts[p] = st
			if ti.kind.events() && st.end > st.from {
				events += st.end - st.from
			}
		}
	}
	// Size the event id table for every event at once: growing a table of
	// millions rehashes every id again.
	v.ids.init(int(min(2*events, 1<<31)))
	return nil
}

// idleReads polls of idleRead each without a record end a read: the tail
// of a partition may be records of an open or aborted transaction a
// read_committed consumer never sees, so it cannot reach the partition's
// end offset. Unless the broker says more is to come (behind): then the
// read waits on, up to idleWait without a record (an embedded broker
// compacting a large topic answers no fetch for seconds).
const (
	idleRead  = 2 * time.Second
	idleReads = 5
	idleWait  = 2 * time.Minute
)

// read consumes topics between their planned offsets (from where a
// shared read left a partition, if it did) and applies every record.
func (v *verifier) read(ctx context.Context, topics []*topicInfo) error {
	assign := map[string]map[int32]kgo.Offset{}
	left := 0
	for _, ti := range topics {
		for p, st := range ti.parts {
			if !st.reading() {
				continue
			}
			if assign[ti.name] == nil {
				assign[ti.name] = map[int32]kgo.Offset{}
			}
			assign[ti.name][int32(p)] = kgo.NewOffset().At(max(st.from, st.next))
			left++
		}
	}
	if left == 0 {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.settle(topics)
		return nil
	}
	iso := kgo.ReadCommitted()
	if v.cfg.ReadUncommitted {
		iso = kgo.ReadUncommitted()
	}
	cl, err := kgo.NewClient(append(v.cfg.Kafka[:len(v.cfg.Kafka):len(v.cfg.Kafka)],
		kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("verify: consumer: %w", err)
	}
	defer cl.Close()
	idles := 0
	lastRecord := time.Now()
	// The verifier is shared with a tap (see tap.go): it is locked while
	// a poll's records are applied.
	v.mu.Lock()
	defer v.mu.Unlock()
	for left > 0 {
		pctx, cancel := context.WithTimeout(ctx, idleRead)
		v.mu.Unlock()
		fs := cl.PollRecords(pctx, 50000)
		v.mu.Lock()
		idle := pctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("verify: fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if fs.NumRecords() > 0 {
			lastRecord = time.Now()
		}
		if !idle || fs.NumRecords() > 0 {
			idles = 0
		} else if idles++; idles >= idleReads {
			if time.Since(lastRecord) < idleWait && v.behind(ctx, cl, topics) {
				idles = 0
				continue
			}
			for _, ti := range topics {
				for p, st := range ti.parts {
					if st.reading() {
						v.rep.EndedIdle = append(v.rep.EndedIdle, fmt.Sprintf("%s/%d", ti.short, p))
					}
				}
			}
			break
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			ti := v.byName[p.Topic]
			if ti == nil || int(p.Partition) >= len(ti.parts) {
				return
			}
			st := ti.parts[p.Partition]
			if st == nil || st.done {
				return
			}
			for _, r := range p.Records {
				if r.Offset >= st.end {
					break
				}
				v.record(ti, st, r)
			}
			if n := len(p.Records); n > 0 {
				st.next = p.Records[n-1].Offset + 1
				if st.next >= st.end {
					st.done = true
					left--
				}
			}
		})
	}
	v.settle(topics)
	return nil
}

// settle applies the transactional records still waiting for a marker
// when the read of topics ended: a marker past the read, below the last
// stable offset, is a commit; read_uncommitted cannot tell, and applies
// them as well.
func (v *verifier) settle(topics []*topicInfo) {
	for _, ti := range topics {
		for _, st := range ti.parts {
			if st == nil {
				continue
			}
			for pid, recs := range st.pending {
				for _, r := range recs {
					v.apply(ti, st, r)
				}
				delete(st.pending, pid)
			}
		}
	}
}

// behind reports whether a partition the read has not finished has, below
// its planned end, records it will still see: a read_committed read sees
// every committed record and, its control records kept, every
// transaction's marker, so offsets it has not seen below the last stable
// offset (the end offset, read uncommitted) mean a broker slow to answer,
// not a tail it can never see. A failed listing counts as behind: the
// caller's idleWait bounds the wait.
func (v *verifier) behind(ctx context.Context, cl *kgo.Client, topics []*topicInfo) bool {
	var names []string
	for _, ti := range topics {
		if slices.ContainsFunc(ti.parts, (*partState).reading) {
			names = append(names, ti.name)
		}
	}
	if len(names) == 0 {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	list := adm.ListCommittedOffsets
	if v.cfg.ReadUncommitted {
		list = adm.ListEndOffsets
	}
	offs, err := list(lctx, names...)
	if err != nil {
		return true
	}
	for _, ti := range topics {
		for p, st := range ti.parts {
			if !st.reading() {
				continue
			}
			o, ok := offs.Lookup(ti.name, int32(p))
			if !ok || o.Err != nil {
				return true
			}
			if min(o.Offset, st.end) > max(st.next, st.from) {
				return true
			}
		}
	}
	return false
}

func where(ti *topicInfo, r *kgo.Record) string {
	return fmt.Sprintf("%s/%d@%d", ti.short, r.Partition, r.Offset)
}

// record takes one record in offset order: a transaction marker settles
// its producer's pending records, a transactional record waits for its
// marker, anything else is applied at once.
func (v *verifier) record(ti *topicInfo, st *partState, r *kgo.Record) {
	if !st.seen {
		st.seen = true
		if ti.kind == kindControl && st.from > 0 {
			v.horizonMs = max(v.horizonMs, r.Timestamp.UnixMilli())
		}
	}
	if r.Attrs.IsControl() {
		if len(r.Key) < 4 {
			return
		}
		recs := st.pending[r.ProducerID]
		if len(recs) == 0 {
			return
		}
		if binary.BigEndian.Uint16(r.Key[2:4]) == 1 { // commit
			for _, x := range recs {
				v.apply(ti, st, x)
			}
		} else {
			v.aborted(ti, recs, r)
		}
		st.pending[r.ProducerID] = recs[:0]
		return
	}
	if !r.Attrs.IsTransactional() && ti.kind.events() {
		if v.rep.Foreign == nil {
			v.rep.Foreign = map[string]int{}
		}
		v.rep.Foreign[ti.short]++
		ti.records++
		v.original(ti, st, r) // a processor may have dead-lettered it
		return
	}
	if r.Attrs.IsTransactional() {
		if st.pending == nil {
			st.pending = map[int64][]*kgo.Record{}
		}
		st.pending[r.ProducerID] = append(st.pending[r.ProducerID], r)
		return
	}
	v.apply(ti, st, r)
}

// aborted reports the visible records of an aborted transaction, one
// anomaly per trace (the first record found), and drops them.
func (v *verifier) aborted(ti *topicInfo, recs []*kgo.Record, marker *kgo.Record) {
	v.rep.AbortedSeen += len(recs)
	if v.abortedTraces == nil {
		v.abortedTraces = map[string]bool{}
	}
	for _, r := range recs {
		trace := string(r.Key)
		if ti.kind == kindArtifacts {
			trace = ""
			for _, h := range r.Headers {
				if h.Key == thread.HeaderTraceID {
					trace = string(h.Value)
				}
			}
		}
		if v.abortedTraces[trace] {
			continue
		}
		v.abortedTraces[trace] = true
		v.anomaly(AbortedRead, trace, where(ti, r), "a record of producer %d's transaction aborted at offset %d was visible to a %s read",
			r.ProducerID, marker.Offset, v.rep.Isolation)
	}
}
