package pipeline_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// murmur2 is Kafka's Utils.murmur2, written out from the Java source, so
// the test checks kgo against Kafka rather than against itself.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// kafkaPartition is Kafka's default partition of a keyed record.
func kafkaPartition(key []byte, n int) int32 {
	return int32((murmur2(key) & 0x7fffffff) % int32(n))
}

func TestMurmur2Vectors(t *testing.T) {
	t.Parallel()
	// Java Utils.murmur2 values, as librdkafka's unit test records them.
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"kafka", 0xd067cf64},
		{"giberish123456789", 0x8f552b0c},
		{"1234", 0x9fc97b14},
		{"234", 0xe7c009ca},
		{"34", 0x873930da},
		{"4", 0x5a4b5ca1},
	} {
		if got := uint32(murmur2([]byte(tc.in))); got != tc.want {
			t.Errorf("murmur2(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// TestCoPartitioning: kgo's default partitioner is Kafka's murmur2, so a
// key lands on the same partition number in every topic of one partition
// count, and the loop writes a key's state to its inputs' partition.
func TestCoPartitioning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5)
	const n = 200
	e.produce(t, e.layout.Intents(), msgs("p", n, ""), func(i int) string { return fmt.Sprintf("trace-%d", i) })
	e.start(t, "orchestrator", &counter{out: e.layout.Control()})
	in := e.readAll(t, e.layout.Intents(), n, 0, true)
	out := e.readAll(t, e.layout.Control(), n, 0, true)
	state := e.readAll(t, e.layout.State("orchestrator"), n, 200*time.Millisecond, true)
	for name, recs := range map[string][]*kgo.Record{"intents": in, "control": out, "state": state} {
		for _, r := range recs {
			if want := kafkaPartition(r.Key, 5); r.Partition != want {
				t.Errorf("%s: key %s on partition %d, Kafka's murmur2 says %d", name, r.Key, r.Partition, want)
			}
		}
	}
}
