package postgres_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/adapters/postgres/pgtest"
	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
	"github.com/spinerun/spine/schemas/thread"
)

// rig is the thread on one broker under one prefix (topics, Spine's
// registry with the contracts, the stack's processors built by package
// stack as `spine up` builds them) and a PostgreSQL server with a
// database for the sink.
type rig struct {
	tb          testing.TB
	brokers     []string
	env         map[string]string
	cfg         *stack.Config
	layout      pipeline.Layout
	kopts       []kgo.Opt
	registryURL string
	codec       *pipeline.SchemaCodec
	pg          *pgtest.Server
	dbURL       string
	st          *stack.Stack // the processors (and the projections)
}

// newRig starts Kafka (kfake unless KAFKA_BROKERS), the registry and
// PostgreSQL; env overrides the stack's environment.
func newRig(tb testing.TB, brokers []string, env map[string]string) *rig {
	tb.Helper()
	r := &rig{tb: tb, pg: pgtest.Start(tb)}
	r.dbURL = r.pg.CreateDB(tb)
	if brokers == nil {
		brokers = kafkatest.Brokers(tb)
	}
	r.brokers = brokers
	r.env = map[string]string{
		"KAFKA_BROKERS":                strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX":           kafkatest.Prefix(tb),
		"SPINE_PARTITIONS":             "6",
		"SPINE_HTTP_ADDR":              "127.0.0.1:0",
		"SPINE_LOG_LEVEL":              "warn",
		"SPINE_SHUTDOWN_TIMEOUT":       "5s",
		"SPINE_SYNTHETIC_FAILURE_RATE": "0.05",
		"SPINE_LATENCY_BUDGET":         "150ms",
		"SPINE_RETRY_INITIAL_INTERVAL": "20ms",
		"SPINE_PG_URL":                 r.dbURL,
	}
	for k, v := range env {
		r.env[k] = v
	}
	ctx := context.Background()
	cfg, err := stack.LoadConfigFrom(ctx, envconfig.MapLookuper(r.env))
	if err != nil {
		tb.Fatal(err)
	}
	r.cfg = cfg
	r.layout = pipeline.NewLayout(&cfg.Config)
	if r.kopts, err = cfg.KafkaOpts(brokers...); err != nil {
		tb.Fatal(err)
	}
	adm := kadm.NewClient(kafkatest.Client(tb, brokers))
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(tctx, adm, r.layout, cfg.ReplicationFactor); err != nil {
		tb.Fatal(err)
	}
	_, r.registryURL = registrytest.Serve(tb,
		registry.WithKafka(append(r.kopts, kgo.ClientID("pg-registry"))...),
		registry.WithTopic(string(r.layout.Schemas())),
		registry.WithTransactionalID(r.layout.Group("schema-registry")),
		registry.WithReplicationFactor(cfg.ReplicationFactor),
	)
	src, err := sr.NewClient(sr.URLs(r.registryURL), sr.HTTPClient(&http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		tb.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if _, err := schemas.RegisterContracts(cctx, src, r.layout.ContractSubjects()); err != nil {
		tb.Fatalf("register contracts: %v", err)
	}
	serde, err := schemas.NewSerde(src)
	if err != nil {
		tb.Fatal(err)
	}
	r.codec = pipeline.NewSchemaCodec(serde, r.layout)
	return r
}

// canaryFifth routes about one run in five to the canary.
var canaryFifth = orchestrator.RouterFunc(func(trace, _ string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(trace))
	if h.Sum32()%5 == 0 {
		return thread.RouteCanary
	}
	return thread.RouteBaseline
})

// startThread runs the thread's processors and the parts named (the
// projections and their store, the sink) in-process, built by package
// stack, until the test ends.
func (r *rig) startThread(more ...string) {
	r.tb.Helper()
	parts := append(append([]string{}, stack.ThreadProcessors...), more...)
	st, err := stack.Build(stack.Env{Config: r.cfg, Brokers: r.brokers, RegistryURL: r.registryURL,
		Log: testLog(), Instance: "pgtest", Router: canaryFifth}, parts...)
	if err != nil {
		r.tb.Fatal(err)
	}
	r.st = st
	spinetest.Start(r.tb, "thread", st.Run)
}

// sink returns a sink on the rig's database (in-process).
func (r *rig) sink(group string) *postgres.Sink {
	r.tb.Helper()
	s, err := postgres.New(postgres.SinkConfig{
		Config: r.cfg.Postgres, Kafka: r.kopts, Layout: r.layout, Codec: r.codec, Group: group,
		SessionTimeout: 6 * time.Second, RetryBackoff: 200 * time.Millisecond, Logger: testLog(), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		r.tb.Fatal(err)
	}
	return s
}

func testLog() *slog.Logger {
	if os.Getenv("PG_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// intents returns n intents under prefix run, alternately V1 and V2.
func intents(run string, n int) []pipeline.Output {
	kinds := orchestrator.DefaultIntentKinds
	now := time.Now()
	outs := make([]pipeline.Output, n)
	for i := range outs {
		trace := fmt.Sprintf("%s-%06d", run, i)
		it := &schemas.Intent{IntentID: "i-" + trace, TraceID: trace, Actor: fmt.Sprintf("agent-%d", i%97),
			Kind: kinds[i%len(kinds)], Input: "summarise the quarterly report " + trace, SchemaVersion: schemas.V1, Timestamp: now}
		v := schemas.V1
		if i%2 == 1 {
			v, it.SchemaVersion, it.Tenant = schemas.V2, schemas.V2, fmt.Sprintf("tenant-%d", i%3)
		}
		outs[i] = pipeline.Output{Key: []byte(trace), Value: it, Version: v}
	}
	return outs
}

// produce writes outs to the intents topic in batches.
func (r *rig) produce(outs []pipeline.Output) {
	r.tb.Helper()
	p, err := pipeline.NewProducer(r.codec, r.kopts...)
	if err != nil {
		r.tb.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(outs); i += 500 {
		batch := outs[i:min(i+500, len(outs))]
		for j := range batch {
			batch[j].Topic = r.layout.Intents()
		}
		if _, err := p.Produce(context.Background(), batch...); err != nil {
			r.tb.Fatalf("produce intents: %v", err)
		}
	}
}

// db connects to the sink's database, search_path set to its schema.
func (r *rig) db() *pgx.Conn {
	r.tb.Helper()
	return connect(r.tb, r.dbURL, r.cfg.Postgres.Schema)
}

func connect(tb testing.TB, url, schema string) *pgx.Conn {
	tb.Helper()
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	pc.RuntimeParams["search_path"] = schema
	var conn *pgx.Conn
	spinetest.Eventually(tb, 30*time.Second, func() error {
		var err error
		conn, err = pgx.ConnectConfig(context.Background(), pc)
		return err
	})
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// count runs a count query, 0 and the error while the database is away.
func count(conn *pgx.Conn, q string, args ...any) (int64, error) {
	var n int64
	err := conn.QueryRow(context.Background(), q, args...).Scan(&n)
	return n, err
}
