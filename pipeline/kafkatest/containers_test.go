package kafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"

	"github.com/spinerun/spine/pipeline/kafkatest"
)

// containersImage is the Kafka image testcontainers-go's kafka module runs:
// v0.40.0 of the module only accepts Confluent's KRaft images.
const containersImage = "confluentinc/confluent-local:7.5.0"

// TestContainersKafka runs the transaction smoke test against a Kafka
// started by testcontainers-go, for laptops with a Docker engine. Where no
// engine answers (CI here has the docker CLI but no daemon) it skips and
// says so; CI covers real Kafka with `make test-kafka` instead.
func TestContainersKafka(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("SKIPPED: testcontainers Kafka is not run with -short")
	}
	if err := dockerEngine(t.Context()); err != nil {
		t.Skipf("SKIPPED: no Docker engine, so no testcontainers Kafka (%v); "+
			"the other tests ran on %s, and `make test-kafka` runs them on real Apache Kafka", err, kafkatest.Backend())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ctr, err := tckafka.Run(ctx, containersImage, tckafka.WithClusterID("spine-testcontainers"))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start %s: %v", containersImage, err)
	}
	brokers, err := ctr.Brokers(ctx)
	if err != nil {
		t.Fatalf("container brokers: %v", err)
	}
	t.Logf("backend testcontainers (%s), brokers %v", containersImage, brokers)
	testTransactions(t, brokers)
}

// dockerEngine reports why no Docker engine can be used, or nil. It never
// panics: testcontainers' provider lookup can panic without an engine.
func dockerEngine(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker provider panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := testcontainers.ProviderDocker.GetProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Health(ctx)
}
