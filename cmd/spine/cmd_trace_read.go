package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// The margins of a run's read around the window the view gives: thread
// records carry their producer's clock, so a record may be stamped a little
// before the run's start or after its end; an intent is stamped when it was
// sent, and may wait in spine.intents before the orchestrator starts its
// run, so the intents partition is read from further back, up to the
// run's intent (a producer's retry of the same intent, later, is not read).
const (
	traceSlack          = 2 * time.Second
	traceIntentLookback = 5 * time.Minute
)

// runWindow is what the projections view knows of a run: when it started
// and, once it ended, when. The zero runWindow knows nothing.
type runWindow struct {
	From, To time.Time
	// Lookback is how much further back than From the intents partition
	// is read (0: traceIntentLookback, for a window of the view).
	Lookback time.Duration
	// Source says where the window came from, for the read's report.
	Source string
}

// idWindow is the window a trace id of Spine's minting gives (its time
// first, see thread.TraceTime): from that second, to the run's terminal
// event. The intent was stamped when the id was minted or just after, so
// the intents partition needs only the slack. No window (zero) for another
// kind of id; why is in the zero window's Source, after because.
func idWindow(traceID string, now time.Time, because string) runWindow {
	at, ok := thread.TraceTime(traceID, now)
	if !ok {
		return runWindow{Source: because}
	}
	return runWindow{From: at, Lookback: traceSlack, Source: "the time in the trace id, " + at.Format(time.RFC3339) + " (" + because + ")"}
}

// lookupRun asks the projections API at api for the run's window; a view
// that does not answer, or does not know the run, gives the zero window
// (with the reason in Source).
func lookupRun(ctx context.Context, api, traceID string) runWindow {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := strings.TrimSuffix(api, "/") + "/v1/runs/" + url.PathEscape(traceID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return runWindow{Source: err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return runWindow{Source: fmt.Sprintf("projections API %s unreachable", api)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return runWindow{Source: fmt.Sprintf("projections API %s answered %s", api, resp.Status)}
	}
	var run struct {
		TraceID    string               `json:"trace_id"`
		RunStarted time.Time            `json:"run_started"`
		OutcomeAt  time.Time            `json:"outcome_at"`
		Hops       map[string]time.Time `json:"hops"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&run); err != nil || run.TraceID != traceID {
		return runWindow{Source: fmt.Sprintf("projections API %s gave no run %s", api, traceID)}
	}
	w := runWindow{From: run.RunStarted, To: run.OutcomeAt, Source: "the projections view at " + api}
	for _, at := range run.Hops {
		if !at.IsZero() && (w.From.IsZero() || at.Before(w.From)) {
			w.From = at
		}
	}
	return w
}

// partRead is the read of one topic-partition: [From, Stop).
type partRead struct {
	Topic       string
	Partition   int32
	From, Stop  int64
	Read, Match int
	// first ends the read at the first record of the trace (its intent).
	first bool
	done  bool
}

// traceRead is what readRun read, printed on stderr.
type traceRead struct {
	trace  string
	win    runWindow
	parts  []*partRead
	took   time.Duration
	stopAt time.Time // the terminal event's time, when the read found it
}

func (t *traceRead) String() string {
	var read, match int
	var at []string
	for _, p := range t.parts {
		read += p.Read
		match += p.Match
		if p.Stop > p.From {
			at = append(at, fmt.Sprintf("%s/%d@%d..%d", p.Topic, p.Partition, p.From, p.Stop))
		}
	}
	how := "from the partitions' start (no run window: " + t.win.Source + ")"
	if !t.win.From.IsZero() {
		how = "run window from " + t.win.Source
	}
	return fmt.Sprintf("read %d records (%d of trace %s) from %d topic-partitions in %s, %s: %s",
		read, match, t.trace, len(at), t.took.Round(time.Millisecond), how, strings.Join(at, " "))
}

// partitionOf is the partition Kafka's default partitioner (murmur2, as
// kgo's and the Java client's) gives key among n partitions: where every
// producer of the thread wrote the run's records.
func partitionOf(key []byte, topic string, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, n))
}

// isTerminal reports whether r is a run's terminal event.
func isTerminal(r consumedRecord) bool {
	ev, ok := r.Value.(*schemas.RuntimeEvent)
	if !ok {
		return false
	}
	switch ev.EventType {
	case thread.RunCompleted, thread.RunRejected, thread.RunFailed, thread.RunTimedOut:
		return true
	}
	return false
}

// readRun reads the records of trace on topics: on each topic only the
// partition the trace id hashes to; with a window, from the first offset at
// its start (less the margins) to the first offset after its end (plus the
// margin) or the partition's end; without one, from the partition's start,
// ending each partition once it passes the run's terminal event (plus the
// margin); intents (one of topics) is read from further back, up to the
// trace's first record there. decode turns a record of the trace into what is returned.
func readRun(ctx context.Context, opts []kgo.Opt, topics []string, intents, trace string, win runWindow, decode func(*kgo.Record) consumedRecord) ([]consumedRecord, *traceRead, error) {
	began := time.Now()
	key := []byte(trace)
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(lctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets (is Kafka reachable?): %w", err)
	}
	starts, err := adm.ListStartOffsets(lctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets: %w", err)
	}
	after := func(at time.Time) (kadm.ListedOffsets, error) {
		return adm.ListOffsetsAfterMilli(lctx, at.UnixMilli(), topics...)
	}
	var fromRun, fromIntent, stopAfter kadm.ListedOffsets
	if !win.From.IsZero() {
		if fromRun, err = after(win.From.Add(-traceSlack)); err == nil {
			lookback := win.Lookback
			if lookback <= 0 {
				lookback = traceIntentLookback
			}
			fromIntent, err = after(win.From.Add(-lookback))
		}
		if err == nil && !win.To.IsZero() {
			stopAfter, err = after(win.To.Add(traceSlack))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list offsets by time: %w", err)
		}
	}
	tr := &traceRead{trace: trace, win: win}
	assign := map[string]map[int32]kgo.Offset{}
	byTP := map[string]map[int32]*partRead{}
	for _, t := range topics {
		n := len(ends[t])
		if n == 0 {
			continue
		}
		p := partitionOf(key, t, n)
		end, ok := ends.Lookup(t, p)
		if !ok || end.Err != nil {
			continue
		}
		pr := &partRead{Topic: t, Partition: p, Stop: end.Offset}
		if s, ok := starts.Lookup(t, p); ok {
			pr.From = s.Offset
		}
		from := fromRun
		if t == intents {
			from, pr.first = fromIntent, true
		}
		if o, ok := from.Lookup(t, p); ok && o.Err == nil && o.Offset > pr.From {
			pr.From = min(o.Offset, pr.Stop)
		}
		if o, ok := stopAfter.Lookup(t, p); ok && o.Err == nil && o.Offset >= 0 {
			pr.Stop = min(pr.Stop, o.Offset)
		}
		tr.parts = append(tr.parts, pr)
		if pr.Stop <= pr.From {
			continue
		}
		if assign[t] == nil {
			assign[t] = map[int32]kgo.Offset{}
			byTP[t] = map[int32]*partRead{}
		}
		assign[t][p] = kgo.NewOffset().At(pr.From)
		byTP[t][p] = pr
	}
	slices.SortFunc(tr.parts, func(a, b *partRead) int { return strings.Compare(a.Topic, b.Topic) })
	var out []consumedRecord
	if len(assign) > 0 {
		if out, err = pollRun(ctx, opts, assign, byTP, key, win, tr, decode); err != nil {
			return nil, nil, err
		}
	}
	tr.took = time.Since(began)
	return out, tr, nil
}

// pollRun consumes the assigned partitions until each is done.
func pollRun(ctx context.Context, opts []kgo.Opt, assign map[string]map[int32]kgo.Offset, byTP map[string]map[int32]*partRead,
	key []byte, win runWindow, tr *traceRead, decode func(*kgo.Record) consumedRecord) ([]consumedRecord, error) {
	// Control records are kept so that a partition whose last offset is a
	// transaction marker is seen to reach its end.
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	left := 0
	for _, ps := range byTP {
		left += len(ps)
	}
	// Without a window, a partition is done once it passes the terminal
	// event's time plus the margin.
	var stopAt time.Time
	var out []consumedRecord
	for left > 0 {
		// An idle poll ends the read (a partition whose end the read
		// cannot reach).
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		idle := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if idle {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			pr := byTP[r.Topic][r.Partition]
			if pr == nil || pr.done {
				return
			}
			if !r.Attrs.IsControl() && r.Offset < pr.Stop && !(win.To.IsZero() && !stopAt.IsZero() && r.Timestamp.After(stopAt)) {
				pr.Read++
				if string(r.Key) == string(key) {
					pr.Match++
					c := decode(r)
					out = append(out, c)
					if isTerminal(c) && win.To.IsZero() && stopAt.IsZero() {
						stopAt = r.Timestamp.Add(traceSlack)
						tr.stopAt = r.Timestamp
					}
				}
			}
			if r.Offset+1 >= pr.Stop || (!stopAt.IsZero() && r.Timestamp.After(stopAt)) || (pr.first && pr.Match > 0) {
				pr.done = true
				pr.Stop = min(pr.Stop, r.Offset+1)
				left--
			}
		})
	}
	return out, nil
}
