package loadtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/loadtest"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

func TestChainPushesEveryRecordThroughThreeHops(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	// A stalled chain fails the test instead of hanging until the go test
	// timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	res, err := loadtest.Chain(ctx, loadtest.ChainConfig{
		Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Prefix: kafkatest.Prefix(t), Records: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 2000 || res.Events != 6000 || res.Latency.Count != 2000 || res.EventsPerSec <= 0 {
		t.Fatalf("result %+v", res)
	}
	t.Logf("raw chain on %s: %.0f events/s, p50 %d ms, p99 %d ms", kafkatest.Backend(), res.EventsPerSec, res.Latency.P50, res.Latency.P99)
}
