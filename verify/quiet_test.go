package verify_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// TestReadWaitsOutAQuietBroker: a broker that answers no fetch for longer
// than verify's idle bound (the embedded broker compacting a large topic
// holds every request for seconds) does not end the read early while its
// last stable offsets say committed records are still to come: every run
// is read and judged, no partition is reported as ended idle.
func TestReadWaitsOutAQuietBroker(t *testing.T) {
	t.Parallel()
	// The stall is made on the embedded broker's request loop (kfake's
	// control functions run on it); a real broker cannot be held so.
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	l := pipeline.Layout{Prefix: kafkatest.Prefix(t), Partitions: 2}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), l, -1); err != nil {
		t.Fatal(err)
	}
	r := newRigOn(t, brokers, l)
	r.write(t, r.goldenRuns(30, time.Now().Add(-time.Minute)), false)

	const stall = 13 * time.Second // more than verify's 5 idle polls of 2 s
	var armed atomic.Bool
	armed.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		if armed.CompareAndSwap(true, false) {
			time.Sleep(stall) // the whole broker waits, as in a compaction pass
		}
		return nil, nil, false
	})
	began := time.Now()
	rep := r.verify(t, nil)
	if armed.Load() {
		t.Fatal("verify sent no fetch")
	}
	took := time.Since(began)
	if len(rep.EndedIdle) > 0 {
		t.Errorf("partitions ended idle during the stall (verify returned after %s): %v", took, rep.EndedIdle)
	}
	wantClean(t, rep, 30)
	if took < stall {
		t.Fatalf("verify returned after %s, before the %s stall ended", took, stall)
	}
}
