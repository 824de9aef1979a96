package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

// TestRunCanaryAnalyses: `spine run canary`, on its own beside a cluster
// and a registry (a split deployment, no `spine up`), analyses a rollout
// every interval. With no traffic the analysis is inconclusive: the
// rollout pauses, the analysis is served on /v1/canary/analyses and
// recorded on gate.canary.
func TestRunCanaryAnalyses(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.Prefix(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testPort(t))
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":      strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX": prefix,
		"SPINE_PARTITIONS":   "1",
		"SPINE_HTTP_ADDR":    httpAddr,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), pipeline.NewLayout(&cfg.Config), -1); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(string(pipeline.NewLayout(&cfg.Config).Schemas())),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cfg.RegistryURL = srv.URL

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		return execute(t.Context(), a, args), out.String(), errb.String()
	}
	if code, _, stderr := run("schemas", "register"); code != exitOK {
		t.Fatalf("schemas register: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run("flags", "set", "v2_rollout", "weight=10", "interval=1s", "min_samples=20", "--who", "test"); code != exitOK {
		t.Fatalf("flags set: exit %d: %s", code, stderr)
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan int, 1)
	go func() {
		var errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		done <- execute(ctx, a, []string{"run", "canary"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("spine run canary exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("spine run canary did not stop within 30s")
		}
	})

	var first canary.Analysis
	deadline := time.Now().Add(60 * time.Second)
	for {
		var list []canary.Analysis
		if resp, err := http.Get("http://" + httpAddr + "/v1/canary/analyses"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		if len(list) > 0 {
			first = list[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no canary analysis served within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if first.Decision.Action != gates.ActionInconclusive || first.After.Phase != canary.PhasePaused {
		t.Fatalf("first analysis with no traffic: decision %s, phase %s; want inconclusive, paused", first.Decision.Action, first.After.Phase)
	}

	// The decision is on gate.canary, and the flag says paused.
	code, out, stderr := run("consume", "gate.canary", "-o", "start", "-n", "1")
	if code != exitOK || !strings.Contains(out, "canary.inconclusive") {
		t.Fatalf("consume gate.canary: exit %d: %s %s", code, out, stderr)
	}
	code, out, _ = run("flags", "get", "v2_rollout")
	var c pipeline.FlagChange
	if err := json.Unmarshal([]byte(out), &c); err != nil || code != exitOK {
		t.Fatalf("flags get: exit %d, %v: %q", code, err, out)
	}
	if r, err := canary.RolloutOf(c); err != nil || r.Phase != canary.PhasePaused || r.PauseReason == "" {
		t.Fatalf("rollout after the analysis: %+v (%v), want paused with a reason", r, err)
	}
}
