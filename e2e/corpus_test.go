package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
	"github.com/spinerun/spine/verify"
)

// TestCorpusDeterministic: the corpus is a function of its seed: the same
// seed gives the same records, another seed other ones, and a corpus of a
// thousand records holds more than twenty kinds at every door.
func TestCorpusDeterministic(t *testing.T) {
	t.Parallel()
	env := corpusEnv{layout: pipeline.Layout{Prefix: "p.", Partitions: 6}, intentV1: 1, intentV2: 2, eventV1: 3, intentSubj: "p.spine.intents-value",
		encode:   func(_ pipeline.Topic, ev *schemas.RuntimeEvent) []byte { return []byte(ev.EventID) },
		victims:  []victim{{trace: "v", started: &schemas.RuntimeEvent{EventID: "s"}, verdict: &schemas.RuntimeEvent{EventID: "v", Gate: &schemas.GateOutcome{Passed: true}}}},
		inFlight: []string{"h"},
		now:      time.Unix(1_800_000_000, 0), orchestrator: orchestrator.Name}
	key := func(c []*badRecord) string {
		var b strings.Builder
		for _, r := range c {
			fmt.Fprintf(&b, "%s|%s|%q|%x|%x|%q|%q\n", r.door, r.kind, r.key, sha256.Sum256(r.value), sha256.Sum256(r.body), r.args, r.file)
		}
		return b.String()
	}
	a, b, c := genCorpus(7, 1000, env), genCorpus(7, 1000, env), genCorpus(8, 1000, env)
	if key(a) != key(b) {
		ka, kb := strings.Split(key(a), "\n"), strings.Split(key(b), "\n")
		for i := range ka {
			if ka[i] != kb[i] {
				t.Fatalf("the same seed gave two corpora: record %d:\n%.300s\n%.300s", i, ka[i], kb[i])
			}
		}
	}
	if key(a) == key(c) {
		t.Fatal("seeds 7 and 8 gave the same corpus")
	}
	doors := map[door]int{}
	for _, r := range a {
		doors[r.door]++
	}
	if len(a) < 1000 || len(corpusKindNames(a)) < 20 || len(doors) != 9 {
		t.Fatalf("%d records of %d kinds at %d doors (%v)", len(a), len(corpusKindNames(a)), len(doors), doors)
	}
}

// startIngress serves the stack's POST /v1/intents (stack part ingress) on
// a local server and returns its URL.
func (s *rig) startIngress(tb testing.TB) string {
	tb.Helper()
	st, err := stack.Build(stack.Env{Config: s.cfg, Brokers: s.brokers, RegistryURL: s.registryURL, Log: s.log, Metrics: s.reg, Instance: "e2e"}, stack.Ingress)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: stack.Ingress, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- st.Run(ctx) }()
	s.mu.Lock()
	s.procs = append(s.procs, r)
	s.mu.Unlock()
	srv := httptest.NewServer(st.Routes)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// TestBadInputCorpus throws a seeded corpus of bad records (CORPUS_SEED,
// default 1; CORPUS_RECORDS, default 1000) at every door of a running
// stack (the orchestrator, dataplane, gates, drift, projections and the
// HTTP ingress on the embedded broker, Spine's registry over HTTP): the
// intents topic, the internal topics (spine.control, spine.dataplane,
// gate.verdict: bytes no one can read, events of runs that do not exist,
// forged, replayed and out-of-order events of runs that ended), POST
// /v1/intents, the registry's REST API and the flags and policy commands,
// interleaved with good intents over Kafka and HTTP. Each bad record is
// dead-lettered once by each processor that reads it, with its reason and
// original bytes; or refused by the stateflow and recorded on its run's
// thread as run.illegal_transition (the run keeps its one outcome); or
// deduplicated; or answered 4xx naming the field, or failed as a command
// naming the setting. Every good run ends by its verdict; no processor
// session restarts; `spine verify` finds every run whole and names only
// the forgeries themselves (an exact replay is a duplicated event_id on
// the thread; a forged verdict disagrees with its gate events).
func TestBadInputCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	seed := uint64(envInt("CORPUS_SEED", 1))
	nBad := envInt("CORPUS_RECORDS", 1000)
	s := newStack(t, nil, map[string]string{"SPINE_EXEC_TIMEOUT": "10m", "SPINE_GATE_TIMEOUT": "10m",
		"SPINE_INGRESS_RATE": "100000", "SPINE_INGRESS_BURST": "100000"})
	committed := s.collectSkipping(t, true, "poison-")
	// The dataplane calls an OpenAI-compatible server, which holds the
	// calls of the "held-" runs until release: runs in flight, for stale
	// inputs.
	release := make(chan struct{})
	var releaseOnce sync.Once
	chat := newChatServer(t, 0, func(in string) bool {
		if strings.Contains(in, "held-") {
			<-release
		}
		return false
	})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	for _, name := range stack.ThreadProcessors {
		if name != stack.Dataplane {
			s.start(name, "e2e", nil)
		}
	}
	s.startDataplane("e2e", openAIExecutor(t, chat.URL))
	s.start(stack.Projections, "e2e", nil)
	ingressURL := s.startIngress(t)
	ctx := t.Context()
	l := s.layout
	serde := s.codec.Serde()
	id := func(topic pipeline.Topic, c schemas.Contract, v schemas.ContractVersion) int {
		n, err := serde.SchemaID(ctx, schemas.ValueSubject(string(topic)), c, v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	readers := map[pipeline.Topic][]string{
		l.Intents():                {orchestrator.Name},
		l.Control():                {thread.Dataplane},
		l.Dataplane():              {orchestrator.Name, thread.Gatekeeper},
		l.Gate(thread.VerdictGate): {orchestrator.Name},
	}
	for _, topic := range projections.SourceTopics(l) {
		if _, ok := readers[topic]; ok {
			readers[topic] = append(readers[topic], thread.Projections)
		}
	}

	// Runs that end first (the forged events imitate theirs), and runs
	// whose call is held, in state executing.
	const nVictims, nHeld = 24, 8
	s.produce(ctx, intents("victim", nVictims))
	held := intents("held", nHeld)
	s.produce(ctx, held)
	executing := func(byTrace map[string][]event, tr string) bool {
		return slices.ContainsFunc(byTrace[tr], func(e event) bool { return e.ev.EventType == thread.DataplaneStarted })
	}
	waitFor(t, 120*time.Second, func() bool {
		_, byTrace := committed.snapshot()
		for _, o := range held {
			if !executing(byTrace, string(o.Key)) {
				return false
			}
		}
		return committed.terminalCount() >= nVictims
	}, func() string {
		return fmt.Sprintf("%d victim runs to end and %d held runs to execute (have %d ended)", nVictims, nHeld, committed.terminalCount())
	})
	_, byTrace := committed.snapshot()
	var inFlight []string
	for _, o := range held {
		inFlight = append(inFlight, string(o.Key))
	}
	var victims []victim
	for i := range nVictims {
		v := victim{trace: fmt.Sprintf("victim-%06d", i)}
		for _, e := range byTrace[v.trace] {
			switch e.ev.EventType {
			case thread.DataplaneStarted:
				v.started = e.ev
			case thread.GateVerdict:
				v.verdict = e.ev
			}
		}
		if v.started == nil || v.verdict == nil {
			t.Fatalf("victim %s: no dataplane.started or gate.verdict in %v", v.trace, byTrace[v.trace])
		}
		victims = append(victims, v)
	}
	illegalBefore := committed.countType(thread.RunIllegal)

	env := corpusEnv{layout: l, intentV1: id(l.Intents(), schemas.ContractIntent, schemas.V1), intentV2: id(l.Intents(), schemas.ContractIntent, schemas.V2),
		eventV1: id(l.Control(), schemas.ContractRuntimeEvent, schemas.V1), intentSubj: schemas.ValueSubject(string(l.Intents())),
		encode: func(topic pipeline.Topic, ev *schemas.RuntimeEvent) []byte {
			b, err := s.codec.Encode(ctx, topic, ev.SchemaVersion, ev)
			if err != nil {
				t.Fatalf("encode %s: %v", ev.EventType, err)
			}
			return b
		},
		victims: victims, inFlight: inFlight, orchestrator: orchestrator.Name, readers: readers, now: time.Now()}
	corpus := genCorpus(seed, nBad, env)
	kinds := corpusKindNames(corpus)
	regVersions := s.registryGet(t, "/subjects/"+env.intentSubj+"/versions")

	// Good intents: over Kafka, interleaved with the Kafka records of the
	// corpus in four rounds, and over HTTP between the bad requests.
	const nGood, nHTTP = 200, 40
	good := intents("corpus-good", nGood)
	traces := map[string]bool{}
	for _, o := range append(slices.Clone(good), held...) {
		traces[string(o.Key)] = true
	}
	p, err := pipeline.NewProducer(s.codec, s.kopts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var onKafka, onHTTP []*badRecord
	for _, b := range corpus {
		if b.topic != "" {
			onKafka = append(onKafka, b)
		} else {
			onHTTP = append(onHTTP, b)
		}
	}
	const rounds = 4
	for i := range rounds {
		s.produce(ctx, good[i*nGood/rounds:(i+1)*nGood/rounds])
		batch := onKafka[i*len(onKafka)/rounds : (i+1)*len(onKafka)/rounds]
		recs := make([]*kgo.Record, len(batch))
		for j, b := range batch {
			recs[j] = &kgo.Record{Topic: string(b.topic), Key: b.key, Value: b.value, Headers: b.headers}
		}
		res, err := p.ProduceRaw(ctx, recs...)
		if err != nil {
			t.Fatalf("produce the corpus: %v", err)
		}
		for j, r := range res {
			batch[j].partition, batch[j].offset = r.Partition, r.Offset
		}
	}
	// Duplicate intents: the same intents again, and new intent ids on
	// known runs; deduplicated, never dead-lettered.
	dups := intents("corpus-good", 40)
	for i := range dups {
		if i%2 == 1 {
			dups[i].Value.(*schemas.Intent).IntentID += "-retry"
		}
	}
	s.produce(ctx, dups)

	// The stale inputs reach the held runs while their calls are in
	// flight; then the calls answer and the runs go on.
	nStale, nSkipped := 0, 0
	for _, b := range onKafka {
		switch b.want {
		case stale:
			nStale++
		case skipped:
			nSkipped++
		}
	}
	waitFor(t, 120*time.Second, func() bool { return committed.countType(thread.RunStale) >= nStale },
		func() string {
			return fmt.Sprintf("%d stale events recorded (have %d)", nStale, committed.countType(thread.RunStale))
		})
	releaseOnce.Do(func() { close(release) })

	httpTraces, replayed := s.throwHTTP(t, ingressURL, onHTTP, nHTTP)
	for _, tr := range httpTraces {
		traces[tr] = true
	}

	// Wait for every good run to end and every dead letter to land.
	wantDL := 0
	for _, b := range onKafka {
		if b.want == deadLettered {
			wantDL += len(b.readers)
		}
	}
	allGood := nVictims + len(traces)
	waitFor(t, 180*time.Second, func() bool { return committed.terminalCount() >= allGood && committed.dlqLen() >= wantDL },
		func() string {
			return fmt.Sprintf("%d runs and %d dead letters (have %d and %d)", allGood, wantDL, committed.terminalCount(), committed.dlqLen())
		})
	nRefused := 0
	for _, b := range onKafka {
		if b.want == refused {
			nRefused++
		}
	}
	waitFor(t, 60*time.Second, func() bool { return committed.countType(thread.RunIllegal)-illegalBefore >= nRefused },
		func() string {
			return fmt.Sprintf("%d refusals (have %d)", nRefused, committed.countType(thread.RunIllegal)-illegalBefore)
		})
	committed.settle(2 * time.Second)

	// Dead letters: once per reader, with the reason and original bytes.
	type pos struct {
		topic     pipeline.Topic
		partition int32
		offset    int64
	}
	committed.mu.Lock()
	dlq := append([]*kgo.Record(nil), committed.dlq...)
	committed.mu.Unlock()
	got := map[pos][]pipeline.DeadLetter{}
	for _, r := range dlq {
		d, err := pipeline.ParseDeadLetter(r)
		if err != nil {
			t.Errorf("dead letter %d: %v", r.Offset, err)
			continue
		}
		got[pos{d.Topic, d.Partition, d.Offset}] = append(got[pos{d.Topic, d.Partition, d.Offset}], d)
	}
	nDead := 0
	for _, b := range onKafka {
		ds := got[pos{b.topic, b.partition, b.offset}]
		delete(got, pos{b.topic, b.partition, b.offset})
		if b.want != deadLettered {
			if len(ds) != 0 {
				t.Errorf("%s (%s): dead-lettered by %d processors, want none (%s)", b.kind, b.key, len(ds), ds[0].Code)
			}
			continue
		}
		var by []string
		for _, d := range ds {
			by = append(by, d.Processor)
			if d.Code != b.code || !strings.Contains(d.Message, b.code) {
				t.Errorf("%s (%s) by %s: code %q (%s), want %q", b.kind, b.key, d.Processor, d.Code, d.Message, b.code)
			}
			if !bytes.Equal(d.Value, b.value) || !bytes.Equal(d.Key, b.key) {
				t.Errorf("%s (%s) by %s: original bytes changed", b.kind, b.key, d.Processor)
			}
			if d.Group != l.Group(d.Processor) {
				t.Errorf("%s by %s in group %q", b.kind, d.Processor, d.Group)
			}
		}
		if slices.Sort(by); !slices.Equal(by, slices.Sorted(slices.Values(b.readers))) {
			t.Errorf("%s (%s/%d@%d): dead-lettered by %v, want once by each of %v", b.kind, b.topic, b.partition, b.offset, by, b.readers)
			continue
		}
		nDead++
	}
	for at, ds := range got {
		t.Errorf("dead letter of %s/%d@%d (%s by %s) is of no corpus record", at.topic, at.partition, at.offset, ds[0].Code, ds[0].Processor)
	}

	// Refusals: each forged event of a run that ended is one
	// run.illegal_transition on that run; the run keeps its one outcome.
	_, byTrace = committed.snapshot()
	forgedOn, staleOn := map[string]int{}, map[string]int{}
	for _, b := range onKafka {
		switch b.want {
		case refused:
			forgedOn[b.victim]++
		case stale:
			staleOn[b.victim]++
		}
	}
	staleN := 0
	for _, tr := range inFlight {
		n := 0
		for _, e := range byTrace[tr] {
			if e.ev.EventType == thread.RunStale {
				n++
			}
		}
		if n != staleOn[tr] {
			t.Errorf("run %s: %d stale events recorded for %d stale inputs", tr, n, staleOn[tr])
			continue
		}
		staleN += n
	}
	refusedN := 0
	for _, v := range victims {
		var illegal, ends int
		for _, e := range byTrace[v.trace] {
			if e.ev.EventType == thread.RunIllegal {
				illegal++
			}
			if terminalTypes[e.ev.EventType] {
				ends++
			}
		}
		if illegal != forgedOn[v.trace] || ends != 1 {
			t.Errorf("run %s: %d refusals and %d terminals for %d forged events, want %d and 1", v.trace, illegal, ends, forgedOn[v.trace], forgedOn[v.trace])
			continue
		}
		refusedN += illegal
	}

	// Every good run ended by its verdict, once.
	completed := 0
	for tr := range traces {
		var ends int
		var end schemas.EventType
		for _, e := range byTrace[tr] {
			if terminalTypes[e.ev.EventType] {
				ends++
				end = e.ev.EventType
			}
		}
		if ends != 1 || end != thread.RunCompleted && end != thread.RunRejected {
			t.Errorf("good run %s: %d terminals, the last %q", tr, ends, end)
			continue
		}
		completed++
	}

	// The HTTP, registry and command doors.
	nRejected := 0
	for _, b := range onHTTP {
		if b.want == rejected && b.door != doorFlags && b.door != doorPolicy {
			nRejected++ // checked by throwHTTP
		}
	}
	if after := s.registryGet(t, "/subjects/"+env.intentSubj+"/versions"); after != regVersions {
		t.Errorf("the registry's %s versions went from %s to %s", env.intentSubj, regVersions, after)
	}
	nRejected += s.throwCommands(t, onHTTP)
	adm := kadm.NewClient(kafkatest.Client(t, s.brokers))
	ends, err := adm.ListEndOffsets(ctx, string(l.Flags()))
	if err != nil {
		t.Fatal(err)
	}
	var flagRecords int64
	ends.Each(func(o kadm.ListedOffset) { flagRecords += o.Offset })
	if flagRecords != int64(nSkipped) {
		t.Errorf("%s holds %d records, the corpus wrote %d: a refused flag change reached it", l.Flags(), flagRecords, nSkipped)
	}
	// The projections' flag store skipped each bad flag record once, and
	// applied none.
	equalCounts(t, 30*time.Second, func() []countPair {
		return []countPair{{"spine_flag_invalid_records_total", metricCounts(t, s.reg, "spine_flag_invalid_records_total"), map[string]float64{"": float64(nSkipped)}}}
	})
	if v := metricCounts(t, s.reg, "spine_flag_changes_total", "flag")["v2_rollout"]; v != 0 {
		t.Errorf("%v changes of v2_rollout applied", v)
	}

	// No processor session restarted, none is blocked, none retried.
	if r := s.logs.restarts.Load(); r != 0 {
		t.Errorf("%d processor sessions restarted", r)
	}
	if v := metricCounts(t, s.reg, "spine_processor_blocked")[""]; v != 0 {
		t.Errorf("a processor is blocked")
	}
	if v := metricCounts(t, s.reg, "spine_processor_records_total", "outcome")["retry"]; v != 0 {
		t.Errorf("%v records retried as transient", v)
	}
	// And every part still runs (drift, off by default, has nothing to run).
	s.mu.Lock()
	for _, r := range s.procs {
		select {
		case err := <-r.done:
			if r.name != stack.Drift || s.cfg.Drift.Mode != gates.DriftOff || err != nil {
				t.Errorf("%s stopped: %v", r.name, err)
			}
			r.done <- err // for its stop
		default:
		}
	}
	s.mu.Unlock()

	// spine verify: every run whole and the thread clean. The records the
	// corpus wrote to internal topics were written outside a transaction,
	// as every forgery or replay from outside is (each processor writes in
	// one): verify counts them as foreign and judges what the processors
	// did with them.
	rep := s.verifyReport(t)
	wantForeign := 0
	for _, b := range onKafka {
		if b.topic == s.layout.Control() || b.topic == s.layout.Dataplane() || strings.HasPrefix(string(b.topic), string(s.layout.Gate(""))) {
			wantForeign++
		}
	}
	foreign := 0
	for _, n := range rep.Foreign {
		foreign += n
	}
	if len(rep.Counts) != 0 || foreign != wantForeign {
		t.Errorf("spine verify: anomalies %v, foreign %v (%d), want none and %d foreign", rep.Counts, rep.Foreign, foreign, wantForeign)
	}
	for _, a := range rep.Anomalies {
		t.Errorf("spine verify: %s on %s at %s: %s", a.Kind, a.TraceID, a.Where, a.Detail)
	}
	if rep.Refused != refusedN+staleN || rep.Projections == nil || rep.Projections.Diffs != 0 {
		t.Errorf("spine verify: %d refusals (want %d), projections %+v %s", rep.Refused, refusedN+staleN, rep.Projections, rep.ProjectionsNote)
	}

	doors := map[door]int{}
	for _, b := range corpus {
		doors[b.door]++
	}
	t.Logf("corpus seed %d: %d bad records of %d kinds thrown at %d doors %v; %d rejected (4xx or command error), %d dead-lettered (%d dead letters), "+
		"%d refused as illegal transitions, %d recorded as stale, %d skipped by the flag store, %d duplicate intents and %d HTTP retries deduplicated; %d good runs completed (%d over HTTP); "+
		"spine verify: %d runs, %d refused, anomalies %v, foreign %v",
		seed, len(corpus), len(kinds), len(doors), doors, nRejected, nDead, len(dlq), refusedN, staleN, nSkipped, len(dups), replayed,
		completed+nVictims, len(httpTraces), rep.Runs, rep.Refused, rep.Counts, rep.Foreign)
	if testing.Verbose() {
		for _, k := range kinds {
			n := 0
			for _, b := range corpus {
				if b.kind == k {
					n++
				}
			}
			t.Logf("  %4d × %s", n, k)
		}
	}
}

// throwHTTP sends the HTTP-door records of the corpus (the registry's to
// the registry, the ingress's to the ingress) with nGood good intents
// between them, a few of them sent twice with one Idempotency-Key. Each bad
// request must get its status, naming its code and field. It returns the
// good runs' trace ids and the number of retries answered as replays.
func (s *rig) throwHTTP(t *testing.T, ingressURL string, recs []*badRecord, nGood int) (traces []string, replayed int) {
	t.Helper()
	cl := &http.Client{Timeout: 60 * time.Second}
	do := func(method, url string, h http.Header, body []byte) (*http.Response, []byte) {
		req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	sendGood := func(i int) {
		tr := fmt.Sprintf("corpus-http-%04d", i)
		body := fmt.Sprintf(`{"kind":"summarize","input":"over http %d","actor":"http-%d","trace_id":%q}`, i, i%7, tr)
		h := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"k-" + tr}}
		if i%2 == 1 {
			body = fmt.Sprintf(`{"specversion":"1.0","id":"ce-%d","source":"corpus","type":"run.spine.intent","data":%s}`, i, body)
			h.Set("Content-Type", "application/cloudevents+json")
		}
		tries := 1
		if i%5 == 0 {
			tries = 2 // a retry with the same key: answered from the first
		}
		for try := range tries {
			resp, b := do(http.MethodPost, ingressURL+ingress.Path, h, []byte(body))
			var a ingress.Accepted
			if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &a) != nil || a.TraceID != tr {
				t.Fatalf("good intent %d: %d %s", i, resp.StatusCode, b)
			}
			if try == 1 {
				if resp.Header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("good intent %d sent twice: the second answer is not a replay", i)
				}
				replayed++
			}
		}
		traces = append(traces, tr)
	}
	next := 0
	for i, b := range recs {
		if b.door != doorHTTP && b.door != doorRegistry {
			continue
		}
		if next < nGood && i%(max(1, len(recs)/nGood)) == 0 {
			sendGood(next)
			next++
		}
		base := ingressURL
		if b.door == doorRegistry {
			base = s.registryURL
		}
		resp, body := do(b.method, base+b.path, b.header, b.body)
		if resp.StatusCode != b.status {
			t.Errorf("%s: %d %.300s, want %d", b.kind, resp.StatusCode, body, b.status)
			continue
		}
		if b.door == doorRegistry {
			var e struct {
				Code    int    `json:"error_code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Code != b.regCode || e.Message == "" {
				t.Errorf("%s: body %.300s, want error_code %d and a message", b.kind, body, b.regCode)
			}
			continue
		}
		var e ingress.ErrorBody
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: body %.300s is not an error body: %v", b.kind, body, err)
			continue
		}
		codes, fields := []string{e.Code}, []string{e.Field}
		for _, fe := range e.Errors {
			codes, fields = append(codes, fe.Code), append(fields, fe.Field)
		}
		if !slices.Contains(codes, b.errCode) || b.field != "" && !slices.Contains(fields, b.field) || e.Error == "" {
			t.Errorf("%s: %d %.300s, want code %q naming field %q", b.kind, resp.StatusCode, body, b.errCode, b.field)
		}
	}
	for ; next < nGood; next++ {
		sendGood(next)
	}
	return traces, replayed
}

// throwCommands runs the command-door records of the corpus with the spine
// binary against the stack; each must fail, naming what was wrong. It
// returns how many were refused so.
func (s *rig) throwCommands(t *testing.T, recs []*badRecord) int {
	t.Helper()
	dir := t.TempDir()
	n := 0
	for i, b := range recs {
		if b.door != doorFlags && b.door != doorPolicy {
			continue
		}
		args := slices.Clone(b.args)
		if b.file != "" {
			path := filepath.Join(dir, fmt.Sprintf("policy-%d.yaml", i))
			if err := os.WriteFile(path, []byte(b.file), 0o600); err != nil {
				t.Fatal(err)
			}
			args[slices.Index(args, "FILE")] = path
		}
		cmd := exec.CommandContext(t.Context(), spineBinary(t), args...)
		cmd.Env = s.childEnv("corpus")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err == nil || cmd.ProcessState.ExitCode() <= 0 {
			t.Errorf("%s: spine %s succeeded: %s", b.kind, strings.Join(args, " "), out.String())
			continue
		}
		if !strings.Contains(out.String(), b.mention) {
			t.Errorf("%s: spine %s: %s; want it to name %q", b.kind, strings.Join(args, " "), out.String(), b.mention)
			continue
		}
		n++
	}
	return n
}

// registryGet returns the body of a GET on the registry.
func (s *rig) registryGet(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(s.registryURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// verifyReport runs `spine verify --json` against the stack.
func (s *rig) verifyReport(t *testing.T) *verify.Report {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), spineBinary(t), "verify", "--json")
	cmd.Env = s.childEnv("verify")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var rep verify.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("spine verify: %v (%v)\n%s%s", err, jerr, out.String(), errOut.String())
	}
	if rep.Clean != (err == nil) {
		t.Errorf("spine verify: clean %v but exit %v", rep.Clean, err)
	}
	return &rep
}

func mapsEqual[K comparable](a, b map[K]int) bool {
	n := 0
	for k, v := range a {
		if v == 0 {
			continue
		}
		if b[k] != v {
			return false
		}
		n++
	}
	return n == len(b)
}
