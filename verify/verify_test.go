package verify_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/loadtest/threadgen"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
	"github.com/spinerun/spine/verify"
)

// wantOnly fails unless the report holds exactly the anomalies of kind k,
// n of them, each naming one of traces (when traces are given).
func wantOnly(t *testing.T, rep *verify.Report, k verify.Kind, n int, traces ...string) {
	t.Helper()
	var text strings.Builder
	rep.WriteText(&text, 0)
	if rep.Clean || rep.Counts[k] != n || len(rep.Counts) != 1 {
		t.Fatalf("want exactly %d %s, got %v:\n%s", n, k, rep.Counts, text.String())
	}
	for _, a := range rep.Anomalies {
		if len(traces) > 0 && !contains(traces, a.TraceID) {
			t.Errorf("%s names trace %q, want one of %v", a.Kind, a.TraceID, traces)
		}
	}
	if !strings.Contains(text.String(), string(k)) || !strings.Contains(text.String(), "ANOMALIES") {
		t.Errorf("text report does not name %s:\n%s", k, text.String())
	}
	t.Logf("report:\n%s", text.String())
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func wantClean(t *testing.T, rep *verify.Report, runs int) {
	t.Helper()
	var text strings.Builder
	rep.WriteText(&text, 0)
	if !rep.Clean || rep.Runs != runs || rep.Outcomes[thread.OutcomeCompleted] != runs {
		t.Fatalf("want a clean report of %d completed runs:\n%s", runs, text.String())
	}
	if !strings.Contains(text.String(), "clean: no anomaly") {
		t.Errorf("text report does not say clean:\n%s", text.String())
	}
}

func TestCleanGeneratedThread(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write(t, r.goldenRuns(50, time.Now().Add(-time.Minute)), false)
	rep := r.verify(t, nil)
	wantClean(t, rep, 50)
	if rep.Verdicts != 50 || rep.Artifacts != 50 || rep.Intents != 50 {
		t.Errorf("checked %d verdicts, %d artifacts, %d intents; want 50 each (records %v, foreign %v, ended idle %v)", rep.Verdicts, rep.Artifacts, rep.Intents, rep.Records, rep.Foreign, rep.EndedIdle)
	}
	if n := rep.Records["spine.control"]; n != 50*7 {
		t.Errorf("read %d control records, want %d", n, 50*7)
	}
}

func TestDuplicatedEvent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	r.write(t, runs, false)
	// dataplane.started of run 3, written again in a later transaction
	// (what a zombie instance's unfenced write would leave).
	dup := &run{Trace: runs[3].Trace, Data: runs[3].Data[1:2]}
	r.write(t, []*run{dup}, false)
	wantOnly(t, r.verify(t, nil), verify.DuplicateEvent, 1, runs[3].Trace)
}

func TestLostTerminal(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-10*time.Minute))
	runs[4].Control = runs[4].Control[:6] // no run.completed: stuck in gating for 10m
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.LostTerminal, 1, runs[4].Trace)

	// The same run judged one second after it entered gating is in flight.
	rep := r.verify(t, func(c *verify.Config) {
		c.Now = func() time.Time { return runs[4].Control[5].Timestamp.Add(time.Second) }
	})
	if !rep.Clean || rep.Outcomes["in_flight"] != 1 {
		t.Fatalf("a run within its gating timeout: counts %v, outcomes %v", rep.Counts, rep.Outcomes)
	}
}

func TestIllegalTransition(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	// Run 2 goes from routed straight to delivered: no dispatch.
	c := runs[2].Control
	runs[2].Control = append([]*schemas.RuntimeEvent{c[0], c[1]}, c[4:]...)
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.IllegalTransition, 1, runs[2].Trace)
}

func TestAbortedRecordRead(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	r.write(t, runs, false)
	// A transaction that aborts: a second completion of run 6 and a
	// whole new run, never committed.
	ghost := r.golden(100, time.Now().Add(-time.Minute))
	ghost.Intent = nil
	again := &run{Trace: runs[6].Trace, Control: runs[6].Control[6:]}
	r.write(t, []*run{again, ghost}, true)
	// A read_committed reader sees none of it.
	if rep := r.verify(t, nil); !rep.Clean || rep.AbortedSeen != 0 {
		t.Fatalf("read_committed saw the aborted transaction: %v", rep.Counts)
	}
	// A reader that sees them (read_uncommitted, as a broken read_committed
	// would) has each named, and nothing of them folded into the runs.
	rep := r.verify(t, func(c *verify.Config) { c.ReadUncommitted = true })
	wantOnly(t, rep, verify.AbortedRead, 2, runs[6].Trace, ghost.Trace)
	if rep.AbortedSeen != 1+len(ghost.Control)+len(ghost.Data)+len(ghost.Gates)+1 {
		t.Errorf("aborted records seen: %d", rep.AbortedSeen)
	}
}

func TestMissingArtifact(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	runs[7].Artifact = nil
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.MissingArtifact, 1, runs[7].Trace)
}

func TestVerdictMismatch(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	g := *runs[1].Gates[1].Gate
	g.Passed = false // gate.performance failed, yet the verdict passed
	runs[1].Gates[1].Gate = &g
	runs[1].Gates[1].EventType = thread.GateFailed
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.VerdictMismatch, 1, runs[1].Trace)
}

func TestLostIntent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-10*time.Minute))
	runs[5].Control, runs[5].Data, runs[5].Gates, runs[5].Artifact = nil, nil, nil, nil
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.LostIntent, 1, runs[5].Trace)
}

// TestProjectionOffByOne folds a generated thread with the real
// projections runner, then adds one to a live cell's count.
func TestProjectionOffByOne(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write(t, r.goldenRuns(20, time.Now().Add(-time.Minute)), false)
	r.fold(t, time.Minute)
	wantClean(t, r.verify(t, func(c *verify.Config) { c.Projections = true }), 20)

	// Off by one: a golden cell counts one event more than the thread has.
	cl := kafkatest.Client(t, r.brokers, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		string(r.layout.Projection(thread.ProjGolden)): {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()}}))
	fctx, fcancel := context.WithTimeout(t.Context(), 10*time.Second)
	fs := cl.PollRecords(fctx, 1)
	fcancel()
	if fs.NumRecords() == 0 {
		t.Fatal("no golden cell")
	}
	rec := fs.Records()[0]
	cell, err := projections.DecodeCell(string(rec.Key), rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	gc := cell.(*projections.GoldenCell)
	for k := range gc.Events {
		gc.Events[k]++
		break
	}
	b, err := projections.EncodeCell(gc)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.plain.ProduceSync(t.Context(), &kgo.Record{Topic: rec.Topic, Partition: rec.Partition, Key: rec.Key, Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep := r.verify(t, func(c *verify.Config) { c.Projections = true })
	wantOnly(t, rep, verify.ProjectionMismatch, 1)
	if a := rep.Anomalies[0]; a.Where != string(rec.Key) {
		t.Errorf("mismatch names cell %q, want %q", a.Where, rec.Key)
	}
}

// TestDeadLetterWithoutOriginalOrReason: three poison intents, dead-lettered
// by the one writer of dead letters; one keeps its original bytes and
// reason, one loses its bytes, one its reason.
func TestDeadLetterWithoutOriginalOrReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write(t, r.goldenRuns(5, time.Now().Add(-time.Minute)), false)
	var poison []*kgo.Record
	for i := range 3 {
		p := &kgo.Record{Topic: string(r.layout.Intents()), Key: []byte(fmt.Sprintf("poison-%d", i)), Value: []byte(fmt.Sprintf("not avro %d", i)),
			Timestamp: time.Now().Add(-10 * time.Minute)}
		if err := r.plain.ProduceSync(t.Context(), p).FirstErr(); err != nil {
			t.Fatal(err)
		}
		poison = append(poison, p)
	}
	cause := &pipeline.RejectError{Code: "bad_magic", Reason: "magic byte 0x6e, want 0"}
	var dlq []*kgo.Record
	for i, p := range poison {
		d := pipeline.DeadLetterRecord(r.layout.DLQ(), r.layout.Group(thread.Orchestrator), thread.Orchestrator, p, cause)
		switch i {
		case 1:
			d.Value = nil // the original bytes lost
		case 2:
			var hs []kgo.RecordHeader
			for _, h := range d.Headers {
				if h.Key != pipeline.HeaderErrorCode && h.Key != pipeline.HeaderDLTExceptionMessage {
					hs = append(hs, h)
				}
			}
			d.Headers = hs // no reason
		}
		dlq = append(dlq, d)
	}
	if err := r.plain.ProduceSync(t.Context(), dlq...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep := r.verify(t, nil)
	wantOnly(t, rep, verify.BadDeadLetter, 2, "poison-1", "poison-2")
	if rep.IntentsDeadLettered != 3 || rep.DeadLetters != 3 {
		t.Errorf("dead-lettered intents %d, dead letters %d; want 3 and 3", rep.IntentsDeadLettered, rep.DeadLetters)
	}
	var details []string
	for _, a := range rep.Anomalies {
		details = append(details, a.TraceID+": "+a.Detail)
	}
	joined := strings.Join(details, "\n")
	if !strings.Contains(joined, "poison-1: dead letter of spine.intents/") || !strings.Contains(joined, "poison-2: no reason") {
		t.Errorf("details do not say what is wrong:\n%s", joined)
	}
}

// TestWindow: --since/--until check the runs that started inside them; a
// run that started earlier is out of the window even when its records are
// read, and its anomalies are not this window's.
func TestWindow(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	now := time.Now()
	old := r.goldenRuns(10, now.Add(-30*time.Minute))
	old[0].Artifact = nil // an anomaly of the old runs
	mid := make([]*run, 5)
	for i := range mid {
		mid[i] = r.golden(100+i, now.Add(-8*time.Minute)) // within the lookback of a window from -5m
	}
	recent := make([]*run, 7)
	for i := range recent {
		recent[i] = r.golden(200+i, now.Add(-time.Minute))
	}
	r.write(t, append(append(old, mid...), recent...), false)

	wantOnly(t, r.verify(t, nil), verify.MissingArtifact, 1, old[0].Trace)

	rep := r.verify(t, func(c *verify.Config) { c.Since = now.Add(-5 * time.Minute) })
	wantClean(t, rep, len(recent))
	if rep.OutOfWindow != len(mid) {
		t.Errorf("out of window: %d runs, want the %d read in the lookback", rep.OutOfWindow, len(mid))
	}
	rep = r.verify(t, func(c *verify.Config) {
		c.Since, c.Until = now.Add(-10*time.Minute), now.Add(-5*time.Minute)
	})
	wantClean(t, rep, len(mid))
	if _, err := verify.Run(t.Context(), func() verify.Config {
		c := r.config()
		c.Since, c.Until = now, now.Add(-time.Hour)
		return c
	}()); err == nil {
		t.Error("a window that ends before it starts was accepted")
	}
}

func TestMultipleTerminals(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(10, time.Now().Add(-time.Minute))
	// Run 8 also fails after it completed: another terminal, with an id
	// of its own.
	failed := *runs[8].Control[6]
	failed.EventType, failed.State, failed.Gate = thread.RunFailed, "failed", nil
	failed.EventID, failed.SpanID = thread.IDs(runs[8].Trace, "o", thread.Step(7))
	runs[8].Control = append(runs[8].Control, &failed)
	r.write(t, runs, false)
	wantOnly(t, r.verify(t, nil), verify.MultipleTerminals, 1, runs[8].Trace)
}

// TestForeignRecordsAreCountedNotJudged: an event written to an internal
// topic outside a transaction — a forgery, or a replay of a real one — is
// not Spine's record: it is counted as foreign, and no anomaly.
func TestForeignRecordsAreCountedNotJudged(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runs := r.goldenRuns(5, time.Now().Add(-time.Minute))
	r.write(t, runs, false)
	// Run 2's data-plane events and gate events, produced again by a
	// plain producer: byte for byte the events Spine wrote.
	w := threadgen.Writer{Codec: r.codec, Layout: r.layout, Tx: r.tx, Plain: r.plain}
	_, rest, err := w.Records(t.Context(), runs[2])
	if err != nil {
		t.Fatal(err)
	}
	var again []*kgo.Record
	for _, rec := range rest {
		if rec.Topic == string(r.layout.Dataplane()) || rec.Topic == string(r.layout.Gate("verdict")) {
			again = append(again, rec)
		}
	}
	if err := r.plain.ProduceSync(t.Context(), again...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep := r.verify(t, nil)
	if !rep.Clean || rep.Foreign["spine.dataplane"] != len(runs[2].Data) || rep.Foreign["gate.verdict"] != 1 {
		t.Fatalf("clean %v, anomalies %v, foreign %v: want clean, with the replayed records foreign", rep.Clean, rep.Counts, rep.Foreign)
	}
}

// TestSharedReadFindsWhatItsOwnReadFinds: with the projections compared,
// the verifier reads the topics the replay folds through the replay's own
// read (a tap), the rest itself, and what lies past the projections'
// committed offsets itself, from where the tap left each partition. Its
// report is the one of a verify that reads everything itself: the same
// records, runs and anomalies, each once.
func TestSharedReadFindsWhatItsOwnReadFinds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	at := time.Now().Add(-10 * time.Minute)
	runs := r.goldenRuns(30, at)
	runs[4].Control = runs[4].Control[:6] // stuck in gating: lost terminal
	c := runs[2].Control
	runs[2].Control = append([]*schemas.RuntimeEvent{c[0], c[1]}, c[4:]...) // no dispatch
	runs[7].Artifact = nil
	r.write(t, runs, false)
	r.write(t, []*run{{Trace: runs[3].Trace, Data: runs[3].Data[1:2]}}, false)
	r.fold(t, time.Minute)
	// Past the projections' offsets: runs, and a copy of an event, that
	// the replay does not read.
	var later []*run
	for i := range 10 {
		later = append(later, r.golden(100+i, at))
	}
	r.write(t, later, false)
	r.write(t, []*run{{Trace: later[5].Trace, Control: later[5].Control[2:3]}}, false)

	own := r.verify(t, nil)
	shared := r.verify(t, func(c *verify.Config) { c.Projections = true })
	want := map[verify.Kind]int{verify.DuplicateEvent: 2, verify.LostTerminal: 1, verify.IllegalTransition: 1, verify.MissingArtifact: 1}
	if !maps.Equal(own.Counts, want) {
		t.Fatalf("own read: anomalies %v, want %v", own.Counts, want)
	}
	if !maps.Equal(shared.Counts, want) {
		var text strings.Builder
		shared.WriteText(&text, 0)
		t.Fatalf("shared read: anomalies %v, want %v:\n%s", shared.Counts, want, text.String())
	}
	key := func(a verify.Anomaly) string { return string(a.Kind) + " " + a.TraceID + " " + a.Where }
	var ka, kb []string
	for _, a := range own.Anomalies {
		ka = append(ka, key(a))
	}
	for _, a := range shared.Anomalies {
		kb = append(kb, key(a))
	}
	slices.Sort(ka)
	slices.Sort(kb)
	if !slices.Equal(ka, kb) {
		t.Errorf("anomalies differ:\nown    %q\nshared %q", ka, kb)
	}
	if !maps.Equal(own.Records, shared.Records) || own.Runs != shared.Runs || !maps.Equal(own.Outcomes, shared.Outcomes) ||
		own.Intents != shared.Intents || own.Verdicts != shared.Verdicts || own.Artifacts != shared.Artifacts {
		t.Errorf("the reads differ:\nown    records %v runs %d outcomes %v intents %d verdicts %d artifacts %d\nshared records %v runs %d outcomes %v intents %d verdicts %d artifacts %d",
			own.Records, own.Runs, own.Outcomes, own.Intents, own.Verdicts, own.Artifacts,
			shared.Records, shared.Runs, shared.Outcomes, shared.Intents, shared.Verdicts, shared.Artifacts)
	}
	var folded int64
	for _, tp := range projections.SourceTopics(r.layout) {
		folded += shared.Records[strings.TrimPrefix(string(tp), r.layout.Prefix)]
	}
	if shared.Projections == nil || shared.Projections.Diffs != 0 || shared.SharedRead == 0 || shared.SharedRead >= folded || own.SharedRead != 0 {
		t.Errorf("shared %d of the %d records of the folded topics (own read: %d), projections %+v; want some, not all, and the cells equal",
			shared.SharedRead, folded, own.SharedRead, shared.Projections)
	}
	t.Logf("the shared read applied %d of the %d records of the folded topics", shared.SharedRead, folded)
}

// TestRetentionTruncatedControl: retention removed the control records of
// the oldest runs (here DeleteRecords, as a retention pass does), not yet
// their intents. Those intents are out of the read's reach, not lost:
// their runs' records may be gone. Runs after the cut are judged.
func TestRetentionTruncatedControl(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	old := r.goldenRuns(20, time.Now().Add(-20*time.Minute))
	r.write(t, old, false)
	adm := kadm.NewClient(r.plain)
	ends, err := adm.ListEndOffsets(t.Context(), string(r.layout.Control()))
	if err != nil {
		t.Fatal(err)
	}
	var cut kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) { cut.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	var later []*run
	for i := range 20 {
		later = append(later, r.golden(100+i, time.Now().Add(-10*time.Minute)))
	}
	r.write(t, later, false)
	dr, err := adm.DeleteRecords(t.Context(), cut)
	if err != nil {
		t.Fatal(err)
	}
	if err := dr.Error(); err != nil {
		t.Fatal(err)
	}
	rep := r.verify(t, nil)
	var text strings.Builder
	rep.WriteText(&text, 0)
	if !rep.Clean || rep.Runs != 20 || rep.OutOfWindow < 20 {
		t.Fatalf("want a clean report of the 20 later runs, the 20 cut ones out of window:\n%s", text.String())
	}
	t.Logf("report:\n%s", text.String())
}
