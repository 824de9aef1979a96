package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
)

// testPort returns a loopback port that was free a moment ago.
func testPort(t *testing.T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// upOnce runs `spine up` in-process until stop is called; stop returns how
// long the shutdown took. The ports in cfg were free a moment ago, not
// reserved: a start that finds one taken (another process's connection
// can hold it) is retried until the 60s deadline.
func upOnce(t *testing.T, cfg *stack.Config) (stop func() time.Duration) {
	t.Helper()
	health := localURL(cfg, cfg.HTTPAddr) + "/healthz"
	hc := testHTTPClient(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	var cancel context.CancelFunc
	var done chan error
starting:
	for {
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		go func() { done <- runUp(ctx, a, cfg) }()
		for {
			resp, err := hc.Get(health)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break starting
				}
			}
			select {
			case err := <-done:
				cancel()
				if errors.Is(err, pipeline.ErrPortInUse) && time.Now().Before(deadline) {
					t.Logf("spine up: %v; starting again", err)
					time.Sleep(time.Second)
					continue starting
				}
				t.Fatalf("spine up exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatal("spine up did not serve /healthz within 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Shutdown is bounded by SPINE_SHUTDOWN_TIMEOUT plus closing the
	// clients and the embedded broker, slow under -race on a loaded
	// machine: past twice the timeout and 15s, it hangs.
	bound := 2*cfg.ShutdownTimeout + 15*time.Second
	var stopped bool
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("spine up returned %v on shutdown", err)
			}
		case <-time.After(bound):
			t.Fatalf("spine up did not stop within %s (SPINE_SHUTDOWN_TIMEOUT %s)", bound, cfg.ShutdownTimeout)
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A second `spine up` on the same data directory finds every record and
// every schema id of the first, and each shuts down in bounded time.
func TestUpRestartKeepsRecordsAndSchemaIDs(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"SPINE_DATA_DIR":         t.TempDir(),
		"SPINE_KAFKA_PORT":       fmt.Sprint(testPort(t)),
		"SPINE_REGISTRY_ADDR":    fmt.Sprintf("127.0.0.1:%d", testPort(t)),
		"SPINE_HTTP_ADDR":        fmt.Sprintf("127.0.0.1:%d", testPort(t)),
		"SPINE_PARTITIONS":       "2",
		"SPINE_SHUTDOWN_TIMEOUT": "10s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	stop := upOnce(t, cfg)
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		return execute(t.Context(), a, args), errb.String()
	}
	if code, stderr := run("produce", "--count", fmt.Sprint(n), "-q"); code != exitOK {
		t.Fatalf("produce: %s", stderr)
	}
	// A user's own subject, beside Spine's contracts.
	srcl, err := newSRClient(cfg, cliRegistryURL(cfg))
	if err != nil {
		t.Fatal(err)
	}
	user, err := srcl.CreateSchema(t.Context(), "orders-value", sr.Schema{Schema: `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	ids := subjectIDs(t, srcl)
	if len(ids) < 10 {
		t.Fatalf("registry has %d subject versions before restart, want Spine's and the user's", len(ids))
	}
	// stop fails the test past its generous bound; the time is for the log.
	t.Logf("shutdown took %s (SPINE_SHUTDOWN_TIMEOUT %s)", stop().Round(time.Millisecond), cfg.ShutdownTimeout)

	stop = upOnce(t, cfg)
	defer stop()
	if got := subjectIDs(t, srcl); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("schema ids changed across restart:\nbefore %v\nafter  %v", ids, got)
	}
	again, err := srcl.CreateSchema(t.Context(), "orders-value", sr.Schema{Schema: `{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}`})
	if err != nil || again.ID != user.ID || again.Version != user.Version {
		t.Errorf("re-registering after restart: id %d v%d (%v), want id %d v%d", again.ID, again.Version, err, user.ID, user.Version)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cliBrokers(cfg)...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), "spine.intents")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != n {
		t.Errorf("after restart spine.intents holds %d records, want exactly %d", total, n)
	}
}

// subjectIDs maps "subject/version" to schema id for every live version.
func subjectIDs(t *testing.T, cl *sr.Client) map[string]int {
	t.Helper()
	subs, err := cl.Subjects(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range subs {
		all, err := cl.Schemas(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		for _, ss := range all {
			out[fmt.Sprintf("%s/%d", s, ss.Version)] = ss.ID
		}
	}
	return out
}

// `spine run` started while its broker is down (starting, restarting)
// waits for it instead of exiting: the fault soak (e2e.TestSoak) found a
// processor started again during an embedded-broker restart exit 1 on
// "connection refused".
func TestEnsureTopicsWaitsForTheBroker(t *testing.T) {
	t.Parallel()
	port := testPort(t)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":    fmt.Sprintf("127.0.0.1:%d", port),
		"SPINE_PARTITIONS": "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ensureTopics(t.Context(), cfg, cfg.Brokers, slog.New(slog.DiscardHandler)) }()
	select {
	case err := <-done:
		t.Fatalf("ensureTopics returned before the broker was up: %v", err)
	case <-time.After(1500 * time.Millisecond): // the broker is down this long
	}
	emb := pipeline.NewEmbedded(pipeline.EmbeddedConfig{Port: port})
	if err := emb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ensureTopics: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ensureTopics did not return within 30s of the broker starting")
	}
}
