package postgres_test

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/spinerun/spine/internal/spinetest"
)

// TestSinkKilledAndPostgresRestarted runs two sinks as child processes
// (`spine run pgsink` of the built binary) sharing the partitions,
// SIGKILLs one, then the other, again and again
// (PG_KILLS, default 5) while intents keep arriving and restarts it, and
// restarts PostgreSQL itself once (immediate mode: a crash, recovered from
// the WAL) under a live sink. Then the database still equals the thread:
// one row per run, per event and per gate outcome, no gap, no duplicate.
// The kill moments come from a seeded generator (PG_CRASH_SEED).
func TestSinkKilledAndPostgresRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	spinetest.Binary(t)
	// Static membership (SPINE_STATIC_MEMBERSHIP, as a deployment with
	// stable SPINE_INSTANCE_IDs runs): a restarted instance takes its
	// partitions back at once. PG_CRASH_DYNAMIC=1 runs it with dynamic
	// membership, where a killed member's partitions move after its 6s
	// session; on kfake that run has been seen to stall with a killed
	// member kept in a Stable group past its session (see the report).
	env := map[string]string{
		"SPINE_GROUP_SESSION_TIMEOUT": "6s",
		"SPINE_PG_BATCH_RECORDS":      "200",
		"SPINE_STATIC_MEMBERSHIP":     "true",
	}
	if os.Getenv("PG_CRASH_DYNAMIC") == "1" {
		delete(env, "SPINE_STATIC_MEMBERSHIP")
	}
	n := envInt("PG_CRASH_INTENTS", 1500)
	kills := envInt("PG_KILLS", 5)
	r := newRig(t, nil, env)
	r.startThread()
	conn := r.db()
	// Two instances share the partitions: each kill is also a rebalance.
	sinks := []*child{r.spawn(t, "pg-0"), r.spawn(t, "pg-1")}

	outs := intents("crash", n)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for i := 0; i < n; i += 25 {
			r.produce(outs[i:min(i+25, n)])
			time.Sleep(60 * time.Millisecond)
		}
	}()

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PG_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("PG_CRASH_SEED: %v", err)
		}
	}
	t.Logf("kill timing: PG_CRASH_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	events := func() int64 {
		got, _ := count(conn, "SELECT count(*) FROM events")
		return got
	}
	restartedPG := false
	for k := range kills {
		before := events()
		spinetest.Eventually(t, 90*time.Second, spinetest.Holds("the sink writing before kill "+strconv.Itoa(k), func() bool { return events() > before }))
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		i := k % len(sinks)
		if !sinks[i].Alive() {
			t.Fatalf("spine run pgsink pg-%d exited on its own", i)
		}
		sinks[i].Kill(t)
		t.Logf("kill %d: SIGKILLed spine run pgsink pg-%d with %d events in the database", k, i, events())
		sinks[i] = r.spawn(t, "pg-"+strconv.Itoa(i))
		if k == kills/2 && !restartedPG {
			// PostgreSQL crashes under the new sink, mid-batch.
			spinetest.Eventually(t, 90*time.Second, spinetest.Holds("the sink writing before the PostgreSQL restart", func() bool { return events() > before }))
			r.pg.Restart("immediate")
			restartedPG = true
			t.Logf("PostgreSQL restarted (immediate) under a live sink")
			conn = r.db()
		}
	}
	<-prodDone
	r.waitRuns(t, conn, n, 4*time.Minute)
	for i, c := range sinks {
		if !c.Alive() {
			t.Errorf("spine run pgsink pg-%d exited on its own", i)
		}
	}
	checkEqualsThread(t, r, conn, n)
}
