// Package kafkatest gives tests a Kafka cluster: the broker named by
// KAFKA_BROKERS when set (the real Apache Kafka suite), otherwise a fresh
// in-process kfake cluster per call. One suite, every backend.
package kafkatest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

// External reports whether tests run against an external broker
// (KAFKA_BROKERS set).
func External() bool { return strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" }

// Backend names the backend in test logs: "kafka" or "kfake".
func Backend() string {
	if External() {
		return "kafka"
	}
	return "kfake"
}

// Brokers returns seed brokers for a test. With KAFKA_BROKERS set they are
// those brokers, shared by every test, so tests isolate themselves with
// Prefix. Otherwise a new in-memory kfake cluster is started and closed
// with the test.
func Brokers(t testing.TB) []string {
	t.Helper()
	if External() {
		var bs []string
		for _, b := range strings.Split(os.Getenv("KAFKA_BROKERS"), ",") {
			if b = strings.TrimSpace(b); b != "" {
				bs = append(bs, b)
			}
		}
		return bs
	}
	e := pipeline.NewEmbedded(pipeline.EmbeddedConfig{CleanerIntervalMs: 1000})
	if err := e.Start(); err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(e.Close)
	return e.Addrs()
}

// Prefix returns a topic prefix unique to this call, so tests sharing one
// external broker never see each other's topics, groups or transactional ids.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "_", " ", "_", "#", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + hex.EncodeToString(b[:]) + "."
}

// Client returns a plain client on brokers, closed with the test.
func Client(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Layout returns a test broker's seed brokers and a layout of partitions
// under a prefix of the test's own, with every topic of the layout created.
func Layout(t testing.TB, partitions int32) ([]string, pipeline.Layout) {
	t.Helper()
	brokers := Brokers(t)
	l := pipeline.Layout{Prefix: Prefix(t), Partitions: partitions}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(Client(t, brokers)), l, -1); err != nil {
		t.Fatalf("create the layout's topics: %v", err)
	}
	return brokers, l
}
