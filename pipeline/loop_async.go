package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/promreg"
)

// Async is implemented by handlers whose work for a key runs outside any
// transaction: a call to an outside system that may take seconds. The
// work a key asks for is named in its committed state, like a durable
// timer's deadline, so it survives a crash: the loop starts it after the
// transaction that wrote the state commits (or after the state is restored
// on assignment), runs it on a bounded pool of goroutines (WithAsync), and
// hands the outcome back to Complete inside a later transaction, whose
// result (typically outputs and a state that names no work any more)
// commits with it. Work is therefore done at least once (again after a
// crash or a rebalance that interrupted it); its effect on the thread
// commits exactly once.
type Async interface {
	// Pending returns the id of the work a committed state asks for, or ""
	// for none. It must be cheap and deterministic: the loop asks it of
	// every state it commits or restores, and of the key's current state
	// before Complete, so a completion whose key's state names another id
	// (or none) is dropped. It is never asked of a deleted key.
	Pending(state []byte) string
	// Work does the work state asks for, on a pool goroutine, outside any
	// transaction. ctx ends when the work is no longer wanted: the
	// partition was revoked or lost, the processor stops, or a newer state
	// of the key names other work; the outcome is then dropped. Whatever it
	// returns is handed to Complete. Work must be safe for concurrent use;
	// a panic is recovered and handed to Complete as a *PanicError.
	Work(ctx context.Context, key, state []byte) any
	// Complete turns finished work into a Result, inside a transaction,
	// from the loop goroutine, with the key's current state (which still
	// names the work). If the new state still names the same id, the work
	// runs again. A coded error drops the completion with an error log (the
	// work is done again only after a restart or when the state changes);
	// a transient one is retried like a record's.
	Complete(ctx context.Context, key, state []byte, out any) (Result, error)
}

// Defaults of WithAsync.
const (
	DefaultAsyncConcurrency = 64
	// DefaultAsyncQueuePerWorker × concurrency works may wait for a free
	// worker before the loop pauses fetching its inputs.
	DefaultAsyncQueuePerWorker = 16
)

// WithAsync sets how many works of an Async handler run at once on this
// instance (across and within partitions; default 64) and how many more
// may wait for a free worker (queue; 0: 16×concurrency) before the loop
// pauses fetching its inputs; it resumes when the waiting works are down
// to half of queue. Handlers that do not implement Async ignore it.
func WithAsync(concurrency, queue int) ProcessorOpt {
	return func(c *processorConfig) {
		c.asyncConcurrency, c.asyncQueue = concurrency, queue
	}
}

// asyncJob is one work started (or waiting to start) for a key.
type asyncJob struct {
	own    *ownership
	part   int32
	key    string
	id     string
	state  []byte
	ctx    context.Context
	cancel context.CancelFunc
}

// completion is finished work waiting for the loop.
type completion struct {
	job *asyncJob
	out any
}

// ownership is one assignment of a partition as the async runner sees it:
// its context ends when the partition is revoked or lost, and jobs maps
// each key to its work launched and not yet completed.
type ownership struct {
	ps     *partState
	ctx    context.Context
	cancel context.CancelFunc
	jobs   map[string]*asyncJob
}

// asyncRunner runs the works of an Async handler on at most n goroutines
// and queues their completions for the loop. mu guards every field below
// it and every ownership's jobs.
type asyncRunner struct {
	h        Async
	n, queue int
	log      *slog.Logger
	m        *asyncMetrics
	name     string

	wg sync.WaitGroup

	mu      sync.Mutex
	owners  map[int32]*ownership
	waiting []*asyncJob
	running int
	done    []completion
	// wake ends the loop's poll early when completions are ready (see run).
	wake context.CancelFunc
}

func newAsyncRunner(name string, h Async, n, queue int, log *slog.Logger, m *asyncMetrics) *asyncRunner {
	if queue == 0 {
		queue = DefaultAsyncQueuePerWorker * n
	}
	m.run, m.wait = m.running.WithLabelValues(name), m.waiting.WithLabelValues(name)
	return &asyncRunner{h: h, n: n, queue: queue, log: log, m: m, name: name, owners: map[int32]*ownership{}}
}

// own starts an ownership of partition part, whose restored committed
// state is ps, and launches the work its states ask for. Called from the
// assignment callback, before ps is installed in the store.
func (a *asyncRunner) own(part int32, ps *partState) {
	ctx, cancel := context.WithCancel(context.Background())
	o := &ownership{ps: ps, ctx: ctx, cancel: cancel, jobs: map[string]*asyncJob{}}
	a.mu.Lock()
	if old := a.owners[part]; old != nil {
		a.releaseLocked(old)
	}
	a.owners[part] = o
	a.mu.Unlock()
	n := 0
	for k, v := range ps.data {
		if a.launch(part, ps, k, v) {
			n++
		}
	}
	if n > 0 {
		a.log.Info("restored state asks for work: started again", "partition", part, "works", n)
	}
}

// release ends the ownerships of parts: their works are cancelled and
// their completions dropped.
func (a *asyncRunner) release(parts []int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range parts {
		if o := a.owners[p]; o != nil {
			a.releaseLocked(o)
			delete(a.owners, p)
		}
	}
}

// releaseAll ends every ownership.
func (a *asyncRunner) releaseAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p, o := range a.owners {
		a.releaseLocked(o)
		delete(a.owners, p)
	}
	a.done = nil
	a.m.set(a.name, a.running, len(a.waiting))
}

func (a *asyncRunner) releaseLocked(o *ownership) {
	o.cancel()
	o.jobs = map[string]*asyncJob{}
}

// wait waits up to d for the works' goroutines to return (each was
// cancelled by releaseAll) and reports whether they did.
func (a *asyncRunner) wait(d time.Duration) bool {
	ch := make(chan struct{})
	go func() { a.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// launch starts (or queues) the work the committed state of key in part
// asks for, unless that work is already launched; work the key asked for
// before and no longer does is cancelled. state nil: the key is deleted.
// It reports whether it launched work.
func (a *asyncRunner) launch(part int32, ps *partState, key string, state []byte) bool {
	id := ""
	if state != nil {
		id = a.h.Pending(state)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.owners[part]
	if o == nil || o.ps != ps {
		return false // revoked since
	}
	cur := o.jobs[key]
	if cur != nil {
		if cur.id == id {
			return false
		}
		cur.cancel()
		delete(o.jobs, key)
	}
	if id == "" {
		return false
	}
	ctx, cancel := context.WithCancel(o.ctx)
	j := &asyncJob{own: o, part: part, key: key, id: id, state: state, ctx: ctx, cancel: cancel}
	o.jobs[key] = j
	if a.running < a.n {
		a.startLocked(j)
	} else {
		a.waiting = append(a.waiting, j)
	}
	a.m.set(a.name, a.running, len(a.waiting))
	return true
}

func (a *asyncRunner) startLocked(j *asyncJob) {
	a.running++
	a.wg.Add(1)
	go a.run(j)
}

// run does one work and queues its completion, then starts the next
// waiting work, if any.
func (a *asyncRunner) run(j *asyncJob) {
	defer a.wg.Done()
	out := a.work(j)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	if j.ctx.Err() == nil {
		a.done = append(a.done, completion{job: j, out: out})
	} else if j.own.jobs[j.key] == j {
		delete(j.own.jobs, j.key)
	}
	for a.running < a.n && len(a.waiting) > 0 {
		next := a.waiting[0]
		a.waiting[0] = nil
		a.waiting = a.waiting[1:]
		if next.ctx.Err() != nil {
			continue // cancelled while it waited
		}
		a.startLocked(next)
	}
	// Wake the loop when nothing more is about to complete, or a pool's
	// worth of completions waits; else they wait for the poll to end (at
	// most the tick), so quick works commit in few transactions.
	if a.wake != nil && len(a.done) > 0 && (a.running == 0 || len(a.done) >= a.n) {
		a.wake()
		a.wake = nil
	}
	a.m.set(a.name, a.running, len(a.waiting))
}

func (a *asyncRunner) work(j *asyncJob) (out any) {
	defer func() {
		if v := recover(); v != nil {
			out = &PanicError{Value: v}
		}
	}()
	return a.h.Work(j.ctx, []byte(j.key), j.state)
}

// arm registers cancel as the way to end the loop's poll when a
// completion arrives and reports true, unless completions are already
// waiting (then false: the poll must not wait). disarm ends it.
func (a *asyncRunner) arm(cancel context.CancelFunc) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.done) > 0 {
		return false
	}
	a.wake = cancel
	return true
}

func (a *asyncRunner) disarm() {
	a.mu.Lock()
	a.wake = nil
	a.mu.Unlock()
}

// take returns the completions waiting for the loop.
func (a *asyncRunner) take() []completion {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.done
	a.done = nil
	return d
}

// requeue puts completions back after an aborted transaction.
func (a *asyncRunner) requeue(cs []completion) {
	if len(cs) == 0 {
		return
	}
	a.mu.Lock()
	a.done = append(cs, a.done...)
	a.mu.Unlock()
}

// finished forgets the works whose completions a committed transaction
// handled (or dropped as stale), so the key's next state may ask for the
// same work again.
func (a *asyncRunner) finished(cs []completion) {
	if len(cs) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range cs {
		if c.job.own.jobs[c.job.key] == c.job {
			delete(c.job.own.jobs, c.job.key)
		}
	}
}

// current reports whether c's ownership is still the partition's.
func (a *asyncRunner) current(c completion) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.owners[c.job.part] == c.job.own && c.job.own.jobs[c.job.key] == c.job
}

// backlog returns how many works wait for a free worker.
func (a *asyncRunner) backlog() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiting)
}

// asyncMetrics:
//
//	spine_processor_async_running{processor}  works running
//	spine_processor_async_waiting{processor}  works waiting for a worker
//	spine_processor_paused{processor}         1 while fetching is paused (backpressure)
type asyncMetrics struct {
	running *prometheus.GaugeVec
	waiting *prometheus.GaugeVec
	paused  *prometheus.GaugeVec
	// run and wait are this processor's series of running and waiting.
	run, wait prometheus.Gauge
}

func newAsyncMetrics(reg prometheus.Registerer) (*asyncMetrics, error) {
	m := &asyncMetrics{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spine_processor_async_running",
			Help: "Works of an asynchronous handler (dataplane calls) running on this instance.",
		}, []string{"processor"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spine_processor_async_waiting",
			Help: "Works of an asynchronous handler waiting for a free worker.",
		}, []string{"processor"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spine_processor_paused",
			Help: "1 while the processor has paused fetching its inputs because too many works wait for a worker (backpressure).",
		}, []string{"processor"}),
	}
	var err error
	if m.running, err = promreg.RegisterOrGet(reg, m.running); err != nil {
		return nil, err
	}
	if m.waiting, err = promreg.RegisterOrGet(reg, m.waiting); err != nil {
		return nil, err
	}
	if m.paused, err = promreg.RegisterOrGet(reg, m.paused); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *asyncMetrics) set(_ string, running, waiting int) {
	m.run.Set(float64(running))
	m.wait.Set(float64(waiting))
}

// asyncSession is the loop's side of the runner during one session: it
// pauses fetching while the backlog is over the bound.
type asyncSession struct {
	paused bool
}

// pollContext returns the context of one poll: it ends after the tick or
// as soon as a completion arrives. With completions already waiting the
// poll only takes what is buffered: kgo returns nothing at all, not even
// buffered records, from a poll whose context is already done.
func (p *Processor) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithTimeout(ctx, p.cfg.tick)
	if p.async == nil {
		return pctx, cancel
	}
	if !p.async.arm(cancel) {
		cancel()
		return context.WithTimeout(ctx, time.Millisecond)
	}
	return pctx, func() {
		p.async.disarm()
		cancel()
	}
}

// backpressure pauses fetching the inputs while more works wait for a
// worker than the queue bound, and resumes once they are down to half.
func (p *Processor) backpressure(cl *kgo.Client) {
	if p.async == nil {
		return
	}
	n := p.async.backlog()
	switch {
	case !p.asyncS.paused && n > p.async.queue:
		cl.PauseFetchTopics(topicStrings(p.cfg.inputs)...)
		p.asyncS.paused = true
		p.async.m.paused.WithLabelValues(p.name).Set(1)
		p.cfg.log.Info("paused fetching: works wait for a worker", "waiting", n, "bound", p.async.queue)
	case p.asyncS.paused && n <= p.async.queue/2:
		cl.ResumeFetchTopics(topicStrings(p.cfg.inputs)...)
		p.asyncS.paused = false
		p.async.m.paused.WithLabelValues(p.name).Set(0)
		p.cfg.log.Info("resumed fetching", "waiting", n)
	}
}

// asyncStart resets the runner at the start of a session.
func (p *Processor) asyncStart() {
	if p.async == nil {
		return
	}
	p.async.releaseAll()
	p.asyncS = asyncSession{}
	p.async.m.paused.WithLabelValues(p.name).Set(0)
}

// asyncStop cancels every work at the end of a session and waits for
// their goroutines, bounded by the shutdown timeout: works honour their
// context. Works cut off here run again on the partition's next owner.
func (p *Processor) asyncStop() {
	if p.async == nil {
		return
	}
	p.async.releaseAll()
	if !p.async.wait(p.cfg.shutdownTimeout) {
		p.cfg.log.Error("works did not return within the shutdown timeout after cancellation", "timeout", p.cfg.shutdownTimeout)
	}
}

// completeAll hands the batch's completions to Complete, each with its
// key's current state; a completion whose ownership ended or whose key's
// state names other work is dropped. It returns an error only when a
// transient error persisted (the batch then aborts and the completions are
// requeued).
func (p *Processor) completeAll(ctx, wctx context.Context, b *batch, produce func(*kgo.Record)) error {
	for _, c := range b.completed {
		if err := p.complete(ctx, wctx, b, c, produce); err != nil {
			return err
		}
	}
	return nil
}

func (p *Processor) complete(ctx, wctx context.Context, b *batch, c completion, produce func(*kgo.Record)) error {
	if !p.async.current(c) {
		p.cfg.log.Debug("completion dropped: its work was replaced or its partition moved", "key", c.job.key, "work", c.job.id)
		return nil
	}
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		po, ok := b.ov.part(c.job.part)
		if !ok || po.base != c.job.own.ps {
			return nil
		}
		state, err := b.ov.get(c.job.part, c.job.key)
		if err != nil || state == nil || p.async.h.Pending(state) != c.job.id {
			p.cfg.log.Debug("completion dropped: the key's state names other work", "key", c.job.key, "work", c.job.id)
			return nil
		}
		res, err := safeHandle(func() (Result, error) {
			return p.async.h.Complete(wctx, []byte(c.job.key), state, c.out)
		})
		if err == nil {
			err = p.stage(wctx, b, c.job.part, []byte(c.job.key), res, produce)
		}
		if err == nil {
			b.records++
			return nil
		}
		if code := CodeOf(err); code != "" {
			p.cfg.log.Error("completion rejected; dropped", "key", c.job.key, "code", code, "err", err)
			return nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return &errBlocked{fmt.Errorf("completion of %q: %w", c.job.key, err)}
		}
		if !sleepCtx(ctx, delay) {
			return &errBlocked{err}
		}
		delay *= 2
	}
}

// asyncCommitted forgets the works the committed batch completed and
// launches the work its state writes ask for. Called after the overlay is
// applied.
func (p *Processor) asyncCommitted(b *batch) {
	if p.async == nil {
		return
	}
	p.async.finished(b.completed)
	for part, po := range b.ov.parts {
		if po.base == nil {
			continue
		}
		for k, d := range po.writes {
			val := d.val
			if d.del {
				val = nil
			}
			p.async.launch(part, po.base, k, val)
		}
	}
}

// end ends the transaction. One with no offsets to commit (polled is
// false: it handled only completions of async work or due timers, and no
// records passed over wait for a commit) and that saw no revocation or loss
// since it began is ended with the client's EndTransaction instead of the
// session's End: it commits no offsets, and franz-go (v1.22.3) ends such a
// transaction by holding the session's lock for 500 ms (it cannot know the
// broker has KIP-447 without an offset commit), so End returns 500 ms late
// — once per completion transaction, which throttled the dataplane to two
// transactions a second. What End adds is the revocation check: a
// rebalance that began during the transaction aborts it; rebalances counts
// them (the loop's onRevoked runs for revocations and losses, which the
// session reports to it), and with BlockRebalanceOnPoll none starts while
// the loop is between polls. But the group can complete a rebalance without
// this member: one it held back past the rebalance timeout (a transaction
// stuck behind a broker outage) kicks it out, and its partitions go to
// another member before it hears of it. A transaction with offsets then
// fails their commit (the broker checks the generation); one without has
// no such check, so it aborts when a rebalance was held back (pending,
// counted by OnPartitionsCallbackBlocked) since it began. The fault soak
// (e2e TestSoak) found two members committing the same timer's events.
func (p *Processor) end(ctx context.Context, sess *kgo.GroupTransactSession, commit, polled bool, rebalances, pending int64) (bool, error) {
	if polled || !commit || p.rebalances.Load() != rebalances {
		return sess.End(ctx, kgo.TransactionEndTry(commit))
	}
	if p.pending.Load() != pending {
		_, err := sess.End(ctx, kgo.TryAbort)
		return false, err
	}
	if err := sess.Client().EndTransaction(ctx, kgo.TryCommit); err != nil {
		return false, err
	}
	return true, nil
}
