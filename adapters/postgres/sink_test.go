package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas/thread"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
)

// envInt reads a positive integer knob, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// waitRuns waits until the database has n runs with an outcome; failing,
// it says how far each partition's offset is behind the log's end.
func (r *rig) waitRuns(t testing.TB, conn *pgx.Conn, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := count(conn, "SELECT count(*) FROM runs WHERE outcome IS NOT NULL")
		if err == nil && got >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d of %d runs ended in the database (%v); offsets behind the log: %s", within, got, n, err, r.lag(t, conn))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lag lists the partitions whose stored next offset is behind the end.
func (r *rig) lag(t testing.TB, conn *pgx.Conn) string {
	ctx := context.Background()
	cl := kafkatest.Client(t, r.brokers)
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, r.sinkTopics()...)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	ends.Each(func(o kadm.ListedOffset) {
		var next int64 = -2
		_ = conn.QueryRow(ctx, "SELECT next_offset FROM kafka_offsets WHERE topic = $1 AND partition = $2", o.Topic, o.Partition).Scan(&next)
		if next < o.Offset-1 { // the last offset may be a transaction marker
			fmt.Fprintf(&b, " %s/%d: db %d end %d;", o.Topic, o.Partition, next, o.Offset)
		}
	})
	return b.String()
}

// checkEqualsThread compares the database with the thread, read again
// from Kafka: one runs row per run with the thread's outcome, every event
// once at its own offset, every gate outcome once, every artifact once,
// and the offsets table at the end of each partition.
func checkEqualsThread(t *testing.T, r *rig, conn *pgx.Conn, n int) {
	t.Helper()
	ctx := context.Background()
	log := r.readThread(t)
	if len(log.traces) != n || len(log.terminals) != n {
		t.Fatalf("the thread has %d runs and %d outcomes, want %d", len(log.traces), len(log.terminals), n)
	}
	// Settle: the sink may still be writing the last events.
	spinetest.Eventually(t, 60*time.Second, func() error {
		got, err := count(conn, "SELECT count(*) FROM events")
		if err != nil || got != int64(len(log.events)) {
			return fmt.Errorf("events has %d rows (%v), the thread %d events", got, err, len(log.events))
		}
		return nil
	})
	for _, c := range []struct {
		what string
		q    string
		want int
	}{
		{"runs", "SELECT count(*) FROM runs", n},
		{"runs with an outcome", "SELECT count(*) FROM runs WHERE outcome IS NOT NULL", n},
		{"events", "SELECT count(*) FROM events", len(log.events)},
		{"distinct event ids", "SELECT count(DISTINCT event_id) FROM events", len(log.events)},
		{"gates", "SELECT count(*) FROM gates", len(log.gates)},
		{"artifacts", "SELECT count(*) FROM artifacts", len(log.artifacts)},
		{"runs whose row missed some of their events", `SELECT count(*) FROM runs r WHERE r.events <>
			(SELECT count(*) FROM events e WHERE e.trace_id = r.trace_id AND e.topic <> $1)`, 0},
		{"runs whose outcome or its time is not their first terminal event's", `SELECT count(*) FROM runs r LEFT JOIN LATERAL
			(SELECT replace(e.event_type, 'run.', '') AS o, e.at FROM events e WHERE e.trace_id = r.trace_id AND e.phase = 'control_plane'
			 AND e.event_type IN ('run.completed', 'run.rejected', 'run.failed', 'run.timed_out') ORDER BY e.kafka_offset LIMIT 1) t ON true
			WHERE r.outcome IS DISTINCT FROM t.o OR r.outcome_at IS DISTINCT FROM t.at`, 0},
		{"runs whose state is not their last control event's", `SELECT count(*) FROM runs r WHERE r.state IS DISTINCT FROM
			(SELECT e.state FROM events e WHERE e.trace_id = r.trace_id AND e.phase = 'control_plane' ORDER BY e.kafka_offset DESC LIMIT 1)`, 0},
	} {
		var args []any
		if strings.Contains(c.q, "$1") {
			args = append(args, string(r.layout.Gate(thread.CanaryGate)))
		}
		got, err := count(conn, c.q, args...)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got != int64(c.want) {
			t.Errorf("%s: %d rows, the thread says %d", c.what, got, c.want)
		}
	}
	// Every event at its own offset, with its own id.
	rows, err := conn.Query(ctx, "SELECT topic, partition, kafka_offset, event_id, event_type FROM events")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var p pos
		var id, et string
		if err := rows.Scan(&p.topic, &p.partition, &p.offset, &id, &et); err != nil {
			t.Fatal(err)
		}
		ev, ok := log.events[p]
		switch {
		case !ok:
			t.Errorf("events has %s/%d@%d, the thread has no event there", p.topic, p.partition, p.offset)
		case ev.EventID != id || string(ev.EventType) != et:
			t.Errorf("events %s/%d@%d is %s %s, the thread %s %s", p.topic, p.partition, p.offset, id, et, ev.EventID, ev.EventType)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Every run's outcome is the thread's.
	rows, err = conn.Query(ctx, "SELECT trace_id, outcome FROM runs")
	if err != nil {
		t.Fatal(err)
	}
	wrong := 0
	for rows.Next() {
		var trace string
		var outcome *string
		if err := rows.Scan(&trace, &outcome); err != nil {
			t.Fatal(err)
		}
		if outcome == nil || log.terminals[trace] != *outcome {
			if wrong++; wrong < 5 {
				t.Errorf("run %s: outcome %v, the thread %q", trace, outcome, log.terminals[trace])
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d runs with another outcome than the thread's", wrong)
	}
	// Offsets: each partition's next offset is past its last record.
	last := map[pos]int64{}
	for p := range log.events {
		k := pos{p.topic, p.partition, 0}
		last[k] = max(last[k], p.offset)
	}
	for k, off := range last {
		var next int64
		if err := conn.QueryRow(ctx, "SELECT next_offset FROM kafka_offsets WHERE topic = $1 AND partition = $2", k.topic, k.partition).Scan(&next); err != nil {
			t.Errorf("offsets of %s/%d: %v", k.topic, k.partition, err)
			continue
		}
		if next <= off {
			t.Errorf("offsets of %s/%d: next %d, last record at %d", k.topic, k.partition, next, off)
		}
	}
	t.Logf("database equals the thread: %d runs, %d events, %d gate outcomes, %d artifacts", n, len(log.events), len(log.gates), len(log.artifacts))
}

// The sink folds a live thread into the database: every run once, every
// event once, every gate outcome once, equal to what the thread says. The
// sink is the stack's own, built with the processors as `spine up` builds
// it when SPINE_PG_URL is set. PG_INTENTS sets the count (10,000: the
// issue's figure).
func TestSinkEqualsTheThread(t *testing.T) {
	t.Parallel()
	n := envInt("PG_INTENTS", 600)
	r := newRig(t, nil, nil)
	r.startThread(stack.PGSink)
	if r.st.Sink == nil {
		t.Fatal("the stack built no sink with SPINE_PG_URL set")
	}
	start := time.Now()
	r.produce(intents("eq", n))
	conn := r.db()
	r.waitRuns(t, conn, n, 5*time.Minute)
	t.Logf("%d runs in the database %s after the first intent", n, time.Since(start).Round(time.Millisecond))
	checkEqualsThread(t, r, conn, n)
}
