package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/spinerun/spine/schemas/thread"
)

// Topic is a Kafka topic name, prefix included.
type Topic string

// CleanupPolicy is a topic's cleanup.policy.
type CleanupPolicy string

// The two cleanup policies Spine uses: the thread is append-only, state is
// compacted.
const (
	Delete  CleanupPolicy = "delete"
	Compact CleanupPolicy = "compact"
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
	// RetentionMs and RetentionBytes apply to thread topics.
	RetentionMs    int64
	RetentionBytes int64
}

// NewLayout returns the layout a config describes.
func NewLayout(c *Config) Layout {
	return Layout{
		Prefix:         c.TopicPrefix,
		Partitions:     c.Partitions,
		RetentionMs:    c.ThreadRetention.Milliseconds(),
		RetentionBytes: c.ThreadRetentionBytesResolved(),
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
	for _, n := range thread.ProjectionNames {
		specs = append(specs, TopicSpec{Name: l.Projection(n), Partitions: p, Policy: Compact})
	}
	specs = append(specs,
		TopicSpec{Name: l.Flags(), Partitions: 1, Policy: Compact},
		TopicSpec{Name: l.Schemas(), Partitions: 1, Policy: Compact},
	)
	return specs
}

// Configs returns the topic configs of s under l.
func (l Layout) Configs(s TopicSpec) map[string]*string {
	str := func(v string) *string { return &v }
	cfg := map[string]*string{"cleanup.policy": str(string(s.Policy))}
	if s.Policy == Delete {
		if l.RetentionMs > 0 {
			cfg["retention.ms"] = str(strconv.FormatInt(l.RetentionMs, 10))
		}
		if l.RetentionBytes > 0 {
			cfg["retention.bytes"] = str(strconv.FormatInt(l.RetentionBytes, 10))
		}
	} else {
		// Roll segments hourly and drop tombstones after a day, so state
		// topics stay small (only configs both kfake and Kafka accept).
		cfg["segment.ms"] = str(strconv.FormatInt(time.Hour.Milliseconds(), 10))
		cfg["delete.retention.ms"] = str(strconv.FormatInt((24 * time.Hour).Milliseconds(), 10))
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
func WaitLeaders(ctx context.Context, adm *kadm.Client, topics ...string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		td, err := adm.ListTopics(ctx, topics...)
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
