package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Topic is a Kafka topic name, prefix included.
type Topic string

// CleanupPolicy is a topic's cleanup.policy.
type CleanupPolicy string

// The cleanup policies Spine uses: the thread is append-only, state is
// compacted, and projections keyed per run or per window are compacted
// and expire after a retention.
const (
	Delete        CleanupPolicy = "delete"
	Compact       CleanupPolicy = "compact"
	CompactDelete CleanupPolicy = "compact,delete"
)

// TopicSpec describes one topic Spine owns.
type TopicSpec struct {
	Name       Topic
	Partitions int32
	Policy     CleanupPolicy
	// Thread marks an append-only thread topic keyed by trace_id; every
	// thread topic has the same partition count.
	Thread bool
}

// Layout names every topic and group under a prefix. The zero Layout uses no
// prefix and one partition; build one with NewLayout.
type Layout struct {
	Prefix     string
	Partitions int32
	// RetentionMs and RetentionBytes apply to thread topics (and the DLQ);
	// RetentionBytes 0 means none, or the Budget's share when there is one.
	RetentionMs    int64
	RetentionBytes int64
	// ProjectionRetentionMs, when positive, makes the projection topics
	// compact,delete with this retention.ms; 0 keeps them compact only.
	ProjectionRetentionMs int64
	// Budget, when positive, is the embedded broker's memory budget: every
	// topic's retention.bytes and segment.bytes are sized from it (see
	// Allocations).
	Budget int64
}

// NewLayout returns the layout a config describes.
func NewLayout(c *Config) Layout {
	return Layout{
		Prefix:         c.TopicPrefix,
		Partitions:     c.Partitions,
		RetentionMs:    c.ThreadRetention.Milliseconds(),
		RetentionBytes: c.ThreadRetentionBytesResolved(),

		ProjectionRetentionMs: c.ProjectionRetention.Milliseconds(),
		Budget:                c.EmbeddedMemoryResolved(),
	}
}

func (l Layout) t(name string) Topic { return Topic(l.Prefix + name) }

// Intents is the ingress topic, spine.intents.
func (l Layout) Intents() Topic { return l.t("spine.intents") }

// Control is the control_plane topic, spine.control.
func (l Layout) Control() Topic { return l.t("spine.control") }

// Dataplane is the data_plane topic, spine.dataplane.
func (l Layout) Dataplane() Topic { return l.t("spine.dataplane") }

// Gate is the gate topic gate.<name>.
func (l Layout) Gate(name string) Topic { return l.t("gate." + name) }

// DLQ is the dead-letter topic, spine.dlq.
func (l Layout) DLQ() Topic { return l.t("spine.dlq") }

// State is the compacted changelog of a processor's state,
// spine.state.<processor>.
func (l Layout) State(processor string) Topic { return l.t("spine.state." + processor) }

// Flags is the compacted feature-flag topic, spine.flags.
func (l Layout) Flags() Topic { return l.t("spine.flags") }

// Artifacts is the topic that keeps every artifact's content, keyed by
// artifact id (see thread.ArtifactID), for as long as the projections
// (ProjectionRetentionMs; none: for ever) and within the memory budget.
// Its policy is delete, not compact: every key is written once (an id
// names one dispatch, and a dispatch's output commits once), so a cleaner
// would read the whole topic again and again and drop nothing.
func (l Layout) Artifacts() Topic { return l.t("spine.artifacts") }

// DriftSamples is the topic of artifact metric samples the drift monitor
// reads, keyed by thread.DriftKey (kind/route), spine.drift.samples.
func (l Layout) DriftSamples() Topic { return l.t(thread.TopicDriftSamples) }

// DriftStatus is the compacted topic of each kind and route's current
// drift status, keyed by thread.DriftKey, spine.drift.status.
func (l Layout) DriftStatus() Topic { return l.t(thread.TopicDriftStatus) }

// Projection is the compacted projection topic spine.proj.<name>.
func (l Layout) Projection(name string) Topic { return l.t("spine.proj." + name) }

// Schemas is the registry's compacted storage topic, _schemas.
func (l Layout) Schemas() Topic { return l.t("_schemas") }

// Group is the consumer group (and transactional id stem) of a processor.
func (l Layout) Group(processor string) string { return l.Prefix + "spine-" + processor }

// ThreadTopics lists the append-only topics keyed by trace_id.
func (l Layout) ThreadTopics() []Topic {
	ts := []Topic{l.Intents(), l.Control(), l.Dataplane()}
	for _, g := range thread.GateNames {
		ts = append(ts, l.Gate(g))
	}
	return ts
}

// Specs lists every topic Spine owns with its partitions and policy.
func (l Layout) Specs() []TopicSpec {
	p := l.Partitions
	if p < 1 {
		p = 1
	}
	var specs []TopicSpec
	for _, t := range l.ThreadTopics() {
		specs = append(specs, TopicSpec{Name: t, Partitions: p, Policy: Delete, Thread: true})
	}
	specs = append(specs, TopicSpec{Name: l.DLQ(), Partitions: p, Policy: Delete})
	for _, s := range thread.StatefulProcessors {
		specs = append(specs, TopicSpec{Name: l.State(s), Partitions: p, Policy: Compact})
	}
	proj := Compact
	if l.ProjectionRetentionMs > 0 {
		proj = CompactDelete
	}
	for _, n := range thread.ProjectionNames {
		specs = append(specs, TopicSpec{Name: l.Projection(n), Partitions: p, Policy: proj})
	}
	// Artifacts are kept as long as the projections that name them (see
	// Allocations).
	specs = append(specs, TopicSpec{Name: l.Artifacts(), Partitions: p, Policy: Delete})
	specs = append(specs, TopicSpec{Name: l.DriftSamples(), Partitions: p, Policy: Delete}, TopicSpec{Name: l.DriftStatus(), Partitions: 1, Policy: Compact})
	specs = append(specs,
		TopicSpec{Name: l.Flags(), Partitions: 1, Policy: Compact},
		TopicSpec{Name: l.Schemas(), Partitions: 1, Policy: Compact},
	)
	return specs
}

// MaxMessageBytes is the largest record batch Spine's topics take and its
// clients produce (max.message.bytes, kgo's ProducerBatchMaxBytes): room
// for a record of schemas.DefaultMaxRecordBytes (an input at the contract's
// ceiling) and its batch overhead. Kafka's default, about 1 MiB, would
// refuse a 1 MiB input with its envelope.
const MaxMessageBytes = schemas.DefaultMaxRecordBytes + 64<<10

// Configs returns the topic configs of s under l (see Allocations).
func (l Layout) Configs(s TopicSpec) map[string]*string {
	str := func(v string) *string { return &v }
	i64 := func(v int64) *string { return str(strconv.FormatInt(v, 10)) }
	a := l.allocation(s)
	cfg := map[string]*string{
		"cleanup.policy":    str(string(s.Policy)),
		"max.message.bytes": str(strconv.Itoa(MaxMessageBytes)),
	}
	if a.RetentionBytes > 0 {
		cfg["retention.bytes"] = i64(a.RetentionBytes)
	}
	if a.SegmentBytes > 0 {
		cfg["segment.bytes"] = i64(a.SegmentBytes)
	}
	switch s.Policy {
	case Delete:
		if a.RetentionMs > 0 {
			cfg["retention.ms"] = i64(a.RetentionMs)
		}
	case Compact, CompactDelete:
		// Roll segments hourly and drop tombstones after a day, so state
		// topics stay small (only configs both kfake and Kafka accept).
		cfg["segment.ms"] = i64(time.Hour.Milliseconds())
		cfg["delete.retention.ms"] = i64((24 * time.Hour).Milliseconds())
		// A compacted topic keeps its live keys however old; kfake
		// applies retention.ms (default 7 days) to every topic, so say
		// none explicitly (Kafka ignores it under compact alone).
		cfg["retention.ms"] = i64(a.RetentionMs)
	}
	return cfg
}

// EnsureTopics creates every topic of the layout that does not exist yet and
// checks that existing thread topics have the layout's partition count.
// replication is the replication factor, -1 for the broker default.
func EnsureTopics(ctx context.Context, adm *kadm.Client, l Layout, replication int16) error {
	specs := l.Specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = string(s.Name)
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("list topics: %w (is Kafka reachable?)", err)
	}
	var errs []error
	var created []string
	for _, s := range specs {
		if d, ok := existing[string(s.Name)]; ok && d.Err == nil {
			if s.Thread && int32(len(d.Partitions)) != s.Partitions {
				errs = append(errs, fmt.Errorf("topic %s has %d partitions, want %d: thread topics must be co-partitioned (set SPINE_PARTITIONS=%d or use another SPINE_TOPIC_PREFIX)",
					s.Name, len(d.Partitions), s.Partitions, len(d.Partitions)))
			}
			continue
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, replication, l.Configs(s), string(s.Name))
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
			continue
		}
		created = append(created, string(s.Name))
	}
	if len(errs) == 0 && len(created) > 0 {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := WaitLeaders(wctx, adm, created...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WaitLeaders polls until every partition of topics has a leader, or ctx
// ends: Apache Kafka answers CreateTopics before the partitions are served,
// and a produce in between fails with UNKNOWN_TOPIC_OR_PARTITION (a
// transactional one aborts its transaction).
//
// Every poll asks the broker: kadm's ListTopics answers from the client's
// metadata cache for up to MetadataMinAge (5 s), so after the ListTopics
// in EnsureTopics found the topics missing, a cached poll kept saying so
// for 5 s. kadm.WithAuthorizedOps is kadm's documented way around the cache.
func WaitLeaders(ctx context.Context, adm *kadm.Client, topics ...string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	uncached := kadm.WithAuthorizedOps(ctx)
	for {
		td, err := adm.ListTopics(uncached, topics...)
		if err == nil {
			err = leaderless(td, topics)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v are not served yet: %w", topics, err)
		case <-tick.C:
		}
	}
}

// leaderless reports the first of topics that is missing from td or has a
// partition without a leader.
func leaderless(td kadm.TopicDetails, topics []string) error {
	for _, t := range topics {
		d, ok := td[t]
		switch {
		case !ok || len(d.Partitions) == 0:
			return fmt.Errorf("topic %s not listed", t)
		case d.Err != nil:
			return fmt.Errorf("topic %s: %w", t, d.Err)
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: leader %d, err %v", t, p.Partition, p.Leader, p.Err)
			}
		}
	}
	return nil
}
