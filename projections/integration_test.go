package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
	"github.com/spinerun/spine/schemas/thread"
)

// env is a cluster (kfake or the real Kafka of KAFKA_BROKERS) with the
// layout's topics, Spine's own schema registry and the production codec.
type env struct {
	// failing makes the registry answer 503 (an outage).
	failing *atomic.Bool
	srURL   string
	brokers []string
	layout  pipeline.Layout
	codec   *pipeline.SchemaCodec
	cl      *kgo.Client
}

func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	l := pipeline.Layout{Prefix: prefix, Partitions: testPartitions}
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, kadm.NewClient(cl), l, -1); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(string(l.Schemas())),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	failing := &atomic.Bool{}
	h := reg.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error_code":50003,"message":"unavailable (test outage)"}`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	src, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(src, schemas.WithAutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	return &env{failing: failing, srURL: srv.URL, brokers: brokers, layout: l, codec: pipeline.NewSchemaCodec(serde, l), cl: cl}
}

// produce writes the runs' events to their thread topics, encoded with the
// run's contract version, keyed by trace_id on the run's partition.
func (e *env) produce(t *testing.T, runs []runSpec) int { return e.produceTB(t, runs) }

func (e *env) produceTB(t testing.TB, runs []runSpec) int {
	t.Helper()
	var recs []*kgo.Record
	for _, r := range runs {
		for _, ev := range r.events() {
			topic := e.layout.Prefix + ev.src.Topic
			b, err := e.codec.Encode(t.Context(), pipeline.Topic(topic), r.version, ev.ev)
			if err != nil {
				t.Fatalf("encode %s: %v", ev.ev.EventType, err)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Partition: ev.src.Partition, Key: []byte(r.trace), Value: b})
		}
	}
	if err := e.cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func (e *env) runner(t *testing.T) *Runner {
	t.Helper()
	return e.runnerWith(t, nil)
}

// runnerWith is runner with its config changed by change (nil: none).
func (e *env) runnerWith(t *testing.T, change func(*RunnerConfig)) *Runner {
	t.Helper()
	cfg := RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec, TransactionTimeout: 5 * time.Second,
		SweepEvery: time.Nanosecond, Retain: time.Nanosecond} // evict all they can, all the time
	if change != nil {
		change(&cfg)
	}
	r, err := NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// view starts a projections store on the env's topics and the API over it,
// both stopped with the test.
func (e *env) view(t *testing.T) (*Store, *httptest.Server) {
	t.Helper()
	store, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout})
	if err != nil {
		t.Fatal(err)
	}
	spinetest.Start(t, "store", store.Run)
	srv := httptest.NewServer(NewAPI(store).Handler())
	t.Cleanup(srv.Close)
	return store, srv
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// replayEqual replays the thread into fresh folds and fails the test,
// saying what and how they differ, unless they equal the projection topics.
// It returns the replay's text report.
func replayEqual(t *testing.T, e *env, what string) string {
	t.Helper()
	rr, err := Replay(t.Context(), ReplayConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rr.WriteText(&out, 5)
	if !rr.Equal {
		t.Fatalf("%s:\n%s", what, out.String())
	}
	return strings.TrimSpace(out.String())
}

// waitFolded polls the canary report until every one of the baseline's
// and the canary's runs shows its intent, its artifact and its gate checks
// (schema for the baseline, the verdict for the canary): every topic of the
// thread is folded.
func waitFolded(t *testing.T, base string, baseline, canary int64) {
	t.Helper()
	spinetest.Eventually(t, 60*time.Second, func() error {
		var cr CanaryReport
		getJSON(t, base+"/v1/canary", &cr)
		b, c := cr.Baseline, cr.Canary
		if b.Received == baseline && c.Received == canary && b.Artifacts == baseline && c.Artifacts == canary &&
			b.Gates["schema"].Passed == baseline && c.Gates["verdict"].Passed+c.Gates["verdict"].Failed == canary {
			return nil
		}
		return fmt.Errorf("baseline %d/%d %+v canary %d/%d %+v", b.Received, b.Artifacts, b.Gates, c.Received, c.Artifacts, c.Gates)
	})
}

// waitTerminals polls the golden-path API until want runs are terminal.
func waitTerminals(t *testing.T, base string, want int64) GoldenReport {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var rep GoldenReport
		getJSON(t, base+"/v1/stats/golden-path", &rep)
		var n int64
		for _, g := range rep.Groups {
			n += g.Terminals
		}
		if n == want {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d terminal runs in the projections, want %d", n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProjectionsEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	t.Logf("backend %s, prefix %s", kafkatest.Backend(), e.layout.Prefix)
	base, canary := synth(21, 60, "baseline", schemas.V1, 10), synth(22, 40, "canary", schemas.V2, 4)
	e.produce(t, slices.Concat(base[:30], canary[:20]))

	// Poison on the control topic: dead-lettered, not folded.
	poison := [][]byte{{}, {0}, []byte("not avro"), {0, 0, 0, 0x7f, 0xff, 1, 2}}
	type origin struct {
		partition int32
		offset    int64
	}
	poisoned := map[origin][]byte{}
	for i, p := range poison {
		r := &kgo.Record{Topic: string(e.layout.Control()), Partition: int32(i % testPartitions), Key: []byte("poison"), Value: p}
		if err := e.cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		poisoned[origin{r.Partition, r.Offset}] = p
	}

	_, srv := e.view(t)

	// First runner: folds the first half, then stops cleanly.
	stop := spinetest.Start(t, "runner-1", e.runner(t).Run)
	waitTerminals(t, srv.URL, 50)
	stop()

	// The second half arrives while no runner runs; a new runner restores
	// its cells from the compacted topics and goes on.
	e.produce(t, slices.Concat(base[30:], canary[20:]))
	spinetest.Start(t, "runner-2", e.runner(t).Run)
	waitTerminals(t, srv.URL, 100)

	// Terminal events are on the control topic; gate, data plane and
	// artifact cells come from other topics, folded in other transactions
	// and read by the store on their own partitions. So every report is
	// polled until it shows the whole thread (or the deadline says why not).
	spinetest.Eventually(t, 60*time.Second, func() error {
		var rep GoldenReport
		getJSON(t, srv.URL+"/v1/stats/golden-path", &rep)
		byGroup := map[Group]GoldenGroup{}
		for _, g := range rep.Groups {
			byGroup[g.Group] = g
		}
		for g, want := range map[Group]struct{ n, rejected int64 }{
			{"V1", "baseline"}: {60, 6},
			{"V2", "canary"}:   {40, 10},
		} {
			got := byGroup[g]
			if got.Hops["intent.received"].Count != want.n || got.Hops["artifact.delivered"].Count != want.n ||
				got.EndToEnd["rejected"].Count != want.rejected || got.EndToEnd["completed"].Count != want.n-want.rejected {
				return fmt.Errorf("%v: hops %+v end to end %+v", g, got.Hops, got.EndToEnd)
			}
			if p := got.AllEnd.Latency; p.P50 <= 0 || p.P99 < p.P50 {
				return fmt.Errorf("%v: end-to-end percentiles %+v", g, p)
			}
		}

		// One run, merged from every topic it touched.
		var run Run
		if code := getJSON(t, srv.URL+"/v1/runs/"+canary[0].trace, &run); code != 200 {
			return fmt.Errorf("GET run: %d", code)
		}
		if run.Outcome != "rejected" || run.State != "rejected" || run.Route != "canary" || run.Version != "V2" || len(run.Gates) != 3 || len(run.Sources) != 5 {
			return fmt.Errorf("run %+v", run)
		}
		var gates GatesReport
		getJSON(t, srv.URL+"/v1/gates", &gates)
		var perfFails int64
		for _, g := range gates.Groups {
			perfFails += g.Gates["performance"].Failed
		}
		if perfFails != 16 {
			return fmt.Errorf("performance failures = %d, want 16: %+v", perfFails, gates)
		}
		var cr CanaryReport
		getJSON(t, srv.URL+"/v1/canary", &cr)
		if cr.Baseline.Terminal != 60 || cr.Canary.Terminal != 40 || cr.Canary.SuccessRate != 0.75 || cr.Baseline.Artifacts != 60 {
			return fmt.Errorf("canary report: baseline %+v canary %+v", cr.Baseline, cr.Canary)
		}
		var status StoreStatus
		getJSON(t, srv.URL+"/v1/projections/status", &status)
		if !status.Ready || status.Runs != 100 {
			return fmt.Errorf("status %+v, want ready with 100 runs", status)
		}
		return nil
	})
	var apiErr apiError
	if code := getJSON(t, srv.URL+"/v1/runs/nope", &apiErr); code != 404 || apiErr.Code != "not_found" {
		t.Fatalf("unknown run: %d %+v", code, apiErr)
	}
	if code := getJSON(t, srv.URL+"/v1/stats/golden-path?last=banana", &apiErr); code != 400 || apiErr.Code != "bad_query" {
		t.Fatalf("bad query: %d %+v", code, apiErr)
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("dashboard: %v %v", err, resp)
	}
	resp.Body.Close()

	// Every poison record is in the DLQ exactly once, with its reason.
	dl := readAll(t, e, string(e.layout.DLQ()))
	if len(dl) != len(poison) {
		t.Fatalf("DLQ holds %d records, want %d", len(dl), len(poison))
	}
	// Each reads back with pipeline.ParseDeadLetter, as the loop's do.
	for _, r := range dl {
		d, err := pipeline.ParseDeadLetter(r)
		if err != nil {
			t.Errorf("dead letter %d: %v", r.Offset, err)
			continue
		}
		value, ok := poisoned[origin{d.Partition, d.Offset}]
		if d.Topic != e.layout.Control() || !ok || !bytes.Equal(d.Value, value) || string(d.Key) != "poison" {
			t.Errorf("dead letter of %s/%d@%d key %q value %q: no poison record", d.Topic, d.Partition, d.Offset, d.Key, d.Value)
		}
		if d.Code == "" || !strings.Contains(d.Message, d.Code) || d.Processor != ProcessorName || d.Group != e.layout.Group(ProcessorName) {
			t.Errorf("dead letter of %d@%d: code %q message %q processor %q group %q", d.Partition, d.Offset, d.Code, d.Message, d.Processor, d.Group)
		}
	}

	// Replay from offset zero equals the live projections.
	var progress strings.Builder
	rr, err := Replay(t.Context(), ReplayConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec, Progress: &progress, ProgressEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rr.WriteText(&out, 5)
	if !rr.Equal || rr.DeadLettered != int64(len(poison)) || !strings.HasPrefix(out.String(), "equal:") {
		t.Fatalf("replay not equal:\n%s", out.String())
	}
	if !strings.Contains(progress.String(), "records read") {
		t.Errorf("no progress printed: %q", progress.String())
	}
	t.Log(strings.TrimSpace(out.String()))

	// A tampered live cell shows up in the diff.
	var victim string
	for _, r := range readAll(t, e, string(e.layout.Projection(thread.ProjGolden))) {
		if r.Value != nil {
			victim = string(r.Key)
			break
		}
	}
	vk, _ := ParseKey(victim)
	tampered, _ := EncodeCell(&GoldenCell{Events: map[string]int64{"intent.received": 999}})
	if err := e.cl.ProduceSync(t.Context(), &kgo.Record{Topic: string(e.layout.Projection(thread.ProjGolden)), Partition: vk.Source.Partition, Key: []byte(victim), Value: tampered}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rr, err = Replay(t.Context(), ReplayConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	rr.WriteText(&out, 5)
	if rr.Equal || len(rr.Diffs) != 1 || rr.Diffs[0].Key != victim || !strings.Contains(out.String(), "~ "+victim) {
		t.Fatalf("tampered cell not reported:\n%s", out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}

func readAll(t *testing.T, e *env, topic string) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(e.cl)
	ends, starts, err := endOffsets(t.Context(), adm, []string{topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, o := range ends[topic] {
		if starts[topic][p] >= o {
			ends[topic][p] = 0
		}
	}
	var out []*kgo.Record
	if err := readUntil(t.Context(), []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, ends, 30*time.Second, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Several runners share the group and rebalance while events arrive:
// each cell still has one writer, aborted transactions are rolled back by
// restoring from the compacted topics, and a replay comes out equal.
func TestProjectionsRebalanceExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runs := slices.Concat(synth(31, 120, "baseline", schemas.V1, 7), synth(32, 80, "canary", schemas.V2, 5))
	_, srv := e.view(t)

	member := func(id string) func() {
		r, err := NewRunner(RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec,
			InstanceID: id, TransactionTimeout: 5 * time.Second, MaxPollRecords: 50,
			StaticMembership: id != "b", SessionTimeout: 6 * time.Second, SweepEvery: time.Nanosecond, Retain: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		return spinetest.Start(t, "runner-"+id, r.Run)
	}
	stopA := member("a")
	e.produce(t, runs[:50])
	stopB := member("b")
	e.produce(t, runs[50:100])
	stopA()
	e.produce(t, runs[100:150])
	member("c")
	e.produce(t, runs[150:])
	_ = stopB
	waitTerminals(t, srv.URL, int64(len(runs)))

	// Every topic's events are folded, whichever member held them.
	waitFolded(t, srv.URL, 120, 80)
	text := replayEqual(t, e, "replay after rebalances")
	t.Log(text)
}

// A registry outage is transient: the runner retries, dead-letters nothing,
// and folds everything once the registry is back.
func TestProjectionsRegistryOutageIsTransient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runs := synth(71, 40, "baseline", schemas.V1, 0)
	e.produce(t, runs)

	// A fresh serde has no schema cached: every decode needs the registry.
	src, err := sr.NewClient(sr.URLs(e.srURL), sr.HTTPClient(&http.Client{Timeout: 2 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(src)
	if err != nil {
		t.Fatal(err)
	}
	e.failing.Store(true)
	r, err := NewRunner(RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: pipeline.NewSchemaCodec(serde, e.layout), TransactionTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	spinetest.Start(t, "runner", r.Run)
	store, srv := e.view(t)

	// During the outage the runner tries (and aborts), nothing is folded
	// and nothing dead-lettered.
	spinetest.Eventually(t, 30*time.Second, func() error {
		var m dto.Metric
		if err := r.metrics.txns.WithLabelValues("retried").Write(&m); err != nil {
			return err
		}
		if m.GetCounter().GetValue() == 0 {
			return errors.New("the runner did not try (and abort) while the registry was down")
		}
		return nil
	})
	if st := store.Status(); st.Runs != 0 {
		t.Fatalf("folded %d runs while the registry was down", st.Runs)
	}
	e.failing.Store(false)
	waitTerminals(t, srv.URL, int64(len(runs)))
	if dl := readAll(t, e, string(e.layout.DLQ())); len(dl) != 0 {
		t.Fatalf("%d records dead-lettered during a registry outage", len(dl))
	}
	replayEqual(t, e, "replay after the outage")
}

// While the stack keeps publishing (here: canary analyses every 20ms),
// replay still compares every source partition that holds still, lists the
// moving ones, and is fully equal once the stack is quiet.
func TestReplayWhileMoving(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runs := synth(81, 60, "canary", schemas.V2, 4)
	e.produce(t, runs)
	spinetest.Start(t, "runner", e.runner(t).Run)
	_, srv := e.view(t)
	waitTerminals(t, srv.URL, int64(len(runs)))

	analysis := func(i int) *kgo.Record {
		ev := &schemas.RuntimeEvent{EventID: fmt.Sprintf("canary-%d", i), TraceID: "canary-analysis", SpanID: "s", Actor: "canary", Intent: "analysis",
			SchemaVersion: schemas.V2, Timestamp: t0.Add(time.Duration(i) * time.Second), Phase: schemas.PhaseGate, EventType: "gate.passed", State: "step",
			Route: "canary", Gate: &schemas.GateOutcome{Name: "canary", Passed: true, Reason: "step"}}
		b, err := e.codec.Encode(t.Context(), e.layout.Gate("canary"), schemas.V2, ev)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: string(e.layout.Gate("canary")), Partition: 0, Key: []byte(ev.TraceID), Value: b}
	}
	stopPub := spinetest.Start(t, "publisher", func(ctx context.Context) error {
		for i := 0; ; i++ {
			if err := e.cl.ProduceSync(ctx, analysis(i)).FirstErr(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	cfg := ReplayConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec}
	rr, err := Replay(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rr.WriteText(&out, 5)
	if !rr.Equal {
		t.Fatalf("replay while moving:\n%s", out.String())
	}
	for _, s := range rr.Skipped {
		if !strings.HasPrefix(s, "gate.canary/") {
			t.Fatalf("skipped %s, which did not move", s)
		}
	}
	t.Log(strings.TrimSpace(out.String()))

	stopPub()
	// Once the runner has caught up, nothing moves and nothing is skipped.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rr, err = Replay(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rr.Equal && len(rr.Skipped) == 0 {
			break
		}
		if time.Now().After(deadline) {
			out.Reset()
			rr.WriteText(&out, 5)
			t.Fatalf("replay after the stack went quiet:\n%s", out.String())
		}
	}
}

// Finished runs and old windows leave the runner's memory, and an event
// for one of them (a stale result, a late gate) is still folded exactly:
// a finished run's part spilled within Retain is decoded back from its
// encoding; past Retain its source partition is restored first. Also when
// the runner has forgotten which keys it evicted (ForgetEvicted): the run
// started before what it forgot.
func TestProjectionsLateEventsAfterEviction(t *testing.T) {
	t.Parallel()
	t.Run("spilled", func(t *testing.T) {
		t.Parallel()
		// Retain spans the runs: the first run's parts are spilled, not
		// dropped, when its late events come.
		lateEventsAfterEviction(t, 400, func(c *RunnerConfig) { c.Retain = time.Hour }, true)
	})
	t.Run("remembered", func(t *testing.T) {
		t.Parallel()
		lateEventsAfterEviction(t, 400, nil, false) // ~15s of runs: two windows
	})
	t.Run("forgotten", func(t *testing.T) {
		t.Parallel()
		// ~33s of runs: four windows, so each source drops a generation.
		// Small batches, so each source sweeps as its windows move on.
		r := lateEventsAfterEviction(t, 900, func(c *RunnerConfig) { c.ForgetEvicted, c.MaxPollRecords = time.Nanosecond, 100 }, false)
		if counterValue(t, r.metrics.forgotten) == 0 {
			t.Fatal("no eviction was forgotten; the test proves nothing")
		}
	})
}

// lateEventsAfterEviction folds n runs, then two late events of the first
// one, and checks them folded exactly: decoded back from the spill
// (spilled) or after restoring the run's source (not spilled).
func lateEventsAfterEviction(t *testing.T, n int, change func(*RunnerConfig), spilled bool) *Runner {
	e := newEnv(t)
	runs := synth(91, n, "baseline", schemas.V1, 8)
	e.produce(t, runs)
	r := e.runnerWith(t, change)
	spinetest.Start(t, "runner", r.Run)
	store, srv := e.view(t)
	waitTerminals(t, srv.URL, int64(len(runs)))

	// Late events: a stale dataplane result and an illegal transition for
	// the first run (rejected, so finished and evicted), in its old window.
	first := runs[0]
	p := partOf(first.trace)
	late := func(topic string, typ schemas.EventType, state string, ms int64) *kgo.Record {
		ev := &schemas.RuntimeEvent{EventID: first.trace + "-late-" + string(typ), TraceID: first.trace, SpanID: "late", Actor: "a", Intent: "summarize",
			SchemaVersion: schemas.V1, Timestamp: first.start.Add(time.Duration(ms) * time.Millisecond), RunStarted: first.start,
			Phase: schemas.PhaseData, EventType: typ, State: state}
		if topic == "spine.control" {
			ev.Phase = schemas.PhaseControl
		}
		b, err := e.codec.Encode(t.Context(), pipeline.Topic(e.layout.Prefix+topic), schemas.V1, ev)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: e.layout.Prefix + topic, Partition: p, Key: []byte(first.trace), Value: b}
	}
	if err := e.cl.ProduceSync(t.Context(),
		late("spine.dataplane", "dataplane.failed", "failed", 500),
		late("spine.control", "run.illegal_transition", "completed", 501),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		run, err := store.RunStatus(first.trace)
		if err == nil && run.Illegal == 1 && run.Hops["dataplane.failed"].Equal(first.start.Add(500*time.Millisecond)) {
			// Nothing of the part was lost: its earlier hops are there.
			if run.Outcome != "rejected" || run.Hops["artifact.delivered"].IsZero() || run.Events != int64(len(first.events()))+2 {
				t.Fatalf("late events folded into a fresh part: %+v", run)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late events not folded: %+v (%v)", run, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	restores, unspilled := counterValue(t, r.metrics.pinned), counterValue(t, r.metrics.unspilled)
	switch {
	case counterValue(t, r.metrics.evictions) == 0:
		t.Fatal("nothing was evicted")
	case spilled && (unspilled == 0 || restores != 0):
		t.Fatalf("late events for spilled parts: %v decoded back, %v restores; want some and none", unspilled, restores)
	case !spilled && restores == 0:
		t.Fatal("the late events did not hit evicted cells; the test proves nothing")
	}
	replayEqual(t, e, "replay after late events")
	return r
}
