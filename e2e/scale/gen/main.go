// Command gen writes golden-path runs straight into a stopped embedded
// stack's data directory, as if `spine up` had run them: the thread
// (loadtest/threadgen), the projections' cells of every run folded by the
// projections' own Folder (written on the run's partition, as the
// projections runner writes them), and every consumer group's offsets
// moved to the topics' ends, so that `spine up` on the directory starts
// where the generated runs end instead of running them again. Runs are
// spread evenly over -span ending now (a day's worth: -runs over 24h).
// The orchestrator's state is not written: an ended run's state is a
// tombstone once SPINE_RUN_RETENTION passed, and these runs are older.
//
// The directory must hold a stack already, with no run yet (run `spine up`
// on it once: topics, schemas and groups), so that the thread's timestamps
// grow with its offsets, as offset-by-time lookups need; see
// e2e/scale/seed.sh, which does both.
//
//	go run ./e2e/scale/gen -dir spine-data-1m -runs 1000000 -span 24h
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/loadtest/threadgen"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/thread"
)

func main() {
	dir := flag.String("dir", "", "data directory of a stopped `spine up` (SPINE_DATA_DIR)")
	runs := flag.Int("runs", 1000000, "runs to write")
	span := flag.Duration("span", 24*time.Hour, "the runs are spread evenly over this span, ending now")
	partitions := flag.Int("partitions", 6, "SPINE_PARTITIONS of the stack")
	prefix := flag.String("prefix", os.Getenv("SPINE_TOPIC_PREFIX"), "SPINE_TOPIC_PREFIX of the stack")
	format := flag.String("trace", "minted", `trace id of run i: "minted" (as Spine mints them, its time first; the ids of three runs, early, middle and late, are written to DIR/trace-ids) or a fmt format ("m-%07d")`)
	tx := flag.Bool("tx", false, "write the thread and the cells in transactions, as the processors do, for `spine verify` to judge; "+
		"their markers carry the time they are written, so lookups by time land on them (leave it off for `spine trace` and restarts)")
	flag.Parse()
	if *dir == "" || *runs <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), *dir, *runs, *span, pipeline.Layout{Prefix: *prefix, Partitions: int32(*partitions)}, *format, *tx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dir string, n int, span time.Duration, l pipeline.Layout, format string, tx bool) error {
	if _, err := os.Stat(dir + "/kafka"); err != nil {
		return fmt.Errorf("no stack in %s (run spine up on it once): %w", dir, err)
	}
	e := pipeline.NewEmbedded(pipeline.EmbeddedConfig{DataDir: dir})
	if err := e.Start(); err != nil {
		return err
	}
	defer e.Close()
	brokers := kgo.SeedBrokers(e.Addrs()...)

	reg, err := registry.New(registry.WithKafka(brokers), registry.WithTopic(string(l.Schemas())), registry.WithTransactionalID(l.Group("schema-registry")))
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = reg.Run(rctx) }()
	<-reg.Ready()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	srcl, err := sr.NewClient(sr.URLs("http://" + lis.Addr().String()))
	if err != nil {
		return err
	}
	serde, err := schemas.NewSerde(srcl, schemas.WithAutoRegister())
	if err != nil {
		return err
	}
	codec := pipeline.NewSchemaCodec(serde, l)

	// Projection records name their partition (the run's source
	// partition); thread records go where every producer puts them.
	proj := map[string]bool{}
	for _, name := range thread.ProjectionNames {
		proj[string(l.Projection(name))] = true
	}
	part := kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(func(t string) func(*kgo.Record, int) int {
		if proj[t] {
			return func(r *kgo.Record, _ int) int { return int(r.Partition) }
		}
		tp := kgo.StickyKeyPartitioner(nil).ForTopic(t)
		return func(r *kgo.Record, n int) int { return tp.Partition(r, n) }
	}))
	plain, err := kgo.NewClient(brokers, part, kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer plain.Close()
	// Plainly, not in transactions (unless -tx): a marker is stamped with
	// the time it is written, and markers of now among runs of the past day
	// would break the lookups by time this thread is for.
	w := threadgen.Writer{Codec: codec, Layout: l, Plain: plain, Batch: 1000}
	if tx {
		txc, err := kgo.NewClient(brokers, part, kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(1<<20), kgo.TransactionalID(l.Group("scale-gen")))
		if err != nil {
			return err
		}
		defer txc.Close()
		w.Tx = txc
	}

	folder := projections.Folder{}
	cells := projections.Cells{}
	partOf := func(tr string, t pipeline.Topic) int32 {
		return int32(kgo.StickyKeyPartitioner(nil).ForTopic(string(t)).Partition(&kgo.Record{Key: []byte(tr)}, int(l.Partitions)))
	}
	// fold folds a transaction's runs into cells and returns the changed
	// cells as records; finished runs' cells and closed windows are then
	// dropped from memory (they are on the topic).
	fold := func(rs []*threadgen.Run) ([]*kgo.Record, error) {
		changed := map[string]projections.Source{}
		var last time.Time
		for _, x := range rs {
			topics, evs := x.Events(l)
			for i, ev := range evs {
				src := projections.Source{Topic: strings.TrimPrefix(string(topics[i]), l.Prefix), Partition: partOf(x.Trace, topics[i])}
				for _, k := range folder.Fold(cells, src, ev, schemas.V1) {
					changed[k] = src
				}
				last = ev.Timestamp
			}
		}
		out := make([]*kgo.Record, 0, len(changed))
		for _, k := range slices.Sorted(maps.Keys(changed)) {
			c := cells[k]
			b, err := projections.EncodeCell(c)
			if err != nil {
				return nil, err
			}
			out = append(out, &kgo.Record{Topic: string(l.Projection(c.Projection())), Partition: changed[k].Partition, Key: []byte(k), Value: b,
				Headers: projections.CellHeaders(changed[k], c), Timestamp: last})
		}
		for k := range cells {
			kk, err := projections.ParseKey(k)
			if err != nil || kk.Projection == thread.ProjRuns || kk.Window.Add(2*projections.DefaultWindow).Before(last) {
				delete(cells, k)
			}
		}
		return out, nil
	}

	began := time.Now()
	start := began.Add(-span)
	step := span / time.Duration(n)
	if format == "minted" {
		var ids strings.Builder
		for _, j := range []int{n / 20, n / 2, max(0, n-10)} {
			fmt.Fprintln(&ids, traceID(format, j, start.Add(time.Duration(j)*step).Truncate(time.Millisecond)))
		}
		if err := os.WriteFile(dir+"/trace-ids", []byte(ids.String()), 0o644); err != nil {
			return err
		}
	}
	const chunk = 10000
	for i := 0; i < n; i += chunk {
		rs := make([]*threadgen.Run, 0, chunk)
		for j := i; j < min(i+chunk, n); j++ {
			at := start.Add(time.Duration(j) * step).Truncate(time.Millisecond)
			rs = append(rs, threadgen.Golden(l, traceID(format, j, at), at))
		}
		if err := w.Write(ctx, rs, true, fold); err != nil {
			return err
		}
		if (i/chunk)%10 == 9 || i+chunk >= n {
			fmt.Fprintf(os.Stderr, "%d runs written in %s\n", min(i+chunk, n), time.Since(began).Round(time.Second))
		}
	}
	written := []string{string(l.Intents()), string(l.Control()), string(l.Dataplane()), string(l.Artifacts())}
	for _, g := range []string{thread.SchemaGate, thread.PerformanceGate, thread.VerdictGate} {
		written = append(written, string(l.Gate(g)))
	}
	return commitGroups(ctx, kadm.NewClient(plain), written)
}

// commitGroups moves every consumer group's offsets, on every topic it has
// offsets on and every topic written, to the topics' ends: the stack
// resumes after the generated runs (a group without an offset on a
// partition would read it from its start).
func commitGroups(ctx context.Context, adm *kadm.Client, written []string) error {
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range groups.Groups() {
		fetched, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			errs = append(errs, fmt.Errorf("offsets of group %s: %w", g, err))
			continue
		}
		topics := slices.Compact(slices.Sorted(slices.Values(append(slices.Collect(maps.Keys(fetched)), written...))))
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		to := kadm.Offsets{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				to.AddOffset(o.Topic, o.Partition, o.Offset, -1)
			}
		})
		if err := adm.CommitAllOffsets(ctx, g, to); err != nil {
			errs = append(errs, fmt.Errorf("commit group %s: %w", g, err))
			continue
		}
		fmt.Fprintf(os.Stderr, "group %s: offsets of %d topics moved to their ends\n", g, len(topics))
	}
	return errors.Join(errs...)
}

// traceID is the trace id of run j at time at: minted as Spine mints them
// (thread.TraceIDAt, j in the random part), or format of j.
func traceID(format string, j int, at time.Time) string {
	if format != "minted" {
		return fmt.Sprintf(format, j)
	}
	var rest [12]byte
	binary.BigEndian.PutUint64(rest[4:], uint64(j))
	return thread.TraceIDAt(at, rest)
}
