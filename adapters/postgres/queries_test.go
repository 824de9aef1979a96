package postgres_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas/thread"
)

// readmeQueries returns the SQL blocks of the README's "PostgreSQL sink"
// section by the name their first comment gives them.
func readmeQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## PostgreSQL sink\n")
	if !ok {
		t.Fatal(`README.md has no "## PostgreSQL sink" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	qs := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(section, -1) {
		name, _, _ := strings.Cut(strings.TrimPrefix(m[1], "-- "), ":")
		qs[name] = m[1]
	}
	return qs
}

// near reports whether a projection's histogram quantile (the midpoint of
// a log-linear bucket, ~3% wide) matches an exact SQL percentile.
func near(proj, exact int64) bool {
	return math.Abs(float64(proj-exact)) <= math.Max(1, float64(exact)/16)
}

// The README's queries, run on a database the sink filled from a live
// thread with failures, retries and a canary route, answer what the
// projections API answers for the same thread: gate failures by gate and
// reason (/v1/gates), runs, success rate and p50/p99 per route
// (/v1/canary), and the timeline of a run (/v1/runs/{trace_id}).
func TestREADMEQueriesAnswerLikeTheProjections(t *testing.T) {
	t.Parallel()
	n := envInt("PG_QUERY_INTENTS", 800)
	qs := readmeQueries(t)
	for _, name := range []string{"failures_by_kind", "p99_by_route", "canary_vs_baseline", "run_timeline"} {
		if qs[name] == "" {
			t.Fatalf("README has no query %s (has %v)", name, qs)
		}
	}
	r := newRig(t, nil, map[string]string{"SPINE_SYNTHETIC_FAILURE_RATE": "0.15"})
	r.startThread(stack.Projections)
	spinetest.Start(t, "pgsink", r.sink("").Run)
	r.produce(intents("q", n))
	conn := r.db()
	r.waitRuns(t, conn, n, 5*time.Minute)
	store := r.st.Store
	// The projections are eventually consistent across their topics: wait
	// until they have counted every event and gate outcome the database has
	// (and the database, the whole thread).
	checkEqualsThread(t, r, conn, n)
	dbEvents, err := count(conn, "SELECT count(*) FROM events WHERE topic <> $1", string(r.layout.Gate("canary")))
	if err != nil {
		t.Fatal(err)
	}
	dbGates, err := count(conn, "SELECT count(*) FROM gates")
	if err != nil {
		t.Fatal(err)
	}
	spinetest.Eventually(t, 2*time.Minute, func() error {
		a := store.Aggregate(projections.Range{})
		var events, gates int64
		for _, g := range a.GoldenReport(false).Groups {
			for _, c := range g.Events {
				events += c
			}
		}
		for _, g := range a.GatesReport().Groups {
			for _, rep := range g.Gates {
				gates += rep.Passed + rep.Failed
			}
		}
		rep := a.CanaryReport()
		if ended := rep.Baseline.Terminal + rep.Canary.Terminal; ended != int64(n) || events != dbEvents || gates != dbGates {
			return fmt.Errorf("the projections have %d of %d runs ended, %d of %d events, %d of %d gate outcomes", ended, n, events, dbEvents, gates, dbGates)
		}
		return nil
	})
	agg := store.Aggregate(projections.Range{})
	canary := agg.CanaryReport()
	routes := map[string]*projections.RouteSummary{"baseline": canary.Baseline, "canary": canary.Canary}
	ctx := context.Background()

	t.Run("failures_by_kind", func(t *testing.T) {
		rows, err := conn.Query(ctx, qs["failures_by_kind"])
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		kinds := map[string]bool{}
		for rows.Next() {
			var kind, gate, reason string
			var n int64
			if err := rows.Scan(&kind, &gate, &reason, &n); err != nil {
				t.Fatal(err)
			}
			kinds[kind] = true
			got[gate+" | "+reason] += n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for _, g := range agg.GatesReport().Groups {
			for gate, rep := range g.Gates {
				if gate == thread.DriftWindowStat {
					continue // a drift window's, about no run: not in a query on runs
				}
				for reason, n := range rep.Reasons {
					want[gate+" | "+reason] += n
				}
			}
		}
		if len(want) == 0 {
			t.Fatal("no gate failures in the thread: the test proves nothing")
		}
		if fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
			t.Errorf("SQL failures by gate and reason:\n  %v\n/v1/gates:\n  %v", sortedMap(got), sortedMap(want))
		}
		t.Logf("%d gate/reason pairs over %d kinds, equal to /v1/gates: %v", len(got), len(kinds), sortedMap(got))
	})

	t.Run("p99_by_route", func(t *testing.T) {
		rows, err := conn.Query(ctx, qs["p99_by_route"])
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for rows.Next() {
			var route string
			var runs, p50, p99 int64
			if err := rows.Scan(&route, &runs, &p50, &p99); err != nil {
				t.Fatal(err)
			}
			seen++
			s := routes[route]
			if s == nil {
				t.Errorf("route %q is not in /v1/canary", route)
				continue
			}
			if runs != s.Terminal || !near(s.EndToEnd.P50, p50) || !near(s.EndToEnd.P99, p99) {
				t.Errorf("%s: SQL %d runs p50 %d p99 %d; /v1/canary %d runs p50 %d p99 %d", route, runs, p50, p99, s.Terminal, s.EndToEnd.P50, s.EndToEnd.P99)
			}
			t.Logf("%s: %d runs, p50 %d ms, p99 %d ms (projections: p50 %d, p99 %d)", route, runs, p50, p99, s.EndToEnd.P50, s.EndToEnd.P99)
		}
		if seen != 2 {
			t.Errorf("%d routes, want baseline and canary", seen)
		}
	})

	t.Run("canary_vs_baseline", func(t *testing.T) {
		rows, err := conn.Query(ctx, qs["canary_vs_baseline"])
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][2]float64{}
		for rows.Next() {
			var metric string
			var b, c *float64
			if err := rows.Scan(&metric, &b, &c); err != nil {
				t.Fatal(err)
			}
			if b == nil || c == nil {
				t.Fatalf("%s: a route without a value (%v, %v)", metric, b, c)
			}
			got[metric] = [2]float64{*b, *c}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for i, s := range []*projections.RouteSummary{canary.Baseline, canary.Canary} {
			if got["runs"][i] != float64(s.Terminal) || math.Abs(got["success_rate"][i]-s.SuccessRate) > 1e-9 ||
				!near(s.EndToEnd.P50, int64(got["p50_ms"][i])) || !near(s.EndToEnd.P99, int64(got["p99_ms"][i])) {
				t.Errorf("%s: SQL %v; /v1/canary runs %d success %.4f p50 %d p99 %d", s.Route, got, s.Terminal, s.SuccessRate, s.EndToEnd.P50, s.EndToEnd.P99)
			}
		}
		if got["retried_runs"][0]+got["retried_runs"][1] == 0 {
			t.Error("no retried runs at a 15% failure rate")
		}
		t.Logf("side by side (baseline, canary): %v", got)
	})

	t.Run("run_timeline", func(t *testing.T) {
		q := strings.ReplaceAll(qs["run_timeline"], ":'trace_id'", "$1")
		// Runs of every outcome and some retried ones, and a sample.
		rows, err := conn.Query(ctx, `(SELECT trace_id FROM runs WHERE attempts > 1 LIMIT 5)
			UNION (SELECT DISTINCT ON (outcome) trace_id FROM runs ORDER BY outcome)
			UNION (SELECT trace_id FROM runs ORDER BY trace_id LIMIT 10)`)
		if err != nil {
			t.Fatal(err)
		}
		var traces []string
		for rows.Next() {
			var tr string
			if err := rows.Scan(&tr); err != nil {
				t.Fatal(err)
			}
			traces = append(traces, tr)
		}
		for _, tr := range traces {
			// The store reads the runs projection on its own topic: retry
			// until it has the run's last parts.
			spinetest.Eventually(t, 30*time.Second, func() error { return compareTimeline(ctx, conn, store, q, tr) })
		}
		t.Logf("%d runs' timelines equal /v1/runs/{trace_id}", len(traces))
	})
}

func sortedMap[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(out)
	return out
}

// compareTimeline compares the README's timeline of run tr with
// /v1/runs/{trace_id}'s.
func compareTimeline(ctx context.Context, conn *pgx.Conn, store *projections.Store, q, tr string) error {
	run, err := store.RunStatus(tr)
	if err != nil {
		return fmt.Errorf("/v1/runs/%s: %w", tr, err)
	}
	want := map[string]string{}
	for _, e := range run.Timeline {
		want[e.EventType] = fmt.Sprintf("%s +%dms", e.At.UTC().Format(time.RFC3339Nano), e.SinceMs)
	}
	rows, err := conn.Query(ctx, q, tr)
	if err != nil {
		return err
	}
	defer rows.Close()
	got := map[string]string{}
	var last time.Time
	for rows.Next() {
		var et string
		var at time.Time
		var since, times int64
		if err := rows.Scan(&et, &at, &since, &times); err != nil {
			return err
		}
		got[et] = fmt.Sprintf("%s +%dms", at.UTC().Format(time.RFC3339Nano), since)
		if at.Before(last) {
			return fmt.Errorf("run %s: %s out of time order", tr, et)
		}
		last = at
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
		return fmt.Errorf("run %s timeline:\nSQL        %v\n/v1/runs   %v", tr, sortedMap(got), sortedMap(want))
	}
	return nil
}
