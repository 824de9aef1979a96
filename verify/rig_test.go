package verify_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/loadtest/threadgen"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
	"github.com/spinerun/spine/schemas/thread"
	"github.com/spinerun/spine/verify"
)

// rig is a real embedded broker (or KAFKA_BROKERS), Spine's registry on it,
// and a layout with every topic created.
type rig struct {
	brokers []string
	layout  pipeline.Layout
	codec   *pipeline.SchemaCodec
	srcl    *sr.Client
	tx      *kgo.Client // transactional, as the processors write
	plain   *kgo.Client // idempotent, as the CLI writes intents
	flow    *orchestrator.Stateflow
}

func newRig(t testing.TB) *rig {
	t.Helper()
	brokers, l := kafkatest.Layout(t, 2)
	return newRigOn(t, brokers, l)
}

// newRigOn is newRig on brokers, with l's topics created.
func newRigOn(t testing.TB, brokers []string, l pipeline.Layout) *rig {
	t.Helper()
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(string(l.Schemas())),
		registry.WithTransactionalID(l.Prefix+"schema-registry"),
	)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	srcl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(srcl, schemas.WithAutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	return &rig{
		brokers: brokers, layout: l, codec: pipeline.NewSchemaCodec(serde, l), srcl: srcl,
		tx:    kafkatest.Client(t, brokers, kgo.TransactionalID(l.Prefix+"gen"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(1<<20)),
		plain: kafkatest.Client(t, brokers, kgo.ProducerLinger(0)),
		flow:  orchestrator.MustStateflow(orchestrator.DefaultStates(orchestrator.DefaultRetry, 30*time.Second, 30*time.Second)),
	}
}

// config is the verify config of the rig.
func (r *rig) config() verify.Config {
	return verify.Config{
		Kafka:  []kgo.Opt{kgo.SeedBrokers(r.brokers...)},
		Layout: r.layout,
		Codec:  r.codec,
		SchemaText: func(ctx context.Context, id int) (string, error) {
			s, err := r.srcl.SchemaByID(ctx, id)
			return s.Schema, err
		},
		Legal:   r.flow.Legal,
		Timeout: r.flow.StateTimeout,
	}
}

// verifyWithin bounds one verify.Run of the rig (BenchmarkVerify raises
// it for a million runs).
var verifyWithin = 3 * time.Minute

func (r *rig) verify(t testing.TB, change func(*verify.Config)) *verify.Report {
	t.Helper()
	cfg := r.config()
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), verifyWithin)
	defer cancel()
	rep, err := verify.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// run is one generated run (see threadgen).
type run = threadgen.Run

// golden builds run i of a generated thread at time at.
func (r *rig) golden(i int, at time.Time) *run {
	return threadgen.Golden(r.layout, thread.ID("gen", strconv.Itoa(i)), at)
}

// write produces runs: intents plainly, the rest in transactions of at
// most 500 runs, committed (or aborted when abort is set).
func (r *rig) write(t testing.TB, runs []*run, abort bool) {
	t.Helper()
	w := threadgen.Writer{Codec: r.codec, Layout: r.layout, Tx: r.tx, Plain: r.plain}
	if err := w.Write(t.Context(), runs, !abort, nil); err != nil {
		t.Fatal(err)
	}
	r.settled(t)
}

// settled waits until every transaction written has its markers on the
// partitions: Apache Kafka acknowledges the end of a transaction before it
// writes them, and until then a read_committed reader (verify) does not see
// its records (the last stable offset trails the high watermark).
func (r *rig) settled(t testing.TB) {
	t.Helper()
	adm := kadm.NewClient(r.plain)
	var topics []string
	for _, s := range r.layout.Specs() {
		topics = append(topics, string(s.Name))
	}
	spinetest.Eventually(t, 30*time.Second, spinetest.Holds("every transaction's markers written", func() bool {
		hw, err1 := adm.ListEndOffsets(t.Context(), topics...)
		ls, err2 := adm.ListCommittedOffsets(t.Context(), topics...)
		if err1 != nil || err2 != nil {
			return false
		}
		same := true
		hw.Each(func(o kadm.ListedOffset) {
			if l, ok := ls.Lookup(o.Topic, o.Partition); !ok || l.Offset != o.Offset {
				same = false
			}
		})
		return same
	}))
}

// goldenRuns builds n golden runs at time at.
func (r *rig) goldenRuns(n int, at time.Time) []*run {
	out := make([]*run, n)
	for i := range out {
		out[i] = r.golden(i, at)
	}
	return out
}

// fold runs the real projections runner until it has folded the whole
// thread (within the given time), then stops it.
func (r *rig) fold(tb testing.TB, within time.Duration) {
	tb.Helper()
	runner, err := projections.NewRunner(projections.RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Layout: r.layout, Codec: r.codec,
		TransactionTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	adm := kadm.NewClient(r.plain)
	var src []string
	for _, tp := range projections.SourceTopics(r.layout) {
		src = append(src, string(tp))
	}
	spinetest.Eventually(tb, within, spinetest.Holds("the projections fold the whole thread", func() bool {
		ends, err := adm.ListEndOffsets(tb.Context(), src...)
		if err != nil {
			return false
		}
		got, err := adm.FetchOffsets(tb.Context(), r.layout.Group(projections.ProcessorName))
		if err != nil {
			return false
		}
		caught := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				c, ok := got.Lookup(o.Topic, o.Partition)
				caught = caught && ok && c.At >= o.Offset
			}
		})
		return caught
	}))
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		tb.Fatalf("runner: %v", err)
	}
}
