package canary_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/canary"
)

// flagsEnv creates the layout's topics on a test broker.
func flagsEnv(t *testing.T) ([]string, pipeline.Layout) { return kafkatest.Layout(t, 1) }

// runFlags starts a store and waits until it is current.
func runFlags(t *testing.T, brokers []string, l pipeline.Layout) *canary.Rollouts {
	t.Helper()
	f := canary.NewRollouts([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("flags Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer wcancel()
	if err := f.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlagsSetIsSeenByAnotherProcess(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	a := runFlags(t, brokers, l)
	b := canary.NewRollouts([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l)
	var seen atomic.Int64
	b.OnChange(func(c pipeline.FlagChange) {
		if c.Flag == canary.FlagV2Rollout {
			seen.Store(c.Rev)
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	if err := b.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}

	if got := b.Rollout(); got.Weight != 0 || got.Phase != canary.PhaseProgressing {
		t.Fatalf("default rollout %+v", got)
	}
	r := a.Rollout()
	r.Weight = 2500
	start := time.Now()
	c, err := a.SetRollout(t.Context(), r, "alice", "start the v2 canary")
	if err != nil {
		t.Fatal(err)
	}
	if c.Rev != 1 {
		t.Errorf("first change has rev %d", c.Rev)
	}
	if got := a.Rollout().Weight; got != 2500 {
		t.Errorf("writer reads weight %d after Set", got)
	}
	spinetest.Eventually(t, 30*time.Second, spinetest.Holds("second store sees the change", func() bool { return b.Rollout().Weight == 2500 }))
	t.Logf("change applied by the other store after %s (%s)", time.Since(start).Round(time.Millisecond), kafkatest.Backend())
	spinetest.Eventually(t, 30*time.Second, spinetest.Holds("OnChange called", func() bool { return seen.Load() == 1 }))
}

func TestFlagsHistoryListsEveryChange(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	a := runFlags(t, brokers, l)
	r := a.Rollout()
	for i, w := range []int{1000, 2000, 0} {
		r.Weight = w
		if _, err := a.SetRollout(t.Context(), r, fmt.Sprintf("user%d", i), fmt.Sprintf("step %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A store started afterwards catches up on start: current value and
	// the whole history.
	b := runFlags(t, brokers, l)
	for name, f := range map[string]*canary.Rollouts{"writer": a, "late reader": b} {
		h := f.History(canary.FlagV2Rollout)
		if len(h) != 3 {
			t.Fatalf("%s: history has %d changes, want 3: %+v", name, len(h), h)
		}
		for i, c := range h {
			ro, err := canary.RolloutOf(c)
			if err != nil {
				t.Fatal(err)
			}
			want := []int{1000, 2000, 0}[i]
			if c.Rev != int64(i+1) || c.Who != fmt.Sprintf("user%d", i) || c.Why != fmt.Sprintf("step %d", i) || ro.Weight != want || c.At.IsZero() {
				t.Errorf("%s: change %d = rev %d who %q why %q weight %d", name, i, c.Rev, c.Who, c.Why, ro.Weight)
			}
		}
		cur, ok := f.Get(canary.FlagV2Rollout)
		if !ok || cur.Rev != 3 {
			t.Errorf("%s: current rev %d", name, cur.Rev)
		}
	}
	if b.Rollout().Weight != 0 {
		t.Errorf("late reader weight %d", b.Rollout().Weight)
	}
}

func TestFlagsSetIfRefusesAStaleRevision(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	a := runFlags(t, brokers, l)
	b := runFlags(t, brokers, l)
	r, rev := a.RolloutRev()
	if rev != 0 {
		t.Fatalf("rev %d before any change", rev)
	}
	r.Weight = 500
	if _, err := a.SetRolloutIf(t.Context(), r, 0, "analyzer", "step"); err != nil {
		t.Fatal(err)
	}
	// b changes the flag; once a has read it, a write expecting rev 1 fails.
	spinetest.Eventually(t, 30*time.Second, spinetest.Holds("b sees rev 1", func() bool { _, v := b.RolloutRev(); return v == 1 }))
	r2, _ := b.RolloutRev()
	r2.Phase = canary.PhasePaused
	if _, err := b.SetRollout(t.Context(), r2, "bob", "pause"); err != nil {
		t.Fatal(err)
	}
	spinetest.Eventually(t, 30*time.Second, spinetest.Holds("a sees rev 2", func() bool { _, v := a.RolloutRev(); return v == 2 }))
	r.Weight = 1500
	if _, err := a.SetRolloutIf(t.Context(), r, 1, "analyzer", "stale step"); !errors.Is(err, pipeline.ErrFlagConflict) {
		t.Fatalf("stale SetIf: err %v, want ErrFlagConflict", err)
	}
	if got, v := a.RolloutRev(); v != 2 || got.Phase != canary.PhasePaused || got.Weight != 500 {
		t.Fatalf("rollout rev %d %+v after a refused write", v, got)
	}
}

func TestFlagsRefuseInvalidValuesAndSkipBadRecords(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	a := runFlags(t, brokers, l)
	bad := a.Rollout()
	bad.Weight = 20000
	if _, err := a.SetRollout(t.Context(), bad, "x", "y"); !errors.Is(err, pipeline.ErrInvalidFlag) {
		t.Fatalf("invalid weight: err %v", err)
	}
	if _, err := a.Set(t.Context(), "nope", 1, "x", "y"); !errors.Is(err, pipeline.ErrUnknownFlag) {
		t.Fatalf("unknown flag: err %v", err)
	}
	// Garbage written straight to the topic is skipped by readers.
	cl := kafkatest.Client(t, brokers)
	for _, v := range []string{"", "{", `{"flag":"v2_rollout","rev":1,"value":{"weight_bp":-5}}`, `{"flag":"v2_rollout","rev":1,"value":{"bogus":1}}`} {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: string(l.Flags()), Key: []byte(canary.FlagV2Rollout), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	good := a.Rollout()
	good.Weight = 700
	if _, err := a.SetRollout(t.Context(), good, "x", "after garbage"); err != nil {
		t.Fatal(err)
	}
	b := runFlags(t, brokers, l)
	if got := b.Rollout().Weight; got != 700 {
		t.Fatalf("weight %d after garbage records, want 700", got)
	}
	if h := b.History(canary.FlagV2Rollout); len(h) != 1 {
		t.Fatalf("history %+v, want only the valid change", h)
	}
}

func TestRolloutApply(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, value string
		check       func(canary.Rollout) bool
		wantErr     string
	}{
		{"weight", "10", func(r canary.Rollout) bool { return r.Weight == 1000 }, ""},
		{"weight", "12.5%", func(r canary.Rollout) bool { return r.Weight == 1250 }, ""},
		{"weight", "250bp", func(r canary.Rollout) bool { return r.Weight == 250 }, ""},
		{"weight", "101", nil, "not a percentage"},
		{"weight", "ten", nil, "not a percentage"},
		{"max_weight", "100%", func(r canary.Rollout) bool { return r.MaxWeight == 10000 }, ""},
		{"interval", "2s", func(r canary.Rollout) bool { return r.Interval == canary.Duration(2*time.Second) }, ""},
		{"interval", "soon", nil, "not a duration"},
		{"min_samples", "7", func(r canary.Rollout) bool { return r.MinSamples == 7 }, ""},
		{"latency_p99_max_ratio", "1.2", func(r canary.Rollout) bool { return r.Thresholds.LatencyP99MaxRatio == 1.2 }, ""},
		{"drift_method", "KS", func(r canary.Rollout) bool { return r.Thresholds.DriftMethod == "ks" }, ""},
		{"phase", "progressing", func(r canary.Rollout) bool { return r.Failures == 0 && r.Started.Equal(now) }, ""},
		{"phase", "paused", func(r canary.Rollout) bool { return r.Phase == canary.PhasePaused && r.PauseReason == "manual" }, ""},
		{"colour", "red", nil, "no setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			r := canary.DefaultRollout()
			r.Phase, r.Failures = canary.PhaseRolledBack, 3
			err := r.Apply(tt.name, tt.value, now)
			if tt.wantErr != "" {
				if !errors.Is(err, pipeline.ErrInvalidFlag) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want ErrInvalidFlag with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r) {
				t.Fatalf("rollout after %s=%s: %+v", tt.name, tt.value, r)
			}
		})
	}
}

func TestRolloutValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	r := canary.DefaultRollout()
	r.Weight, r.FailureLimit, r.Thresholds.DriftMethod, r.Phase = -1, 0, "chi2", "done"
	err := r.Validate()
	for _, want := range []string{"weight -1", "failure_limit 0", "drift_method", "phase"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	if err := canary.DefaultRollout().Validate(); err != nil {
		t.Errorf("default rollout invalid: %v", err)
	}
}

// FuzzFlagRecord feeds arbitrary bytes to the flag-record decoder every
// process runs on spine.flags: it never panics, and a value that decodes
// and validates re-encodes to the same rollout.
func FuzzFlagRecord(f *testing.F) {
	good, _ := json.Marshal(pipeline.FlagChange{Flag: canary.FlagV2Rollout, Rev: 1, Value: mustJSON(canary.DefaultRollout()), Who: "a", Why: "b"})
	f.Add(good)
	f.Add([]byte(`{"flag":"v2_rollout","rev":1,"value":{"weight_bp":-5}}`))
	f.Add([]byte(`{"flag":"v2_rollout","rev":1,"value":{"interval":"1h","phase":"paused"}}`))
	f.Add([]byte(`{"flag":"v2_rollout","rev":1,"value":null}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c pipeline.FlagChange
		if json.Unmarshal(b, &c) != nil {
			return
		}
		r, err := canary.RolloutOf(c)
		if err != nil || r.Validate() != nil {
			return
		}
		again, err := canary.RolloutOf(pipeline.FlagChange{Flag: c.Flag, Value: mustJSON(r)})
		if err != nil {
			t.Fatalf("a valid rollout does not decode after encoding: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip changed the rollout:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzRolloutApply: any setting text either is refused with ErrInvalidFlag
// or applies; weights always land in basis points.
func FuzzRolloutApply(f *testing.F) {
	for _, s := range canary.RolloutSettings {
		f.Add(s, "10")
	}
	f.Add("weight", "12.5%")
	f.Add("weight", "1e400")
	f.Add("weight", "NaN")
	f.Add("interval", "-1s")
	f.Fuzz(func(t *testing.T, name, value string) {
		r := canary.DefaultRollout()
		err := r.Apply(name, value, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, pipeline.ErrInvalidFlag) {
				t.Fatalf("error %v is not ErrInvalidFlag", err)
			}
			return
		}
		if r.Weight < 0 || r.Weight > 10000 || r.StepWeight < 0 || r.StepWeight > 10000 || r.MaxWeight < 0 || r.MaxWeight > 10000 {
			t.Fatalf("%s=%q gave weights %d/%d/%d", name, value, r.Weight, r.StepWeight, r.MaxWeight)
		}
	})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func ExampleRollout_Apply() {
	r := canary.DefaultRollout()
	for _, kv := range [][2]string{{"weight", "12.5%"}, {"max_weight", "80"}, {"interval", "10s"}} {
		if err := r.Apply(kv[0], kv[1], time.Now()); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(r.Weight, r.MaxWeight, time.Duration(r.Interval), r.Validate() == nil)
	_, err := canary.ParseWeight("120%")
	fmt.Println(errors.Is(err, pipeline.ErrInvalidFlag))
	// Output:
	// 1250 8000 10s true
	// true
}
