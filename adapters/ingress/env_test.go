package ingress_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

const testAudience = "spine"

// env is a cluster (kfake, or the Kafka of KAFKA_BROKERS) with the
// layout's topics, Spine's registry, a producer on the production codec
// and a local OIDC issuer.
type env struct {
	layout   pipeline.Layout
	codec    *pipeline.SchemaCodec
	producer *pipeline.Producer
	adm      *kadm.Client
	cl       *kgo.Client
	issuer   *issuer
	logs     *syncBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	l := pipeline.Layout{Prefix: prefix, Partitions: 3}
	cl := kafkatest.Client(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	if err := pipeline.EnsureTopics(ctx, adm, l, -1); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(string(l.Schemas())),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	src, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(src, schemas.WithAutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	codec := pipeline.NewSchemaCodec(serde, l)
	p, err := pipeline.NewProducer(codec, kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &env{layout: l, codec: codec, producer: p, adm: adm, cl: cl, issuer: newIssuer(t), logs: &syncBuffer{}}
}

// verifier is a real OIDC verifier on the env's issuer.
func (e *env) verifier(t testing.TB) *oidc.Verifier {
	t.Helper()
	v, err := oidc.New(oidc.Config{Issuer: e.issuer.URL, Audience: testAudience, Claims: []string{"email"},
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// server serves a handler built with cfg and opts on the stack's path.
func (e *env) server(t testing.TB, cfg ingress.Config, opts ...ingress.Option) *httptest.Server {
	t.Helper()
	opts = append([]ingress.Option{ingress.WithTopic(e.layout.Intents()), ingress.WithKinds("summarize", "classify"),
		ingress.WithLogger(slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)
	h, err := ingress.New(cfg, e.producer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewUnstartedServer(mux)
	ingress.ServerTimeouts(srv.Config)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// records reads every record of the intents topic.
func (e *env) records(t testing.TB) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := e.adm.ListEndOffsets(ctx, string(e.layout.Intents()))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	cl := kafkatest.Client(t, e.cl.OptValue(kgo.SeedBrokers).([]string),
		kgo.ConsumeTopics(string(e.layout.Intents())), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), total)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// decode decodes an intent record.
func (e *env) decode(t testing.TB, r *kgo.Record) *schemas.Intent {
	t.Helper()
	v, _, err := e.codec.Decode(context.Background(), pipeline.Topic(r.Topic), r.Value)
	if err != nil {
		t.Fatal(err)
	}
	return v.(*schemas.Intent)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// issuer is a local OIDC issuer (spinetest's) whose tokens are for
// testAudience and carry an email claim.
type issuer struct{ *spinetest.Issuer }

func newIssuer(t testing.TB) *issuer { return &issuer{spinetest.NewIssuer(t)} }

// token signs a token for sub valid for ttl (negative: expired).
func (is *issuer) token(t testing.TB, sub string, ttl time.Duration) string {
	t.Helper()
	return is.TokenWith(t, sub, testAudience, ttl, map[string]any{"email": sub + "@example.com"})
}

// post sends body to srv with the content type and headers given.
func post(t testing.TB, c *http.Client, url, ctype, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+ingress.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

func do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}
