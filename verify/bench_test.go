package verify_test

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/verify"
)

var (
	benchRuns        = flag.Int("verify.runs", 10000, "runs BenchmarkVerify generates")
	benchProfile     = flag.String("verify.cpuprofile", "", "BenchmarkVerify writes a CPU profile of the timed verify.Run reads (not of the thread's generation) to this file")
	benchSeedCells   = flag.Bool("verify.seedcells", false, "with -verify.projections, the live cells are the thread folded by the bench with the runner's Folder and written to the projection topics (see seedCells), not the projections runner's")
	benchProjections = flag.Bool("verify.projections", false, "BenchmarkVerify folds the thread with the projections runner first and compares the projections too")
)

// BenchmarkVerify writes -verify.runs golden runs (15 records each:
// intent, 7 control, 3 data plane, 3 gate events, the artifact) straight
// into the embedded broker through the real codec and registry, then times
// whole verify.Run reads of them (projections not compared: no runner
// folded this thread, unless -verify.projections). Run it as
//
//	go test ./verify -run '^$' -bench BenchmarkVerify -benchtime 1x -args -verify.runs=100000 [-verify.projections] [-verify.cpuprofile=cpu.prof]
func BenchmarkVerify(b *testing.B) {
	// The embedded broker as `spine up` runs it (compaction every 30s, not
	// every second as kafkatest's: at 500,000 runs a compaction of
	// spine.artifacts every second took more CPU than the read), unless
	// KAFKA_BROKERS names a broker.
	var r *rig
	if kafkatest.External() {
		r = newRig(b)
	} else {
		e := pipeline.NewEmbedded(pipeline.EmbeddedConfig{})
		if err := e.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(e.Close)
		l := pipeline.Layout{Prefix: kafkatest.Prefix(b), Partitions: 2}
		if err := pipeline.EnsureTopics(b.Context(), kadm.NewClient(kafkatest.Client(b, e.Addrs())), l, -1); err != nil {
			b.Fatal(err)
		}
		r = newRigOn(b, e.Addrs(), l)
	}
	n := *benchRuns
	at := time.Now().Add(-time.Minute)
	start := time.Now()
	const chunk = 5000
	for i := 0; i < n; i += chunk {
		runs := make([]*run, 0, chunk)
		for j := i; j < min(i+chunk, n); j++ {
			runs = append(runs, r.golden(j, at))
		}
		r.write(b, runs, false)
	}
	b.Logf("generated %d runs in %s", n, time.Since(start).Round(time.Millisecond))
	switch {
	case *benchProjections && *benchSeedCells:
		start = time.Now()
		r.seedCells(b)
		b.Logf("the projection cells were folded and written in %s", time.Since(start).Round(time.Millisecond))
	case *benchProjections:
		start = time.Now()
		r.fold(b, 30*time.Minute)
		b.Logf("the projections runner folded them in %s", time.Since(start).Round(time.Millisecond))
	}
	verifyWithin = 30 * time.Minute
	if *benchProfile != "" {
		f, err := os.Create(*benchProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var rep *verify.Report
	for range b.N {
		rep = r.verify(b, func(c *verify.Config) {
			c.Projections = *benchProjections
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		})
	}
	b.StopTimer()
	if !rep.Clean || rep.Runs != n {
		b.Fatalf("generated thread not clean: %d runs, %v", rep.Runs, rep.Counts)
	}
	var recs int64
	for _, c := range rep.Records {
		recs += c
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(n)/per.Seconds(), "runs/s")
	b.ReportMetric(float64(recs)/per.Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("verify: %d runs, %d records in %s (scan %s)\n", n, recs, rep.Took.Round(time.Millisecond), rep.ScanTook.Round(time.Millisecond))
	if p := rep.Projections; p != nil {
		fmt.Printf("verify: projections replayed %d records in %s, %d cells differ\n", p.Records, p.Took.Round(time.Millisecond), p.Diffs)
	}
}

// seedCells is the projections runner's result without the runner, for a
// thread too long to fold with it here in a bench's time (at 1M runs on
// this machine, under other load, it had folded 6.3M of 13M records after
// 20 minutes and then committed nothing for 7 more): the thread is read back,
// read_committed, each source partition in offset order, folded with the
// runner's own Folder, and every cell written to its projection topic on
// its source partition, as the runner writes it; then the projections
// group commits the thread's end offsets. The replay then compares real
// topics with its own fold of the thread: the comparison's whole work,
// though the two sides come from one Folder (TestProjectionOffByOne plants
// a difference on cells of the real runner).
func (r *rig) seedCells(b *testing.B) {
	ctx := b.Context()
	adm := kadm.NewClient(r.plain)
	var src []string
	for _, t := range projections.SourceTopics(r.layout) {
		src = append(src, string(t))
	}
	ends, err := adm.ListEndOffsets(ctx, src...)
	if err != nil {
		b.Fatal(err)
	}
	consume := map[string]map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if consume[o.Topic] == nil {
				consume[o.Topic] = map[int32]kgo.Offset{}
			}
			consume[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
			left++
		}
	})
	// The transaction markers are kept: a partition's last record is one.
	cl := kafkatest.Client(b, r.brokers, kgo.ConsumePartitions(consume), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	cells := projections.Cells{}
	part := map[string]int32{}
	var folder projections.Folder
	for left > 0 {
		fs := cl.PollRecords(ctx, 10000)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if o, _ := ends.Lookup(rec.Topic, rec.Partition); rec.Offset+1 >= o.Offset {
				left--
			}
			if rec.Attrs.IsControl() {
				return
			}
			v, writer, err := r.codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
			if err != nil {
				b.Fatal(err)
			}
			s := projections.Source{Topic: strings.TrimPrefix(rec.Topic, r.layout.Prefix), Partition: rec.Partition}
			for _, k := range folder.Fold(cells, s, v.(*schemas.RuntimeEvent), writer) {
				part[k] = rec.Partition
			}
		})
	}
	out := make([]*kgo.Record, 0, 10000)
	flush := func() {
		if err := r.plain.ProduceSync(ctx, out...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		out = out[:0]
	}
	for k, c := range cells {
		v, err := projections.EncodeCell(c)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, &kgo.Record{Topic: string(r.layout.Projection(c.Projection())), Partition: part[k], Key: []byte(k), Value: v})
		if len(out) == cap(out) {
			flush()
		}
	}
	flush()
	if err := adm.CommitAllOffsets(ctx, r.layout.Group(projections.ProcessorName), ends.Offsets()); err != nil {
		b.Fatal(err)
	}
}
