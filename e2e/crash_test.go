package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
)

// TestCrash runs the orchestrator, dataplane and gates runner as child
// processes (`spine run <name>` of the built binary), SIGKILLs one of them
// mid-stream again and again (E2E_CRASH_KILLS, default 4) and restarts it
// under the same SPINE_INSTANCE_ID while intents keep arriving. Then: still
// exactly one terminal outcome per intent and a valid stateflow path per run,
// no event_id twice in the committed log, and nothing from an aborted
// transaction visible to read_committed readers: every record only a
// read_uncommitted reader sees is absent from the committed log, and the
// committed log is exactly the uncommitted one minus those.
//
// The kill moments are drawn from a seeded generator; the seed is logged
// and E2E_CRASH_SEED sets it, to replay a failure's kill timing.
//
// It runs twice: with dynamic group membership (a restarted instance joins
// anew; its dead predecessor's partitions move after the session timeout,
// 6s here) and with SPINE_STATIC_MEMBERSHIP (the restarted instance takes
// its partitions back at once).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	spineBinary(t) // build before the clock starts
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"dynamic membership", map[string]string{"SPINE_GROUP_SESSION_TIMEOUT": "6s"}},
		{"static membership", map[string]string{"SPINE_STATIC_MEMBERSHIP": "true"}},
	} {
		t.Run(tt.name, func(t *testing.T) { testCrash(t, tt.env) })
	}
}

func testCrash(t *testing.T, env map[string]string) {
	n := envInt("E2E_CRASH_INTENTS", 1500)
	kills := envInt("E2E_CRASH_KILLS", 4)
	start := time.Now()
	s := newStack(t, embeddedNoCompaction(t), env)
	committed := s.collect(t, true)
	uncommitted := s.collect(t, false)

	names := []string{orchestrator.Name, dataplane.Name, gatekeeper.Name}
	children := map[string]*child{}
	for _, name := range names {
		children[name] = s.spawn(t, name, "c-"+name)
	}

	outs := intents("crash", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	// Intents trickle in (about 5 s) while the children come and go.
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for i := 0; i < n; i += 25 {
			s.produce(context.Background(), outs[i:min(i+25, n)])
			time.Sleep(80 * time.Millisecond)
		}
	}()

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("E2E_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("E2E_CRASH_SEED: %v", err)
		}
	}
	t.Logf("kill timing: E2E_CRASH_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	killed := 0
	for k := range kills {
		// Kill only once the thread is moving, at a random moment. A
		// restarted processor may work off its backlog in one burst and end
		// every run before the next kill: then nothing is left to
		// interrupt, and the kills stop.
		before := committed.count()
		waitFor(t, 60*time.Second, func() bool { return committed.count() > before || committed.terminalCount() >= n },
			func() string { return fmt.Sprintf("progress before kill %d (%d records)", k, before) })
		if committed.terminalCount() >= n {
			t.Logf("every run ended after %d kills; no work left for kill %d", k, k)
			break
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		name := names[k%len(names)]
		c := children[name]
		if !c.Alive() {
			t.Fatalf("spine run %s exited on its own", name)
		}
		c.Kill(t)
		t.Logf("kill %d: SIGKILLed spine run %s with %d committed / %d uncommitted records, %d runs ended",
			k, name, committed.count(), uncommitted.count(), committed.terminalCount())
		children[name] = s.spawn(t, name, "c-"+name)
		killed++
	}
	if killed < min(2, kills) {
		t.Errorf("only %d kills landed while the thread had work", killed)
	}
	<-prodDone
	waitFor(t, 120*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d terminal outcomes (have %d)", n, committed.terminalCount()) })
	committed.settle(1500 * time.Millisecond)
	uncommitted.settle(500 * time.Millisecond)
	for name, c := range children {
		if !c.Alive() {
			t.Errorf("spine run %s exited on its own", name)
		}
	}

	flow := orchestrator.MustStateflow(s.cfg.Orchestrator.States())
	rep := checkThread(t, committed, flow, traces)
	t.Logf("%s: %d runs, %d kills, %d committed events, outcomes %v, in %s", kafkatest.Backend(), n, killed, rep.events, rep.outcomes, time.Since(start).Round(time.Millisecond))
	if d := committed.dlqLen(); d != 0 {
		t.Errorf("%d dead letters from good intents", d)
	}

	// Aborted transactions: what only read_uncommitted sees.
	type pos struct {
		topic     string
		partition int32
		offset    int64
	}
	var cAll, uAll []event
	var aborted, abortedDupIDs int
	var differ []string
	compare := func() bool {
		cAll, _ = committed.snapshot()
		uAll, _ = uncommitted.snapshot()
		inCommitted := make(map[pos]string, len(cAll))
		committedIDs := map[string]bool{}
		for _, e := range cAll {
			inCommitted[pos{e.topic, e.partition, e.offset}] = e.ev.EventID
			committedIDs[e.ev.EventID] = true
		}
		aborted, abortedDupIDs, differ = 0, 0, nil
		for _, e := range uAll {
			id, ok := inCommitted[pos{e.topic, e.partition, e.offset}]
			switch {
			case !ok:
				aborted++
				if committedIDs[e.ev.EventID] {
					abortedDupIDs++ // the retried transaction committed the same event
				}
			case id != e.ev.EventID:
				differ = append(differ, fmt.Sprintf("%s[%d]@%d holds %s committed but %s uncommitted", e.topic, e.partition, e.offset, id, e.ev.EventID))
			}
		}
		return len(uAll)-aborted == len(cAll)
	}
	// The two collectors settled one after the other and read at their own
	// pace: give the uncommitted one time to read what the committed one
	// has.
	for deadline := time.Now().Add(30 * time.Second); !compare() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range differ {
		t.Error(d)
	}
	if len(uAll)-aborted != len(cAll) {
		t.Errorf("uncommitted %d records minus %d aborted = %d, committed %d", len(uAll), aborted, len(uAll)-aborted, len(cAll))
	}
	t.Logf("aborted records (seen only read_uncommitted): %d, of which %d carry an event_id the committed log has once (redone work); none surfaced read_committed",
		aborted, abortedDupIDs)
}
