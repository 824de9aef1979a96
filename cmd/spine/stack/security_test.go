package stack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
)

// The stack's parts run over SASL_SSL (SCRAM-SHA-512 on TLS) each as its
// own principal with only the ACLs of stack.Grants, and the golden path
// completes: intents in over HTTP ingress, a verdict out for each. Then
// every principal tries to write every topic its grant leaves out, and the
// broker refuses each write. On kfake by default; on Apache Kafka's
// SASL_SSL listener with KAFKA_SASL_SSL_BROKERS.
func TestStackOverSASLSSLWithLeastPrivilege(t *testing.T) {
	t.Parallel()
	sec := kafkatest.Secure(t)
	prefix := kafkatest.Prefix(t)
	admin := kadm.NewClient(sec.AdminClient(t))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The admin creates topics, one user per part and their ACLs.
	layout := pipeline.Layout{Prefix: prefix, Partitions: 2, RetentionMs: time.Hour.Milliseconds()}
	if err := pipeline.EnsureTopics(ctx, admin, layout, -1); err != nil {
		t.Fatal(err)
	}
	grants := stack.Grants(layout)
	var users []string
	for i := range grants {
		grants[i].Principal = prefix + grants[i].Principal
		users = append(users, grants[i].Principal)
	}
	pass := sec.AddUsers(t, users...)
	if err := pipeline.ApplyGrants(ctx, admin, grants); err != nil {
		t.Fatal(err)
	}

	// Spine's registry, as the admin (it owns _schemas).
	rg, err := registry.New(
		registry.WithKafka(sec.Opts(sec.Admin, sec.AdminPassword)...),
		registry.WithTopic(string(layout.Schemas())),
		registry.WithTransactionalID(layout.Group("schema-registry")),
	)
	if err != nil {
		t.Fatal(err)
	}
	spinetest.Start(t, "registry", rg.Run)
	srv := httptest.NewServer(rg.Handler())
	t.Cleanup(srv.Close)
	src, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.RegisterContracts(ctx, src, layout.ContractSubjects()); err != nil {
		t.Fatal(err)
	}

	// Each part with its own principal, as `spine run <part>` would.
	partEnv := func(part string) *stack.Config {
		cfg, err := stack.LoadConfigFrom(ctx, envconfig.MapLookuper(map[string]string{
			"KAFKA_BROKERS":          strings.Join(sec.Brokers, ","),
			"KAFKA_SASL_MECHANISM":   "SCRAM-SHA-512",
			"KAFKA_SASL_USERNAME":    prefix + part,
			"KAFKA_SASL_PASSWORD":    pass[prefix+part],
			"KAFKA_TLS_CA_FILE":      sec.CAFile,
			"SCHEMA_REGISTRY_URL":    srv.URL,
			"SPINE_TOPIC_PREFIX":     prefix,
			"SPINE_PARTITIONS":       "2",
			"SPINE_SHUTDOWN_TIMEOUT": "5s",
			"SPINE_DRIFT_MODE":       "observe",
		}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// Warnings and errors of every part: a grant too narrow shows there
	// as an authorization failure even where no output is checked.
	logs := &syncBuffer{}
	var ingress, projections *stack.Stack
	for _, part := range []string{stack.Orchestrator, stack.Dataplane, stack.Gates, stack.Drift, stack.Projections, stack.Ingress} {
		st, err := stack.Build(stack.Env{Config: partEnv(part), Brokers: sec.Brokers, RegistryURL: srv.URL,
			Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("part", part), Metrics: prometheus.NewRegistry(), Instance: "sec"}, part)
		if err != nil {
			t.Fatalf("build %s: %v", part, err)
		}
		spinetest.Start(t, part, st.Run)
		switch part {
		case stack.Ingress:
			ingress = st
		case stack.Projections:
			projections = st
		}
	}
	api := httptest.NewServer(ingress.Routes)
	t.Cleanup(api.Close)
	const n = 20
	var last string
	for i := range n {
		resp, err := http.Post(api.URL+"/v1/intents", "application/json",
			strings.NewReader(fmt.Sprintf(`{"kind":"summarize","input":"secure run %d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			TraceID string `json:"trace_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || err != nil {
			t.Fatalf("POST /v1/intents as %s: %d %v", stack.Ingress, resp.StatusCode, err)
		}
		last = r.TraceID
	}

	// A verdict for every run, read by the admin.
	verdicts := kafkatest.Client(t, sec.Brokers, append(sec.Opts(sec.Admin, sec.AdminPassword),
		kgo.ConsumeTopics(string(layout.Gate("verdict"))), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	got := 0
	for got < n {
		fs := verdicts.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of %d verdicts over SASL_SSL before the deadline", got, n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}

	// The projections, under their own principal, saw the runs end.
	view := httptest.NewServer(projections.Routes)
	t.Cleanup(view.Close)
	spinetest.Eventually(t, time.Minute, func() error {
		resp, err := http.Get(view.URL + "/v1/runs/" + last)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var run struct{ Outcome string }
		if err := json.NewDecoder(resp.Body).Decode(&run); err != nil || run.Outcome != "completed" {
			return fmt.Errorf("run %s in the projections: %d, outcome %q", last, resp.StatusCode, run.Outcome)
		}
		return nil
	})

	// Every forbidden write is refused.
	forbidden := 0
	for _, g := range grants {
		cl := kafkatest.Client(t, sec.Brokers, append(sec.Opts(g.Principal, pass[g.Principal]),
			kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(10*time.Second))...)
		for _, spec := range layout.Specs() {
			if slices.Contains(g.Write, spec.Name) {
				continue
			}
			forbidden++
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: string(spec.Name), Key: []byte("k"), Value: []byte("forged")}).FirstErr()
			if !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Errorf("%s writing %s: %v, want %v", g.Principal, spec.Name, err, kerr.TopicAuthorizationFailed)
			}
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(strings.ToLower(line), "authoriz") {
			t.Errorf("a part was refused something its grant should allow: %s", line)
		}
	}
	t.Logf("%d runs completed over SASL_SSL on %s as %d principals; %d forbidden writes tried, all refused", n, backend(), len(grants), forbidden)
}

func backend() string {
	if kafkatest.SecureExternal() {
		return "kafka"
	}
	return "kfake"
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
