package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A second start on the same data directory finds every record of the first.
func TestEmbeddedRestartKeepsRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 500
	layout := Layout{Partitions: 3, RetentionMs: time.Hour.Milliseconds()}

	e := NewEmbedded(EmbeddedConfig{DataDir: dir})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(t.Context(), kadm.NewClient(cl), layout, -1); err != nil {
		t.Fatal(err)
	}
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: string(layout.Intents()), Key: fmt.Appendf(nil, "trace-%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := cl.ProduceSync(t.Context(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	e.Close()
	e.Close() // idempotent

	e2 := NewEmbedded(EmbeddedConfig{DataDir: dir})
	if err := e2.Start(); err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	got := readAll(t, e2.Addrs(), string(layout.Intents()))
	if len(got) != n {
		t.Fatalf("after restart read %d records, want %d", len(got), n)
	}
	for i := range n {
		if v := got[fmt.Sprintf("trace-%d", i)]; v != fmt.Sprintf("v%d", i) {
			t.Fatalf("trace-%d = %q after restart", i, v)
		}
	}
	// The topic configs survive too.
	adm := kadm.NewClient(kgoClient(t, e2.Addrs()))
	rc, err := adm.DescribeTopicConfigs(t.Context(), string(layout.Flags()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.On(string(layout.Flags()), nil)
	if err != nil {
		t.Fatal(err)
	}
	var policy string
	for _, kv := range c.Configs {
		if kv.Key == "cleanup.policy" && kv.Value != nil {
			policy = *kv.Value
		}
	}
	if policy != "compact" {
		t.Errorf("flags topic cleanup.policy = %q after restart, want compact", policy)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	e := NewEmbedded(EmbeddedConfig{Port: port})
	err = e.Start()
	if err == nil {
		e.Close()
		t.Fatal("start on a used port succeeded")
	}
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Fatalf("error %q does not name port %d as in use", err, port)
	}
}

func TestEnsureTopicsPoliciesAndCoPartitioning(t *testing.T) {
	t.Parallel()
	e := NewEmbedded(EmbeddedConfig{})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	adm := kadm.NewClient(kgoClient(t, e.Addrs()))
	l := Layout{Prefix: "x.", Partitions: 4, RetentionMs: 1000, RetentionBytes: 1 << 20}
	if err := EnsureTopics(t.Context(), adm, l, -1); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := EnsureTopics(t.Context(), adm, l, -1); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	td, err := adm.ListTopics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Specs() {
		d, ok := td[string(s.Name)]
		if !ok {
			t.Errorf("topic %s missing", s.Name)
			continue
		}
		if !strings.HasPrefix(string(s.Name), "x.") {
			t.Errorf("topic %s lacks the prefix", s.Name)
		}
		if int32(len(d.Partitions)) != s.Partitions {
			t.Errorf("topic %s has %d partitions, want %d", s.Name, len(d.Partitions), s.Partitions)
		}
	}
	// A thread topic with the wrong partition count is refused.
	l2 := l
	l2.Partitions = 2
	if err := EnsureTopics(t.Context(), adm, l2, -1); err == nil || !strings.Contains(err.Error(), "co-partitioned") {
		t.Errorf("mismatched partitions: got %v", err)
	}
	rc, err := adm.DescribeTopicConfigs(t.Context(), string(l.Intents()), string(l.State("orchestrator")), string(l.Schemas()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{string(l.Intents()): "delete", string(l.State("orchestrator")): "compact", string(l.Schemas()): "compact"}
	for _, c := range rc {
		for _, kv := range c.Configs {
			if kv.Key == "cleanup.policy" && kv.Value != nil && *kv.Value != want[c.Name] {
				t.Errorf("%s cleanup.policy = %s, want %s", c.Name, *kv.Value, want[c.Name])
			}
			if c.Name == string(l.Intents()) && kv.Key == "retention.ms" && (kv.Value == nil || *kv.Value != "1000") {
				t.Errorf("intents retention.ms = %v, want 1000", kv.Value)
			}
		}
	}
}

func kgoClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func readAll(t *testing.T, brokers []string, topic string) map[string]string {
	t.Helper()
	cl := kgoClient(t, brokers)
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]string{}
	var n int64
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for n < total {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", n, total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[string(r.Key)] = string(r.Value)
			n++
		})
	}
	return out
}

// The cleaner passes over a broker nothing is written to (a pass would find
// nothing new, and holds kfake's one request loop); a write makes the next
// tick clean again. A quiet broker still applies time-based retention, alone.
func TestEmbeddedCleansOnlyAfterWrites(t *testing.T) {
	t.Parallel()
	e := NewEmbedded(EmbeddedConfig{CleanerIntervalMs: 50, RetentionCheckInterval: 300 * time.Millisecond})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	waitFor := func(what string, ok func(ran, skipped, retained int64) bool) (int64, int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ran, skipped, retained := e.CleanerPasses()
			if ok(ran, skipped, retained) {
				return ran, skipped
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 20s the cleaner ran %d passes, skipped %d, applied retention alone %d times", what, ran, skipped, retained)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ran, skipped := waitFor("quiet", func(_, skipped, _ int64) bool { return skipped >= 5 })
	if r, _, _ := e.CleanerPasses(); r != ran || ran > 1 {
		t.Fatalf("the cleaner ran %d passes on a broker nothing was written to (want at most the first)", r)
	}

	// A write: the next tick passes. The topic keeps its records 1 s.
	cl := kgoClient(t, e.Addrs())
	adm := kadm.NewClient(cl)
	const topic = "retained-briefly"
	if _, err := adm.CreateTopic(t.Context(), 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("1000")}, topic); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ran2, _ := waitFor("after a write", func(r, _, _ int64) bool { return r > ran })
	if starts, err := adm.ListStartOffsets(t.Context(), topic); err != nil {
		t.Fatal(err)
	} else if o, _ := starts.Lookup(topic, 0); o.Offset != 0 {
		t.Fatalf("the pass after the write already removed records (start %d): it came late", o.Offset)
	}

	// Quiet again: no pass, but the records expire.
	waitFor("quiet again", func(_, s, _ int64) bool { return s >= skipped+5 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		starts, err := adm.ListStartOffsets(t.Context(), topic)
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := starts.Lookup(topic, 0); o.Offset == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quiet broker kept the records past their retention: %+v", starts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, _, retained := e.CleanerPasses(); r > ran2+1 || retained == 0 {
		t.Fatalf("after one write the cleaner ran %d passes (want %d or %d) and applied retention alone %d times", r, ran2, ran2+1, retained)
	}
}

// kfake's cleaner runs on the embedded broker: a compacted topic keeps only
// the latest record per key once the cleaner has passed.
func TestEmbeddedCompactsStateTopics(t *testing.T) {
	t.Parallel()
	e := NewEmbedded(EmbeddedConfig{CleanerIntervalMs: 100})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl := kgoClient(t, e.Addrs())
	l := Layout{Partitions: 1}
	if err := EnsureTopics(t.Context(), kadm.NewClient(cl), l, -1); err != nil {
		t.Fatal(err)
	}
	topic := string(l.Flags())
	var rs []*kgo.Record
	for i := range 200 {
		rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%4), Value: fmt.Appendf(nil, "v%d", i)})
	}
	// Several batches, so there are closed segments to clean.
	for i := 0; i < len(rs); i += 20 {
		if err := cl.ProduceSync(t.Context(), rs[i:i+20]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, n := readToEnd(t, e.Addrs(), topic)
		if n < 200 {
			for k := range 4 {
				if want := fmt.Sprintf("v%d", 196+k); got[fmt.Sprintf("k%d", k)] != want {
					t.Fatalf("after compaction k%d = %q, want the latest %q", k, got[fmt.Sprintf("k%d", k)], want)
				}
			}
			t.Logf("compaction left %d of 200 records", n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d records after 20s: the cleaner did not run", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readToEnd reads topic from the start up to its end offsets (listed
// first), and returns the latest value per key and how many records it
// read. Compaction removes records but keeps offsets, and never the last
// record of a partition (the latest of its key), so the reader stops at the
// record just before each end.
func readToEnd(t *testing.T, brokers []string, topic string) (map[string]string, int) {
	t.Helper()
	ends, err := kadm.NewClient(kgoClient(t, brokers)).ListEndOffsets(t.Context(), topic)
	if err == nil {
		err = ends.Error()
	}
	if err == nil && len(ends[topic]) == 0 {
		err = errors.New("no partitions listed")
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	left := map[int32]int64{} // partition → end offset not reached yet
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	latest, n := map[string]string{}, 0
	for len(left) > 0 {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d records of %s, partitions %v not read to their end: %v", n, topic, left, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			latest[string(r.Key)] = string(r.Value)
			n++
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return latest, n
}

// A fresh start creates its topics and finds them served at once: the
// leader poll asks the broker, not kadm's metadata cache, which kept the
// first ListTopics' "missing" for MetadataMinAge (5 s) and held every fresh
// `spine up` back by that long.
func TestEnsureTopicsFreshIsQuick(t *testing.T) {
	t.Parallel()
	e := NewEmbedded(EmbeddedConfig{DataDir: t.TempDir()})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	adm := kadm.NewClient(kgoClient(t, e.Addrs()))
	start := time.Now()
	if err := EnsureTopics(t.Context(), adm, Layout{Partitions: 6, RetentionMs: time.Hour.Milliseconds()}, -1); err != nil {
		t.Fatal(err)
	}
	// The cache's age is 5 s; a slow shared machine takes well under 2 s.
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("EnsureTopics on a fresh broker took %v, want under 2s (a cached metadata poll waits 5s)", took)
	}
}
