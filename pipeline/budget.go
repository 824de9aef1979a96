package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ByteSize is a size in bytes, written as a plain number or with a unit:
// 1GiB, 512MiB, 64KiB (powers of 1024) or 1GB, 500MB, 64kB (powers of
// 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// UnmarshalText parses a size such as 1GiB.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(text)))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return fmt.Errorf("%q is not a size such as 1GiB, 512MiB or 1073741824", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	if b >= 10<<20 {
		return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Allocation is what one topic gets of the embedded broker's memory
// budget, and the retention that follows from it.
type Allocation struct {
	Topic      Topic  `json:"topic"`
	Partitions int32  `json:"partitions"`
	Policy     string `json:"cleanup_policy"`
	// Budget is the topic's share of the budget over all its partitions;
	// 0 for a compacted topic, whose size is bounded by its live keys
	// (paid from the reserve), not by retention.
	Budget int64 `json:"budget_bytes"`
	// RetentionBytes and SegmentBytes are per partition; -1: none.
	RetentionBytes int64 `json:"retention_bytes"`
	SegmentBytes   int64 `json:"segment_bytes,omitempty"`
	// RetentionMs is retention.ms; -1: none.
	RetentionMs int64 `json:"retention_ms"`
}

// BudgetReserve is the part of the budget (in percent) no topic's
// retention.bytes claims: it pays for the compacted topics (live runs'
// state, flags, schemas, tombstones within delete.retention.ms) and the
// broker's per-batch overhead.
const BudgetReserve = 10

// minSegmentBytes is the smallest segment.bytes Apache Kafka accepts.
const minSegmentBytes = 1 << 20

// weight is a topic's share of the budget, in proportion to the bytes a
// run writes to it (measured on the embedded broker after 100,000 golden
// path runs: spine.control 1.4 KB, spine.dataplane 0.8 KB, spine.proj.runs
// 2.9 KB before compaction, each gate 0.3 KB, the intent 0.1 KB; see
// e2e/PERFORMANCE.md). Compacted topics weigh nothing.
func (l Layout) weight(s TopicSpec) int64 {
	switch {
	case s.Policy == Compact:
		return 0
	case s.Name == l.Control():
		return 14
	case s.Name == l.Dataplane():
		return 8
	case s.Name == l.Projection("runs"):
		return 20
	case s.Name == l.Artifacts():
		return 4 // the synthetic executor's ~170 B per run; a model's are larger
	case s.Name == l.Intents():
		return 2
	case s.Thread:
		return 3 // a gate
	}
	return 1
}

// Allocations lists what every topic of the layout gets: with a Budget
// (the embedded broker), each topic that is not compacted gets a share in
// proportion to its weight, after the reserve, as retention.bytes per
// partition plus a segment; without one, the retention the layout
// configures (RetentionBytes, RetentionMs, ProjectionRetentionMs).
func (l Layout) Allocations() []Allocation {
	specs := l.Specs()
	var total int64
	for _, s := range specs {
		total += l.weight(s)
	}
	out := make([]Allocation, 0, len(specs))
	for _, s := range specs {
		a := Allocation{Topic: s.Name, Partitions: s.Partitions, Policy: string(s.Policy), RetentionBytes: -1, RetentionMs: -1}
		switch s.Policy {
		case Delete:
			a.RetentionMs = l.RetentionMs
			if l.RetentionBytes != 0 {
				a.RetentionBytes = l.RetentionBytes
			}
			if s.Name == l.Artifacts() {
				// As long as the projections that name them, not the
				// thread's retention.
				a.RetentionMs, a.RetentionBytes = l.ProjectionRetentionMs, -1
			}
		case CompactDelete:
			a.RetentionMs = l.ProjectionRetentionMs
		}
		if a.RetentionMs <= 0 {
			a.RetentionMs = -1
		}
		if w := l.weight(s); l.Budget > 0 && w > 0 && total > 0 {
			a.Budget = l.Budget * (100 - BudgetReserve) / 100 * w / total
			perPart := a.Budget / int64(max(s.Partitions, 1))
			// Kafka deletes whole segments, so a partition holds up to
			// retention.bytes plus its active segment.
			a.SegmentBytes = max(minSegmentBytes, perPart/8)
			rb := max(perPart-a.SegmentBytes, minSegmentBytes)
			// An explicit SPINE_THREAD_RETENTION_BYTES wins on the thread.
			if !(s.Thread && l.RetentionBytes != 0) {
				a.RetentionBytes = rb
			}
		}
		out = append(out, a)
	}
	return out
}

// allocation is s's entry of Allocations.
func (l Layout) allocation(s TopicSpec) Allocation {
	for _, a := range l.Allocations() {
		if a.Topic == s.Name {
			return a
		}
	}
	return Allocation{Topic: s.Name, RetentionBytes: -1, RetentionMs: -1}
}

// AlignTopicConfigs sets the retention configs of the layout's existing
// topics (cleanup.policy, retention.ms, retention.bytes, segment.bytes) to
// what the layout gives them now: on the embedded broker, the budget may
// have changed since a data directory's topics were created. A config the
// layout leaves unset is left as it is.
func AlignTopicConfigs(ctx context.Context, adm *kadm.Client, l Layout) error {
	var errs []error
	for _, s := range l.Specs() {
		var alter []kadm.AlterConfig
		for k, v := range l.Configs(s) {
			switch k {
			case "cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes":
				alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
			}
		}
		resp, err := adm.AlterTopicConfigs(ctx, alter, string(s.Name))
		if err == nil {
			for _, r := range resp {
				if r.Err != nil {
					err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("align configs of topic %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}
