package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

// NewBatchProcessor returns a processor named name (it names the group and
// the transactional id) running the BatchHandler bh; see BatchHandler for
// how its loop differs. It takes the options of NewProcessor except
// WithConcurrency. It does no I/O.
func NewBatchProcessor(name string, bh BatchHandler, opts ...ProcessorOpt) (*Processor, error) {
	if bh == nil {
		return nil, fmt.Errorf("pipeline: invalid processor %q: batch handler is nil", name)
	}
	p, err := NewProcessor(name, batchOnly{}, opts...)
	if err != nil {
		return nil, err
	}
	if p.cfg.concurrency != 1 {
		return nil, fmt.Errorf("pipeline: invalid processor %q: WithConcurrency does not apply to a batch handler", name)
	}
	p.bh = bh
	p.settler, _ = bh.(Settler)
	p.revoker, _ = bh.(Revoker)
	p.stateTopic = "" // no changelog
	return p, nil
}

// batchOnly is the Handler of a batch processor; the loop never calls it.
type batchOnly struct{}

func (batchOnly) Handle(context.Context, []byte, Input) (Result, error) {
	return Result{}, errors.New("pipeline: Handle called on a batch processor")
}

// partitioner returns the record partitioner of the session's client: the
// state changelog (or, for a batch handler, every topic it writes) gets
// the partition the loop chose; outputs and dead letters are partitioned
// by key hash (Kafka's murmur2, as kgo's default).
func (p *Processor) partitioner() kgo.Partitioner {
	rest := kgo.StickyKeyPartitioner(nil)
	if p.bh != nil {
		return manualPartitioner{manual: func(t string) bool { return t != string(p.dlqTopic) }, rest: rest}
	}
	return statePartitioner{state: string(p.stateTopic), rest: rest}
}

// manualPartitioner writes records of the topics manual accepts to the
// partition the record names, the others by rest.
type manualPartitioner struct {
	manual func(topic string) bool
	rest   kgo.Partitioner
}

func (m manualPartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if m.manual(t) {
		return manualTopicPartitioner{}
	}
	return m.rest.ForTopic(t)
}

// revokeAll tells a Revoker that the processor owns no partition any more
// (its client closed).
func (p *Processor) revokeAll() {
	if p.revoker != nil {
		p.revoker.Revoked(nil)
	}
}

// transactBatch handles recs with the BatchHandler in one transaction:
// decode each (dead-lettering poison), hand the rest over at once, write
// the records it returns, commit with the offsets, and tell a Settler how
// it ended. It returns an error only when the session is unusable.
func (p *Processor) transactBatch(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record) error {
	// A batch that was handled commits even when ctx ends (two-step
	// shutdown), within the shutdown timeout. Its records are sent
	// when it ends, so the handler's time does not count against the
	// transaction timeout. The handler itself stops with ctx: nothing of
	// the batch is on the broker yet, so an abort loses nothing, while a
	// handler waiting on I/O (a restore behind a crashed predecessor's open
	// transaction) would hold a stopping process for up to
	// BatchHandleTimeout.
	tctx, cancel := p.finishing(ctx, BatchHandleTimeout+p.cfg.txnTimeout+5*time.Second)
	defer cancel()
	start := time.Now()
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	b := &batch{dlq: map[string]int{}}
	produce := p.batchProducer(tctx, sess, b)

	var blocked error
	inputs := make([]Input, 0, len(recs))
	for _, r := range recs {
		in, ok, err := p.decode(ctx, tctx, b, r, produce)
		if err != nil {
			blocked = err
			break
		}
		if ok {
			inputs = append(inputs, in)
		}
	}
	handed := 0
	if blocked == nil && len(inputs) > 0 {
		hctx, hcancel := context.WithTimeout(ctx, BatchHandleTimeout)
		out, err := safeBatch(func() ([]Record, error) { return p.bh.HandleBatch(hctx, inputs) })
		hcancel()
		switch {
		case err != nil:
			blocked = &errBlocked{fmt.Errorf("handle a batch of %d records: %w", len(inputs), err)}
		default:
			handed = len(inputs)
			for _, r := range out {
				produce(&kgo.Record{Topic: string(r.Topic), Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers})
			}
		}
	}
	commit := blocked == nil
	if commit {
		if blocked = p.flush(tctx, sess, b); blocked != nil {
			commit = false
		}
	}
	committed, err := sess.End(tctx, kgo.TransactionEndTry(commit))
	took := time.Since(start)
	p.m.txn(p.name, committed, took)
	if !committed {
		if p.settler != nil {
			p.settler.Aborted()
		}
		return p.aborted(ctx, err, blocked, len(recs))
	}
	dead := p.committedBatch(b, handed)
	if p.settler != nil {
		p.settler.Committed(BatchCommit{Inputs: handed, DeadLettered: dead, Took: took})
	}
	return nil
}

// batchProducer returns the function that buffers a record into the open
// transaction; a produce error is kept in b. A transaction that buffers
// more than WithMaxBuffered records is sent part way.
func (p *Processor) batchProducer(ctx context.Context, sess *kgo.GroupTransactSession, b *batch) func(*kgo.Record) {
	var buffered atomic.Int64
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			b.mu.Lock()
			b.prodErr = errors.Join(b.prodErr, fmt.Errorf("produce to %s[%d]: %w", r.Topic, r.Partition, err))
			b.mu.Unlock()
		}
	}
	return func(r *kgo.Record) {
		if buffered.Add(1) >= int64(p.cfg.maxBuffered) {
			if err := sess.Client().Flush(ctx); err != nil {
				b.mu.Lock()
				b.prodErr = errors.Join(b.prodErr, fmt.Errorf("flush: %w", err))
				b.mu.Unlock()
			}
			buffered.Store(1)
		}
		sess.Produce(ctx, r, promise)
	}
}

// decode turns one record into an Input for a batch handler. Poison is
// dead-lettered (ok false); a record of an event type the processor passes
// over is counted as skipped (ok false); a transient error is retried in
// place and returned once it persisted.
func (p *Processor) decode(ctx, wctx context.Context, b *batch, r *kgo.Record, produce func(*kgo.Record)) (in Input, ok bool, err error) {
	if p.cfg.eventTypes != nil {
		if has, wanted := typeWanted(p.cfg.eventTypes, r); has && !wanted {
			b.skipped++
			return Input{}, false, nil
		}
	}
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		value, ver, err := p.cfg.codec.Decode(wctx, Topic(r.Topic), r.Value)
		if err == nil {
			return inputOf(r, value, ver), true, nil
		}
		err = fmt.Errorf("decode: %w", err)
		if code := CodeOf(err); code != "" {
			produce(DeadLetterRecord(p.dlqTopic, p.group, p.name, r, err))
			b.dlq[code]++
			p.cfg.log.Warn("dead-lettered a record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "code", code, "err", err)
			return Input{}, false, nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return Input{}, false, &errBlocked{fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)}
		}
		if !sleepCtx(ctx, delay) {
			return Input{}, false, &errBlocked{err}
		}
		delay *= 2
	}
}

// safeBatch calls f and turns a panic into an error.
func safeBatch(f func() ([]Record, error)) (out []Record, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v}
		}
	}()
	return f()
}

// inputOf is the Input of a decoded record.
func inputOf(r *kgo.Record, value any, ver schemas.ContractVersion) Input {
	in := Input{
		Topic: Topic(r.Topic), Partition: r.Partition, Offset: r.Offset, Key: r.Key,
		Value: value, Version: ver, Timestamp: r.Timestamp,
	}
	if len(r.Headers) > 0 {
		in.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			in.Headers[h.Key] = string(h.Value)
		}
	}
	return in
}
