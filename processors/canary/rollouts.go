package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

// FlagV2Rollout is the flag that holds the v2 canary rollout.
const FlagV2Rollout = "v2_rollout"

// RolloutOf decodes a change of FlagV2Rollout as a Rollout; fields it does
// not set keep DefaultRollout's values, unknown fields are refused.
func RolloutOf(c pipeline.FlagChange) (Rollout, error) {
	r := DefaultRollout()
	dec := json.NewDecoder(bytes.NewReader(c.Value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Rollout{}, fmt.Errorf("%w: %s rev %d: %v", pipeline.ErrInvalidFlag, c.Flag, c.Rev, err)
	}
	return r, nil
}

// validateRollout is FlagV2Rollout's validation in the flag store.
func validateRollout(v json.RawMessage) error {
	r, err := RolloutOf(pipeline.FlagChange{Flag: FlagV2Rollout, Value: v})
	if err != nil {
		return err
	}
	return r.Validate()
}

// Rollouts is a flag store (pipeline.Flags, embedded: Run, WaitReady, Get,
// History, Set) that knows FlagV2Rollout, with its typed current value kept
// for the router's hot path: Rollout loads it atomically, lock-free. It is
// safe for concurrent use.
type Rollouts struct {
	*pipeline.Flags
	cur atomic.Pointer[rolloutRev]
}

// rolloutRev is a rollout and the revision it came from.
type rolloutRev struct {
	r   Rollout
	rev int64
}

// NewRollouts returns the flag store of layout, reached through kopts,
// knowing FlagV2Rollout. It does no I/O; Run connects.
func NewRollouts(kopts []kgo.Opt, layout pipeline.Layout, opts ...pipeline.FlagsOpt) *Rollouts {
	r := &Rollouts{Flags: pipeline.NewFlags(kopts, layout, append(opts, pipeline.WithFlag(FlagV2Rollout, validateRollout))...)}
	r.cur.Store(&rolloutRev{r: DefaultRollout()})
	r.OnChange(func(c pipeline.FlagChange) {
		if c.Flag != FlagV2Rollout {
			return
		}
		if ro, err := RolloutOf(c); err == nil {
			r.cur.Store(&rolloutRev{r: ro, rev: c.Rev})
		}
	})
	return r
}

// Rollout returns the current v2 rollout (DefaultRollout until the flag is
// first set).
func (r *Rollouts) Rollout() Rollout { return r.cur.Load().r }

// RolloutRev returns the current v2 rollout and its revision (0 before the
// flag was ever set), for a later SetRolloutIf.
func (r *Rollouts) RolloutRev() (Rollout, int64) {
	p := r.cur.Load()
	return p.r, p.rev
}

// SetRollout validates ro and writes it as FlagV2Rollout.
func (r *Rollouts) SetRollout(ctx context.Context, ro Rollout, who, why string) (pipeline.FlagChange, error) {
	if err := ro.Validate(); err != nil {
		return pipeline.FlagChange{}, err
	}
	return r.Set(ctx, FlagV2Rollout, ro, who, why)
}

// SetRolloutIf is SetRollout on the condition that the rollout is still at
// revision expect (see pipeline.Flags.SetIf).
func (r *Rollouts) SetRolloutIf(ctx context.Context, ro Rollout, expect int64, who, why string) (pipeline.FlagChange, error) {
	if err := ro.Validate(); err != nil {
		return pipeline.FlagChange{}, err
	}
	return r.SetIf(ctx, FlagV2Rollout, ro, expect, who, why)
}
