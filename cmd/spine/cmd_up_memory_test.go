package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
)

// `spine up` sizes every topic it creates from SPINE_EMBEDDED_MEMORY, shows
// the plan at GET /v1/stack, and a restart with another budget re-sizes the
// topics the data directory already holds.
func TestUpMemoryBudget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := func(budget string) *stack.Config {
		cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
			"SPINE_DATA_DIR":        dir,
			"SPINE_KAFKA_PORT":      fmt.Sprint(testPort(t)),
			"SPINE_REGISTRY_ADDR":   fmt.Sprintf("127.0.0.1:%d", testPort(t)),
			"SPINE_HTTP_ADDR":       fmt.Sprintf("127.0.0.1:%d", testPort(t)),
			"SPINE_PARTITIONS":      "2",
			"SPINE_EMBEDDED_MEMORY": budget,
		}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	check := func(cfg *stack.Config, budget int64) {
		t.Helper()
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/v1/stack")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var plan stack.MemoryPlan
		if err := json.NewDecoder(resp.Body).Decode(&plan); err != nil {
			t.Fatal(err)
		}
		if !plan.Embedded || plan.Budget != budget || len(plan.Topics) == 0 || plan.RunRetention != "15m0s" {
			t.Fatalf("/v1/stack: %+v, want the embedded budget %d", plan, budget)
		}
		// The stack set the process's soft memory limit from the budget
		// (parallel tests' stacks may have set it since, from theirs).
		if lim := debug.SetMemoryLimit(-1); plan.MemoryLimit <= 0 || plan.MemoryLimitSource == "" || lim == math.MaxInt64 {
			t.Errorf("/v1/stack: memory limit %d from %q (runtime: %d), want one set", plan.MemoryLimit, plan.MemoryLimitSource, lim)
		}
		var want int64
		for _, a := range plan.Topics {
			if a.Topic == "spine.control" {
				want = a.RetentionBytes
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(cliBrokers(cfg)...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		rc, err := kadm.NewClient(cl).DescribeTopicConfigs(t.Context(), "spine.control", "spine.proj.runs")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rc {
			for _, kv := range c.Configs {
				if c.Name == "spine.control" && kv.Key == "retention.bytes" && (kv.Value == nil || *kv.Value != strconv.FormatInt(want, 10)) {
					t.Errorf("budget %d: spine.control retention.bytes %v, want %d", budget, kv.MaybeValue(), want)
				}
				if c.Name == "spine.proj.runs" && kv.Key == "cleanup.policy" && kv.MaybeValue() != "compact,delete" {
					t.Errorf("spine.proj.runs cleanup.policy %q, want compact,delete", kv.MaybeValue())
				}
			}
		}
	}
	cfg := env("256MiB")
	stop := upOnce(t, cfg)
	check(cfg, 256<<20)
	stop()
	cfg = env("512MiB")
	stop = upOnce(t, cfg)
	defer stop()
	check(cfg, 512<<20)
}
