package pipeline

import (
	"testing"

	"github.com/sethvargo/go-envconfig"
)

func TestByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "64kb": 64000, "1073741824": 1 << 30, " 2 GB ": 2e9, "0": 0} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || int64(b) != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "1.5GiB", "9999999999TiB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	if s := ByteSize(1 << 30).String(); s != "1GiB" {
		t.Errorf("1GiB prints as %s", s)
	}
}

// TestBudget: the embedded broker's budget is shared out by weight after
// the reserve, no topic's partitions may hold more than its share, and an
// external cluster gets no budget.
func TestBudget(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_EMBEDDED_MEMORY": "1GiB"}))
	if err != nil {
		t.Fatal(err)
	}
	l := NewLayout(cfg)
	var sum int64
	for _, a := range l.Allocations() {
		t.Logf("%-22s %-15s share %-8s retention.bytes %-9d segment.bytes %-8d retention.ms %d", a.Topic, a.Policy, ByteSize(a.Budget), a.RetentionBytes, a.SegmentBytes, a.RetentionMs)
		sum += a.Budget
		switch Topic(a.Topic) {
		case l.Control(), l.Intents(), l.Gate("verdict"), l.DLQ(), l.Projection("runs"):
			if a.Budget == 0 || a.RetentionBytes <= 0 || a.SegmentBytes < minSegmentBytes {
				t.Errorf("%s: %+v, want a share", a.Topic, a)
			}
			if held := (a.RetentionBytes + a.SegmentBytes) * int64(a.Partitions); held > a.Budget {
				t.Errorf("%s may hold %d bytes, more than its share %d", a.Topic, held, a.Budget)
			}
		case l.State("orchestrator"), l.Flags(), l.Schemas():
			if a.Budget != 0 || a.RetentionBytes != -1 || a.RetentionMs != -1 {
				t.Errorf("compacted %s: %+v, want no retention", a.Topic, a)
			}
		}
		if Topic(a.Topic) == l.Projection("runs") && (a.Policy != "compact,delete" || a.RetentionMs != 24*3600*1000) {
			t.Errorf("runs projection: %+v, want compact,delete for 24h", a)
		}
		// Artifacts: written once per key, so deleted by age (the
		// projections') and size, never compacted.
		if Topic(a.Topic) == l.Artifacts() && (a.Policy != "delete" || a.RetentionMs != 24*3600*1000 || a.RetentionBytes <= 0) {
			t.Errorf("artifacts: %+v, want delete after 24h within a share", a)
		}
	}
	if max := int64(1<<30) * (100 - BudgetReserve) / 100; sum > max || sum < max*99/100 {
		t.Errorf("shares sum to %d, want about %d", sum, max)
	}
	if c := l.Configs(TopicSpec{Name: l.State("orchestrator"), Partitions: 6, Policy: Compact}); *c["retention.ms"] != "-1" || c["retention.bytes"] != nil {
		t.Errorf("state topic configs: retention.ms %v, retention.bytes %v", *c["retention.ms"], c["retention.bytes"])
	}

	ext, err := LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"KAFKA_BROKERS": "k:9092"}))
	if err != nil {
		t.Fatal(err)
	}
	el := NewLayout(ext)
	for _, a := range el.Allocations() {
		if a.Budget != 0 || a.SegmentBytes != 0 || (a.Policy == "delete" && a.RetentionBytes != -1) {
			t.Errorf("external cluster %s: %+v, want its own settings", a.Topic, a)
		}
	}
	// With SPINE_THREAD_RETENTION_BYTES and no projection retention, the
	// thread is bounded and the artifacts are kept for ever.
	el.RetentionBytes, el.RetentionMs, el.ProjectionRetentionMs = 1<<30, 3600000, 0
	if a := el.allocation(TopicSpec{Name: el.Artifacts()}); a.RetentionBytes != -1 || a.RetentionMs != -1 {
		t.Errorf("artifacts under a thread retention: %+v, want none", a)
	}
}
