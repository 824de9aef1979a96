package pipeline

import (
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestLeaderless(t *testing.T) {
	t.Parallel()
	served := kadm.TopicDetail{Topic: "a", Partitions: kadm.PartitionDetails{
		0: {Partition: 0, Leader: 1}, 1: {Partition: 1, Leader: 2},
	}}
	for _, tc := range []struct {
		name string
		td   kadm.TopicDetails
		want string // "" means served
	}{
		{"served", kadm.TopicDetails{"a": served}, ""},
		{"not listed", kadm.TopicDetails{}, "topic a not listed"},
		{"no partitions yet", kadm.TopicDetails{"a": {Topic: "a"}}, "topic a not listed"},
		{"topic error", kadm.TopicDetails{"a": {Topic: "a", Err: kerr.UnknownTopicOrPartition, Partitions: served.Partitions}}, "UNKNOWN_TOPIC_OR_PARTITION"},
		{"a partition without a leader", kadm.TopicDetails{"a": {Topic: "a", Partitions: kadm.PartitionDetails{
			0: {Partition: 0, Leader: 1}, 1: {Partition: 1, Leader: -1},
		}}}, "partition 1: leader -1"},
		{"a partition error", kadm.TopicDetails{"a": {Topic: "a", Partitions: kadm.PartitionDetails{
			0: {Partition: 0, Leader: 1, Err: kerr.LeaderNotAvailable},
		}}}, "LEADER_NOT_AVAILABLE"},
	} {
		err := leaderless(tc.td, []string{"a"})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want served", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// TestSpecs pins the topics the layout creates: each one is read or
// written by a part of Spine. The projections keep no spine.state topic (their
// state is the spine.proj.* topics), so none is created for them.
func TestSpecs(t *testing.T) {
	t.Parallel()
	l := Layout{Prefix: "x.", Partitions: 3}
	want := []string{
		"x.spine.intents", "x.spine.control", "x.spine.dataplane",
		"x.gate.schema", "x.gate.performance", "x.gate.policy", "x.gate.drift", "x.gate.canary", "x.gate.verdict",
		"x.spine.dlq",
		"x.spine.state.orchestrator", "x.spine.state.dataplane", "x.spine.state.gates", "x.spine.state.drift",
		"x.spine.proj.runs", "x.spine.proj.golden", "x.spine.proj.gates", "x.spine.proj.artifacts",
		"x.spine.artifacts",
		"x.spine.drift.samples", "x.spine.drift.status",
		"x.spine.flags", "x._schemas",
	}
	var got []string
	for _, s := range l.Specs() {
		got = append(got, string(s.Name))
	}
	if !slices.Equal(got, want) {
		t.Errorf("topics %v\nwant %v", got, want)
	}
	if slices.Contains(got, string(l.State("projections"))) {
		t.Errorf("%s is created, but nothing reads or writes it", l.State("projections"))
	}
}
