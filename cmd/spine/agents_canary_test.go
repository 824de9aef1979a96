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
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
)

// modelServer is an OpenAI-compatible Chat Completions server that answers
// per model: model-a after 20ms (a latency the artifacts' whole
// milliseconds show); model-b after 20ms plus slow, or with a 500 when fail.
// It counts the calls per model.
func modelServer(t *testing.T, slow time.Duration, fail bool) (*httptest.Server, map[string]*atomic.Int64) {
	t.Helper()
	calls := map[string]*atomic.Int64{"model-a": {}, "model-b": {}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || calls[req.Model] == nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"unknown model or path","type":"invalid_request_error"}}`))
			return
		}
		calls[req.Model].Add(1)
		wait := 20 * time.Millisecond
		if req.Model == "model-b" {
			if fail {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":{"message":"model-b is overloaded","type":"server_error"}}`))
				return
			}
			wait += slow
		}
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"model":   req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": req.Model + " says: summarized."}, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": 12, "completion_tokens": 4},
		})
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

// TestCanaryOfTwoModels: `spine up` with an agents file whose summarize
// agent runs model-a and whose canary block switches to model-b, both
// served by one OpenAI-compatible server. A v2 rollout started with `spine
// flags set` is analysed every second on live traffic: model-b slower, or
// failing, is rolled back to weight 0; model-b as good as model-a is
// promoted to 100 %. Every analysis is a gate.canary event.
func TestCanaryOfTwoModels(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		slow   time.Duration
		fail   bool
		phase  canary.RolloutPhase
		action gates.CanaryAction
		weight int
	}{
		{"slower model rolled back", 200 * time.Millisecond, false, canary.PhaseRolledBack, gates.ActionRollback, 0},
		{"failing model rolled back", 0, true, canary.PhaseRolledBack, gates.ActionRollback, 0},
		{"equal model promoted", 0, false, canary.PhasePromoted, gates.ActionPromote, 10000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, calls := modelServer(t, tt.slow, tt.fail)
			file := writeFile(t, `agents:
  - kind: summarize
    executor: openai
    base_url: `+srv.URL+`/v1
    model: model-a
    system: "Summarize in one sentence."
    timeout: 10s
    canary: { model: model-b }
`)
			cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
				"SPINE_AGENTS":             file,
				"SPINE_DATA_DIR":           t.TempDir(),
				"SPINE_KAFKA_PORT":         fmt.Sprint(testPort(t)),
				"SPINE_REGISTRY_ADDR":      fmt.Sprintf("127.0.0.1:%d", testPort(t)),
				"SPINE_HTTP_ADDR":          fmt.Sprintf("127.0.0.1:%d", testPort(t)),
				"SPINE_PARTITIONS":         "2",
				"SPINE_SHUTDOWN_TIMEOUT":   "10s",
				"SPINE_RETRY_MAX_ATTEMPTS": "2",
			}))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(cfg.Orchestrator.Kinds(), ","); got != "summarize" {
				t.Fatalf("kinds %s, want the agents file's", got)
			}
			upOnce(t, cfg)
			run := func(ctx context.Context, args ...string) (int, string, string) {
				var out, errb bytes.Buffer
				a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
				return execute(ctx, a, args), out.String(), errb.String()
			}
			code, out, stderr := run(t.Context(), "agents")
			if code != exitOK || !strings.Contains(out, "summarize  canary    openai    model=model-b") {
				t.Fatalf("spine agents: exit %d:\n%s%s", code, out, stderr)
			}

			// Half the runs on model-b; analysed every second, on 20 runs a
			// side. The latency ratio is loose: model-b equal must pass
			// whatever the noise of a loaded machine; model-b slower by
			// 200ms (220ms against 20ms) does not. The traffic is light enough
			// for a dataplane that runs one call at a time per partition.
			if code, _, stderr := run(t.Context(), "flags", "set", "v2_rollout", "weight=50", "step_weight=50", "max_weight=100",
				"interval=1s", "min_samples=20", "failure_limit=2", "latency_p99_max_ratio=3", "--who", "test", "--why", "model-b canary"); code != exitOK {
				t.Fatalf("flags set: exit %d: %s", code, stderr)
			}
			traffic, stopTraffic := context.WithCancel(t.Context())
			produced := make(chan struct{})
			go func() {
				defer close(produced)
				for traffic.Err() == nil {
					run(traffic, "produce", "--count", "120", "--rate", "12", "--kind", "summarize", "-q")
				}
			}()
			defer func() { stopTraffic(); <-produced }()

			var r canary.Rollout
			deadline := time.Now().Add(120 * time.Second)
			for {
				code, out, stderr := run(t.Context(), "flags", "get", "v2_rollout")
				var c pipeline.FlagChange
				if code != exitOK || json.Unmarshal([]byte(out), &c) != nil {
					t.Fatalf("flags get: exit %d: %s %s", code, out, stderr)
				}
				if r, err = canary.RolloutOf(c); err != nil {
					t.Fatal(err)
				}
				if r.Phase == canary.PhaseRolledBack || r.Phase == canary.PhasePromoted {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no decision within 120s: rollout %+v; calls model-a %d model-b %d", r, calls["model-a"].Load(), calls["model-b"].Load())
				}
				time.Sleep(250 * time.Millisecond)
			}
			stopTraffic()
			<-produced
			if r.Phase != tt.phase || r.Weight != tt.weight {
				t.Fatalf("rollout ended %s at %d bp, want %s at %d bp", r.Phase, r.Weight, tt.phase, tt.weight)
			}
			if calls["model-a"].Load() == 0 || calls["model-b"].Load() == 0 {
				t.Fatalf("calls model-a %d model-b %d: want both models called", calls["model-a"].Load(), calls["model-b"].Load())
			}

			// The analyses, as served and as recorded on gate.canary.
			var list []canary.Analysis
			resp, err := http.Get("http://" + cfg.HTTPAddr + "/v1/canary/analyses")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err != nil || len(list) == 0 {
				t.Fatalf("analyses: %v (%d)", err, len(list))
			}
			last := list[len(list)-1]
			if last.Decision.Action != tt.action {
				t.Fatalf("last decision %s (%s), want %s", last.Decision.Action, last.Decision.Reason, tt.action)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code, out, stderr = run(ctx, "consume", "gate.canary", "-o", "start", "-n", fmt.Sprint(len(list)), "-f", "json")
			if code != exitOK || !strings.Contains(out, "canary."+string(tt.action)) {
				t.Fatalf("consume gate.canary: exit %d: %s %s", code, out, stderr)
			}
			var actions []string
			for _, a := range list {
				actions = append(actions, string(a.Decision.Action))
			}
			t.Logf("decisions %s; last: %s; calls model-a %d model-b %d", strings.Join(actions, " → "), last.Decision.Reason,
				calls["model-a"].Load(), calls["model-b"].Load())
		})
	}
}
