package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

// batch is one transaction's work: the uncommitted state overlay, the
// outputs to report after commit, and what was dead-lettered.
type batch struct {
	ov      *overlay
	outputs []Output
	records int
	skipped int
	dlq     map[string]int
	fired   map[int32][]timer
	// completed are the Async works this batch completes.
	completed []completion

	mu      sync.Mutex
	prodErr error
}

// errBlocked marks a batch aborted because a record kept failing with a
// transient error.
type errBlocked struct{ err error }

func (e *errBlocked) Error() string { return e.err.Error() }
func (e *errBlocked) Unwrap() error { return e.err }

// transact handles recs and due timers in one transaction. It returns an
// error only when the session is unusable.
func (p *Processor) transact(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, due map[int32][]timer, done []completion, read map[int32]map[string]int64) error {
	// In-flight work finishes even when ctx ends (two-step shutdown); the
	// transaction timeout bounds it, and the shutdown timeout once ctx
	// ended.
	wctx, cancel := p.finishing(ctx, p.cfg.txnTimeout+5*time.Second)
	defer cancel()
	start := time.Now()
	rebalances, pending := p.rebalances.Load(), p.pending.Load()
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	b := &batch{ov: p.store.newOverlay(), dlq: map[string]int{}, fired: due, completed: done}
	if len(p.cfg.observers) > 0 {
		// Room for two outputs a record, most handlers' most: the batch's
		// outputs are kept only for the observers, and growing the slice
		// record by record cost more than any other allocation of the loop.
		b.outputs = make([]Output, 0, 2*len(recs)+len(done))
	}
	var buffered atomic.Int64
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			b.mu.Lock()
			b.prodErr = errors.Join(b.prodErr, fmt.Errorf("produce to %s: %w", r.Topic, err))
			b.mu.Unlock()
		}
	}
	produce := func(r *kgo.Record) {
		if buffered.Add(1) >= int64(p.cfg.maxBuffered) {
			// A huge transaction: send what is buffered so far.
			if err := sess.Client().Flush(wctx); err != nil {
				b.mu.Lock()
				b.prodErr = errors.Join(b.prodErr, fmt.Errorf("flush: %w", err))
				b.mu.Unlock()
			}
			buffered.Store(1)
		}
		sess.Produce(wctx, r, promise)
	}

	var blocked error
	if p.cfg.concurrency > 1 && len(recs) > 1 {
		blocked = p.recordsConcurrently(ctx, wctx, b, recs, produce)
	} else {
		for _, r := range recs {
			if err := p.record(ctx, wctx, b, r, produce); err != nil {
				blocked = err
				break
			}
		}
	}
	if blocked == nil && len(due) > 0 {
		now := time.Now()
		for part, ts := range due {
			for _, t := range ts {
				if err := p.fire(ctx, wctx, b, part, t, now, produce); err != nil {
					blocked = err
					break
				}
			}
			if blocked != nil {
				break
			}
		}
	}
	if blocked == nil && len(done) > 0 {
		blocked = p.completeAll(ctx, wctx, b, produce)
	}
	commit := blocked == nil
	if commit {
		// Only each key's last state of the batch goes to the changelog.
		for part, po := range b.ov.parts {
			for k, d := range po.writes {
				produce(&kgo.Record{Topic: string(p.stateTopic), Key: []byte(k), Value: d.val, Partition: part})
			}
		}
		if blocked = p.flush(wctx, sess, b); blocked != nil {
			commit = false
		}
	}
	// Offsets to commit: records handled now, or passed over before.
	committed, err := p.end(wctx, sess, commit, len(recs) > 0 || !p.deferredSince.IsZero(), rebalances, pending)
	p.m.txn(p.name, committed, time.Since(start))
	if !committed {
		p.requeue(b)
		return p.aborted(ctx, err, blocked, len(recs))
	}
	advanceAll(b.ov, read)
	p.logReleased(b.ov.apply(p.timed))
	p.asyncCommitted(b)
	p.committedBatch(b, b.records)
	if len(b.outputs) > 0 {
		for _, o := range p.cfg.observers {
			o.Committed(b.outputs)
		}
	}
	return nil
}

// recordsConcurrently handles recs with one goroutine per partition (at
// most WithConcurrency at a time), each partition's records in order. Every
// goroutine stages into its own batch sharing the overlay, whose partitions
// are created up front so each goroutine writes only its own; the batches
// are merged afterwards. It returns the first error that blocks.
func (p *Processor) recordsConcurrently(ctx, wctx context.Context, b *batch, recs []*kgo.Record, produce func(*kgo.Record)) error {
	byPart := map[int32][]*kgo.Record{}
	var order []int32
	for _, r := range recs {
		if _, ok := byPart[r.Partition]; !ok {
			order = append(order, r.Partition)
			b.ov.part(r.Partition)
		}
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	subs := make([]*batch, len(order))
	errs := make([]error, len(order))
	sem := make(chan struct{}, p.cfg.concurrency)
	var wg sync.WaitGroup
	for i, part := range order {
		subs[i] = &batch{ov: b.ov, dlq: map[string]int{}}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, r := range byPart[part] {
				if err := p.record(ctx, wctx, subs[i], r, produce); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, sb := range subs {
		b.outputs = append(b.outputs, sb.outputs...)
		b.records += sb.records
		b.skipped += sb.skipped
		for code, n := range sb.dlq {
			b.dlq[code] += n
		}
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

func (p *Processor) requeue(b *batch) {
	if p.async != nil {
		p.async.requeue(b.completed)
	}
	for part, ts := range b.fired {
		po, _ := b.ov.part(part)
		p.store.requeue(part, po.base, ts)
	}
}

// block waits out the backoff after a batch was aborted on a transient
// error; the same records are polled again afterwards.
func (p *Processor) block(ctx context.Context, err error) {
	if p.backoff == 0 {
		p.backoff = p.cfg.retryInitial
	} else {
		p.backoff = min(p.backoff*2, p.cfg.retryMax)
	}
	p.m.blocked.WithLabelValues(p.name).Set(1)
	p.cfg.log.Warn("transient error: processor blocked, retrying the batch", "err", err, "backoff", p.backoff)
	sleepCtx(ctx, p.backoff)
}

// record handles one input: decode, handle, encode, then stage its state
// write and outputs (or its dead letter). It returns an error only when a
// transient error persisted through the in-place retries.
func (p *Processor) record(ctx, wctx context.Context, b *batch, r *kgo.Record, produce func(*kgo.Record)) error {
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		err := p.try(wctx, b, r, produce)
		if err == nil {
			return nil
		}
		if code := CodeOf(err); code != "" {
			produce(DeadLetterRecord(p.dlqTopic, p.group, p.name, r, err))
			b.dlq[code]++
			p.cfg.log.Warn("dead-lettered a record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "code", code, "err", err)
			return nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return &errBlocked{fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)}
		}
		if !sleepCtx(ctx, delay) {
			return &errBlocked{err}
		}
		delay *= 2
	}
}

func (p *Processor) try(ctx context.Context, b *batch, r *kgo.Record, produce func(*kgo.Record)) error {
	if p.cfg.eventTypes != nil {
		if has, wanted := typeWanted(p.cfg.eventTypes, r); has && !wanted {
			b.skipped++
			return nil
		}
	}
	topic := Topic(r.Topic)
	value, ver, err := p.cfg.codec.Decode(ctx, topic, r.Value)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	key := string(r.Key)
	state, err := b.ov.get(r.Partition, key)
	if err != nil {
		return err
	}
	in := Input{
		Topic: topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key,
		Value: value, Version: ver, Timestamp: r.Timestamp,
	}
	if len(r.Headers) > 0 {
		in.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			in.Headers[h.Key] = string(h.Value)
		}
	}
	res, err := safeHandle(func() (Result, error) { return p.h.Handle(ctx, state, in) })
	if err != nil {
		return err
	}
	if err := p.stage(ctx, b, r.Partition, r.Key, res, produce); err != nil {
		return err
	}
	b.records++
	return nil
}

// fire runs one due timer, re-checking that the key's current state still
// has that deadline due.
func (p *Processor) fire(ctx, wctx context.Context, b *batch, part int32, t timer, now time.Time, produce func(*kgo.Record)) error {
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		state, err := b.ov.get(part, t.key)
		if err != nil || state == nil {
			return nil // revoked, or the key is gone: no timer
		}
		at, ok := p.timed.Deadline(state)
		if !ok || at.After(now) {
			return nil // the state moved on; its own deadline is queued
		}
		res, err := safeHandle(func() (Result, error) { return p.timed.Fire(wctx, []byte(t.key), state, now) })
		if err == nil {
			err = p.stage(wctx, b, part, []byte(t.key), res, produce)
		}
		if err == nil {
			b.records++
			return nil
		}
		if code := CodeOf(err); code != "" {
			p.cfg.log.Error("timer rejected; dropped until the key's state changes", "key", t.key, "code", code, "err", err)
			return nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return &errBlocked{fmt.Errorf("timer %q: %w", t.key, err)}
		}
		if !sleepCtx(ctx, delay) {
			return &errBlocked{err}
		}
		delay *= 2
	}
}

// stage encodes a result's outputs and, once all encoded, produces them and
// the state write into the open transaction.
func (p *Processor) stage(ctx context.Context, b *batch, part int32, key []byte, res Result, produce func(*kgo.Record)) error {
	recs := make([]*kgo.Record, 0, len(res.Outputs)+1)
	for i, o := range res.Outputs {
		if o.Raw != nil {
			recs = append(recs, &kgo.Record{Topic: string(o.Topic), Key: o.Key, Value: o.Raw, Headers: o.Headers})
			continue
		}
		v := o.Version
		if v == 0 {
			v = schemas.V1
		}
		val, err := p.cfg.codec.Encode(ctx, o.Topic, v, o.Value)
		if err != nil {
			return fmt.Errorf("encode output %d to %s: %w", i, o.Topic, err)
		}
		rec := &kgo.Record{Topic: string(o.Topic), Key: o.Key, Value: val}
		if ev, ok := o.Value.(*schemas.RuntimeEvent); ok {
			rec.Headers = eventHeaders(ev)
		}
		recs = append(recs, rec)
	}
	if res.StateChanged {
		// Written to the changelog once per key when the batch ends.
		b.ov.set(part, string(key), res.State, res.State == nil, res.Deadline, res.DeadlineSet)
	}
	for _, r := range recs {
		produce(r)
	}
	if len(p.cfg.observers) > 0 {
		b.outputs = append(b.outputs, res.Outputs...)
	}
	return nil
}

// HeaderEventType carries a RuntimeEvent's event_type on every record the
// loop produces, so consumers can pass over events they do not act on
// without decoding them (WithEventTypes, or any Kafka client). Beside it
// goes the event's W3C traceparent (thread.HeaderTraceparent).
const HeaderEventType = "x-event-type"

// typeWanted reports whether r has a HeaderEventType and whether types
// holds the type it names. The type is looked up without being copied
// into a string of its own (this runs for every record polled).
func typeWanted(types map[schemas.EventType]bool, r *kgo.Record) (has, wanted bool) {
	for _, h := range r.Headers {
		if h.Key == HeaderEventType {
			return true, types[schemas.EventType(h.Value)]
		}
	}
	return false, false
}

// PanicError is a handler panic, dead-lettered with code "handler_panic".
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// ErrorCode returns "handler_panic".
func (e *PanicError) ErrorCode() string { return "handler_panic" }

func safeHandle(f func() (Result, error)) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v}
		}
	}()
	return f()
}

// flush sends the open transaction's buffered records and returns what
// keeps it from committing: a flush error or the first produce error.
func (p *Processor) flush(ctx context.Context, sess *kgo.GroupTransactSession, b *batch) error {
	if err := sess.Client().Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.prodErr
}

// aborted handles a transaction that did not commit: an End error is
// returned (the client is unusable), a blocking error backs off, an abort
// by a rebalance is logged; the records are polled again either way.
func (p *Processor) aborted(ctx context.Context, endErr, blocked error, records int) error {
	if endErr != nil {
		return fmt.Errorf("end transaction: %w", endErr)
	}
	if blocked != nil {
		p.block(ctx, blocked)
	} else {
		p.cfg.log.Info("transaction aborted by a rebalance; its records will be processed again", "records", records)
	}
	return nil
}

// committedBatch counts a committed transaction's records (ok: handled
// ones, skipped, dead-lettered by code) and ends a blocked spell; it
// returns how many were dead-lettered.
func (p *Processor) committedBatch(b *batch, handled int) (dead int) {
	p.deferredSince = time.Time{} // every polled offset is committed
	if p.backoff != 0 {
		p.cfg.log.Info("processor unblocked")
		p.backoff = 0
		p.m.blocked.WithLabelValues(p.name).Set(0)
	}
	p.m.records.WithLabelValues(p.name, "ok").Add(float64(handled))
	if b.skipped > 0 {
		p.m.records.WithLabelValues(p.name, "skipped").Add(float64(b.skipped))
	}
	for code, n := range b.dlq {
		dead += n
		p.m.records.WithLabelValues(p.name, "dlq").Add(float64(n))
		p.m.dlq.WithLabelValues(p.name, code).Add(float64(n))
	}
	return dead
}
