package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partState is the committed state of one assigned partition: every key's
// latest state and the pending timers. A partState is replaced, never
// reused, when its partition is assigned again, so a pointer identifies one
// ownership of the partition.
type partState struct {
	data   map[string][]byte
	timers timerHeap
	// hold keeps the partition's timers from firing until the loop has
	// read its inputs up to where they ended when it was assigned; nil when
	// the partition's timers are free to fire.
	hold *catchUp
}

// catchUp is a partition's wait, after its assignment, for the loop to read
// its input backlog before timers fire: a timer that came due while the
// processor was down must not fire before the input that answers it
// (committed before the deadline) is read.
type catchUp struct {
	// targets maps each input topic still behind to the offset the loop
	// must reach on it: its last stable offset at assignment.
	targets map[string]int64
	since   time.Time
	// until bounds the wait, so an input that cannot be read to its target
	// never disables the partition's timers.
	until time.Time
}

// store holds the committed state of the assigned partitions. It is written
// by the rebalance callbacks (restore, drop) and by the loop after a commit,
// and read by the loop; mu guards parts and every partState in it.
type store struct {
	mu    sync.Mutex
	parts map[int32]*partState
}

func newStore() *store { return &store{parts: map[int32]*partState{}} }

// install makes ps the committed state of partition p.
func (s *store) install(p int32, ps *partState) {
	s.mu.Lock()
	s.parts[p] = ps
	s.mu.Unlock()
}

// drop forgets partitions (on revoke or loss).
func (s *store) drop(ps []int32) {
	s.mu.Lock()
	for _, p := range ps {
		delete(s.parts, p)
	}
	s.mu.Unlock()
}

// dropAll forgets every partition.
func (s *store) dropAll() {
	s.mu.Lock()
	s.parts = map[int32]*partState{}
	s.mu.Unlock()
}

// held is a partition whose catch-up wait ended: caught up, or, with
// expired, its grace period ran out first with the inputs in behind (topic
// → target offset) not yet read to their targets.
type held struct {
	partition int32
	behind    map[string]int64
	waited    time.Duration
	expired   bool
}

// holding reports whether any partition waits to catch up with its inputs.
func (s *store) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.parts {
		if ps.hold != nil {
			return true
		}
	}
	return false
}

// releaseExpired ends the catch-up wait of every partition whose grace
// period passed by now, and returns them.
func (s *store) releaseExpired(now time.Time) []held {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []held
	for p, ps := range s.parts {
		if ps.hold != nil && !now.Before(ps.hold.until) {
			out = append(out, held{partition: p, behind: ps.hold.targets, waited: now.Sub(ps.hold.since), expired: true})
			ps.hold = nil
		}
	}
	return out
}

// dueTimers pops the timers due at now from every partition that is not
// waiting to catch up with its inputs.
func (s *store) dueTimers(now time.Time) map[int32][]timer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[int32][]timer
	for p, ps := range s.parts {
		if ps.hold != nil {
			continue
		}
		if at, ok := ps.timers.next(); !ok || at.After(now) {
			continue
		}
		if out == nil {
			out = map[int32][]timer{}
		}
		out[p] = ps.timers.popDue(now)
	}
	return out
}

// requeue puts timers back after an aborted transaction, if the partition
// is still owned by the same assignment.
func (s *store) requeue(p int32, base *partState, ts []timer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parts[p] != base || base == nil {
		return
	}
	for _, t := range ts {
		base.timers.add(t.at, t.key)
	}
}

// dirty is one uncommitted state write.
type dirty struct {
	val []byte
	del bool
	// at is val's timer deadline (zero: none) when known is set, as the
	// handler reported it (Result.DeadlineSet).
	at    time.Time
	known bool
}

// partOverlay is a batch's uncommitted writes to one partition, and the
// ownership (base) they were made against.
type partOverlay struct {
	base   *partState
	writes map[string]dirty
	// read is, per input topic, the offset just past the last record
	// (control records included) the batch read from this partition.
	read map[string]int64
}

// overlay holds one transaction's uncommitted state writes. It belongs to
// the loop goroutine. It is applied to the store only after the transaction
// commits and is discarded when it aborts, so the in-memory state always
// equals the committed changelog.
type overlay struct {
	s     *store
	parts map[int32]*partOverlay
}

func (s *store) newOverlay() *overlay { return &overlay{s: s, parts: map[int32]*partOverlay{}} }

// part returns the overlay of p, capturing its current ownership. ok is
// false if p has no restored state.
func (o *overlay) part(p int32) (*partOverlay, bool) {
	if po, ok := o.parts[p]; ok {
		return po, po.base != nil
	}
	o.s.mu.Lock()
	base := o.s.parts[p]
	o.s.mu.Unlock()
	po := &partOverlay{base: base, writes: map[string]dirty{}}
	o.parts[p] = po
	return po, base != nil
}

// get returns key's current state in p: the batch's write, else the
// committed one.
func (o *overlay) get(p int32, key string) ([]byte, error) {
	po, ok := o.part(p)
	if !ok {
		return nil, fmt.Errorf("partition %d has no restored state (rebalance in progress?)", p)
	}
	if d, ok := po.writes[key]; ok {
		return d.val, nil
	}
	o.s.mu.Lock()
	v := po.base.data[key]
	o.s.mu.Unlock()
	return v, nil
}

// set records key's new state (nil with del: a tombstone) and, with known,
// its timer deadline (zero: none).
func (o *overlay) set(p int32, key string, val []byte, del bool, at time.Time, known bool) {
	po, _ := o.part(p)
	po.writes[key] = dirty{val: val, del: del, at: at, known: known}
}

// advance records that the batch read topic's partition p up to offset
// (exclusive).
func (o *overlay) advance(topic string, p int32, offset int64) {
	po, _ := o.part(p)
	if po.read == nil {
		po.read = map[string]int64{}
	}
	if offset > po.read[topic] {
		po.read[topic] = offset
	}
}

// apply makes the batch's writes committed state and schedules their
// timers, and moves the partitions' catch-up waits on by what the batch
// read; it returns the partitions whose wait ended. Writes to a partition
// that was revoked (or revoked and assigned again) since the batch read it
// are dropped: the new owner restored them from the changelog.
func (o *overlay) apply(timed Timed) []held {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	var caught []held
	for p, po := range o.parts {
		if po.base == nil || o.s.parts[p] != po.base {
			continue
		}
		if h := po.base.hold; h != nil && len(po.read) > 0 {
			for t, off := range po.read {
				if target, ok := h.targets[t]; ok && off >= target {
					delete(h.targets, t)
				}
			}
			if len(h.targets) == 0 {
				po.base.hold = nil
				caught = append(caught, held{partition: p, waited: time.Since(h.since)})
			}
		}
		for k, d := range po.writes {
			if d.del {
				delete(po.base.data, k)
				continue
			}
			po.base.data[k] = d.val
			switch {
			case timed == nil:
			case d.known:
				if !d.at.IsZero() {
					po.base.timers.add(d.at, k)
				}
			default:
				if at, ok := timed.Deadline(d.val); ok {
					po.base.timers.add(at, k)
				}
			}
		}
	}
	return caught
}

// restorer reads a processor's changelog partitions back into memory.
type restorer struct {
	topic Topic
	// opts connect a plain (non-group, non-transactional) client.
	opts []kgo.Opt
	adm  *kadm.Client
	// settle bounds the wait for open transactions on the changelog to end
	// (a crashed predecessor's transaction is aborted by its timeout).
	settle  time.Duration
	timeout time.Duration
	// quiet is how long a partition may yield nothing before it is taken
	// as read to its end.
	quiet time.Duration
	timed Timed
	log   *slog.Logger
}

// restore reads partitions of the changelog from the start to their end,
// read_committed, and returns each partition's state with its timers.
//
// It first waits until no transaction is open on them (last stable offset
// equals the high watermark), so a predecessor's in-flight commit is not
// missed, then reads to that offset. Control records are kept by the
// reading client so the end is recognisable even when it is a transaction
// marker.
func (r *restorer) restore(ctx context.Context, partitions []int32) (map[int32]*partState, error) {
	out := make(map[int32]*partState, len(partitions))
	for _, p := range partitions {
		out[p] = &partState{data: map[string][]byte{}}
	}
	if len(partitions) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	targets, starts, err := r.targets(ctx, partitions)
	if err != nil {
		return nil, err
	}
	consume := map[int32]kgo.Offset{}
	for _, p := range partitions {
		if targets[p] > starts[p] {
			consume[p] = kgo.NewOffset().AtStart()
		}
	}
	var n int
	if len(consume) > 0 {
		cl, err := kgo.NewClient(append(slices.Clone(r.opts),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{string(r.topic): consume}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(),
			kgo.FetchMaxWait(100*time.Millisecond),
		)...)
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", r.topic, err)
		}
		defer cl.Close()
		// Per partition: the offset after the last record it yielded, and
		// when it last yielded one or was last probed.
		type seen struct {
			next int64
			at   time.Time
		}
		last := map[int32]seen{}
		for p := range consume {
			last[p] = seen{next: starts[p], at: time.Now()}
		}
		for len(consume) > 0 {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			cancel()
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("restore %s partitions %v: not at the end after %s (is the broker reachable?): %w", r.topic, keysOf(consume), r.timeout, err)
			}
			for _, fe := range fs.Errors() {
				if errors.Is(fe.Err, context.DeadlineExceeded) {
					continue
				}
				r.log.Warn("restore: fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
			fs.EachRecord(func(rec *kgo.Record) {
				if _, ok := consume[rec.Partition]; !ok {
					return
				}
				last[rec.Partition] = seen{next: rec.Offset + 1, at: time.Now()}
				if !rec.Attrs.IsControl() {
					ps := out[rec.Partition]
					if rec.Value == nil {
						delete(ps.data, string(rec.Key))
					} else {
						// A copy: the record's value is a slice of the
						// whole fetch response, which it would pin.
						ps.data[string(rec.Key)] = bytes.Clone(rec.Value)
					}
					n++
				}
				if rec.Offset+1 >= targets[rec.Partition] {
					delete(consume, rec.Partition)
				}
			})
			// A partition whose tail holds no visible record (its last
			// transaction marker was compacted away) never reaches its
			// target. Once it has yielded nothing for a while, the broker
			// is asked what lies past its last record; it is at its end
			// only if nothing visible does. Silence alone proves nothing:
			// a slow broker, or answers the client drops (a fetch
			// session reset, a retriable error), yield nothing too.
			for p := range consume {
				l := last[p]
				if time.Since(l.at) <= r.quiet {
					continue
				}
				// A stalled broker must not hold the loop: the consumer's
				// answers wait to be polled meanwhile.
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				end, err := r.tailInvisible(pctx, cl, p, l.next, targets[p])
				cancel()
				if err != nil {
					r.log.Warn("restore: cannot see past the last record yet", "topic", r.topic, "partition", p, "offset", l.next, "err", err)
				}
				if end {
					r.log.Warn("restore: no visible record up to the last stable offset; taking the partition as read (compacted tail?)",
						"topic", r.topic, "partition", p, "from", l.next, "target", targets[p])
					delete(consume, p)
					continue
				}
				last[p] = seen{next: l.next, at: time.Now()}
			}
		}
	}
	if r.timed != nil {
		for _, ps := range out {
			for k, v := range ps.data {
				if at, ok := r.timed.Deadline(v); ok {
					ps.timers.add(at, k)
				}
			}
		}
	}
	r.log.Info("state restored", "partitions", partitions, "records", n, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// targets returns the offset to read each partition to, once no
// transaction is open on it, and its log start offset.
func (r *restorer) targets(ctx context.Context, partitions []int32) (targets, starts map[int32]int64, err error) {
	settleBy := time.Now().Add(r.settle)
	t := string(r.topic)
	for {
		ends, err := r.adm.ListEndOffsets(ctx, t)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list end offsets of %s: %w", t, err)
		}
		stable, err := r.adm.ListCommittedOffsets(ctx, t)
		if err == nil {
			err = stable.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list stable offsets of %s: %w", t, err)
		}
		targets = map[int32]int64{}
		settled := true
		for _, p := range partitions {
			e, ok1 := ends.Lookup(t, p)
			s, ok2 := stable.Lookup(t, p)
			if !ok1 || !ok2 {
				return nil, nil, fmt.Errorf("changelog %s has no partition %d: it must have as many partitions as the input topics", t, p)
			}
			targets[p] = s.Offset
			if s.Offset != e.Offset {
				settled = false
			}
		}
		if settled || time.Now().After(settleBy) {
			if !settled {
				r.log.Warn("restore: a transaction is still open on the changelog; reading to the last stable offset", "topic", t)
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	startOffs, err := r.adm.ListStartOffsets(ctx, t)
	if err == nil {
		err = startOffs.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %s: %w", t, err)
	}
	starts = map[int32]int64{}
	for _, p := range partitions {
		s, _ := startOffs.Lookup(t, p)
		starts[p] = s.Offset
	}
	return targets, starts, nil
}

// tailInvisible reports whether the changelog partition p holds no record
// a read_committed reader keeping control records would see in [from,
// target): it reads that range from p's leader in a fetch of its own and
// looks at each batch's header. A batch starting before from was delivered
// whole with the record before from; a batch at or past it is invisible
// only if it holds no record or is data of a transaction the broker lists
// as aborted. Any error, or anything visible, is not the end.
func (r *restorer) tailInvisible(ctx context.Context, cl *kgo.Client, p int32, from, target int64) (bool, error) {
	t := string(r.topic)
	md, err := r.adm.Metadata(ctx, t)
	if err != nil {
		return false, err
	}
	td := md.Topics[t]
	pd, ok := td.Partitions[p]
	if !ok || pd.Err != nil || pd.Leader < 0 {
		return false, fmt.Errorf("no leader known for partition %d", p)
	}
	for off := from; off < target; {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0 // what is there now
		req.MaxBytes = 1 << 20
		req.IsolationLevel = 1
		req.SessionEpoch = -1 // a full fetch outside any session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = t, td.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.LogStartOffset, rp.PartitionMaxBytes = p, off, -1, 1<<20
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := cl.Broker(int(pd.Leader)).Request(ctx, req)
		if err != nil {
			return false, err
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return false, err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return false, fmt.Errorf("fetch answered %d topics", len(resp.Topics))
		}
		rpr := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rpr.ErrorCode); err != nil {
			return false, err
		}
		next, whole, visible := scanBatches(rpr.RecordBatches, from, target, rpr.AbortedTransactions)
		switch {
		case visible:
			return false, nil
		case whole == 0 && len(rpr.RecordBatches) > 0:
			return false, fmt.Errorf("a batch at offset %d is larger than the %d bytes read", off, req.MaxBytes)
		case whole == 0 || next <= off: // nothing past off: the log ends here
			return true, nil
		}
		off = next
	}
	return true, nil
}

// scanBatches walks the record batches of a read_committed fetch answer by
// their headers, as a consumer does: a transaction's data is invisible from
// the first offset the broker lists it aborted at until its producer's
// marker. It returns the offset after the last whole batch, how many whole
// batches there were, and whether one starting at or past from holds a
// record a reader keeping control records sees; batches from until on are
// not looked at. A batch cut off at the end of the answer is left for the
// next read.
func scanBatches(b []byte, from, until int64, aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction) (next int64, whole int, visible bool) {
	const header = 61 // the v2 batch header, up to and including NumRecords
	aborted = slices.Clone(aborted)
	slices.SortFunc(aborted, func(x, y kmsg.FetchResponseTopicPartitionAbortedTransaction) int {
		return cmp.Compare(x.FirstOffset, y.FirstOffset)
	})
	abortedBy := map[int64]bool{}
	for len(b) >= 12 {
		first := int64(binary.BigEndian.Uint64(b))
		size := 12 + int(int32(binary.BigEndian.Uint32(b[8:])))
		if size < header || size > len(b) || first >= until {
			break
		}
		attrs := binary.BigEndian.Uint16(b[21:])
		last := first + int64(int32(binary.BigEndian.Uint32(b[23:])))
		producer := int64(binary.BigEndian.Uint64(b[43:]))
		records := int32(binary.BigEndian.Uint32(b[57:]))
		b = b[size:]
		next, whole = last+1, whole+1
		for len(aborted) > 0 && aborted[0].FirstOffset <= last {
			abortedBy[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		control, transactional := attrs&0x20 != 0, attrs&0x10 != 0
		switch {
		case control:
			delete(abortedBy, producer) // its transaction ends here
		case records == 0, transactional && abortedBy[producer]:
			continue
		}
		if first >= from {
			return next, whole, true
		}
	}
	return next, whole, false
}

func keysOf[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
