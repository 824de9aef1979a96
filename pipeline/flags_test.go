package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// nonNegative is the validation of the test's flag "limit": a number ≥ 0.
func nonNegative(v json.RawMessage) error {
	var n float64
	if err := json.Unmarshal(v, &n); err != nil || n < 0 {
		return fmt.Errorf("%w: limit %s is not a number ≥ 0", pipeline.ErrInvalidFlag, v)
	}
	return nil
}

// startLimitFlags runs a store knowing only "limit" until the test ends
// and waits until it is current.
func startLimitFlags(t *testing.T, brokers []string, l pipeline.Layout) *pipeline.Flags {
	t.Helper()
	f := pipeline.NewFlags([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l, pipeline.WithFlag("limit", nonNegative))
	spinetest.Start(t, "flags", f.Run)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := f.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// The store knows only the flags it is given: what they mean and how they
// validate belongs to their users (the canary's v2_rollout: package
// processors/canary, whose tests exercise the store end to end).
func TestFlagsKnowOnlyTheirFlags(t *testing.T) {
	t.Parallel()
	brokers, l := flagsEnv(t)
	a := startLimitFlags(t, brokers, l)
	c, err := a.Set(t.Context(), "limit", 5, "alice", "raise")
	if err != nil || c.Rev != 1 {
		t.Fatalf("set limit: rev %d, %v", c.Rev, err)
	}
	if got, ok := a.Get("limit"); !ok || string(got.Value) != "5" || got.Who != "alice" {
		t.Fatalf("get limit after set: %+v %v", got, ok)
	}
	if _, err := a.Set(t.Context(), "limit", -1, "bob", "oops"); !errors.Is(err, pipeline.ErrInvalidFlag) {
		t.Fatalf("invalid value: err %v, want ErrInvalidFlag", err)
	}
	if _, err := a.Set(t.Context(), "colour", "red", "bob", "?"); !errors.Is(err, pipeline.ErrUnknownFlag) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("unknown flag: err %v, want ErrUnknownFlag naming the known ones", err)
	}
	// An invalid value written straight to the topic is skipped by readers.
	bad, _ := json.Marshal(pipeline.FlagChange{Flag: "limit", Rev: 2, Value: json.RawMessage("-3"), Who: "x"})
	if err := kafkatest.Client(t, brokers).ProduceSync(t.Context(), &kgo.Record{Topic: string(l.Flags()), Key: []byte("limit"), Value: bad}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b := startLimitFlags(t, brokers, l)
	if got, _ := b.Get("limit"); got.Rev != 1 || string(got.Value) != "5" {
		t.Fatalf("late reader: %+v, want rev 1 value 5", got)
	}
	if h := b.History("limit"); len(h) != 1 {
		t.Fatalf("history %+v, want only the valid change", h)
	}
}
