package stack_test

import (
	"context"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
)

// SPINE_DRIFT_MODE decides whether the drift monitor runs and the gates
// read the drift status: off builds neither, observe only the monitor
// (the gates sample, judge no run), enforce both.
func TestBuildDriftModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode       string
		processors int
		status     bool
	}{
		{"observe", 4, false}, // observe reports per window: no per-run check, no status view
		{"enforce", 4, true},
		{"off", 3, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			cfg, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
				"KAFKA_BROKERS": "127.0.0.1:1", "SPINE_DRIFT_MODE": tc.mode, "SPINE_DRIFT_WINDOW": "50",
			}))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Drift.Mode != gates.DriftMode(tc.mode) || cfg.Drift.Window != 50 || cfg.Drift.PSI != 0.25 || cfg.Drift.KSAlpha != 0.001 {
				t.Errorf("drift config %+v", cfg.Drift)
			}
			st, err := stack.Build(stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"},
				stack.Orchestrator, stack.Dataplane, stack.Gates, stack.Drift)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if len(st.Processors) != tc.processors || (st.DriftStatus != nil) != tc.status {
				t.Errorf("%d processors, drift status %v; want %d, %v", len(st.Processors), st.DriftStatus != nil, tc.processors, tc.status)
			}
		})
	}
	if _, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1", "SPINE_DRIFT_MODE": "loud",
	})); err == nil {
		t.Error("SPINE_DRIFT_MODE=loud accepted")
	}
}
