package drift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// jsonEvents is the thread codec of the broker test: events as JSON (the
// monitor only encodes them).
type jsonEvents struct{}

func (jsonEvents) Decode(_ context.Context, _ pipeline.Topic, b []byte) (any, schemas.ContractVersion, error) {
	var ev schemas.RuntimeEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, 0, pipeline.Reject("bad_json", "%v", err)
	}
	return &ev, schemas.V2, nil
}

func (jsonEvents) Encode(_ context.Context, _ pipeline.Topic, _ schemas.ContractVersion, v any) ([]byte, error) {
	return json.Marshal(v)
}

// TestMonitorWindowsSurviveRestartAndRebalance runs the monitor on the
// broker with windows of 20 for four kinds: 30 samples each (the
// reference and half a window), a restart, 10 more (the first window
// completes only if the restarted instance restored the state), then a
// second instance joins (a rebalance moves partitions to it, which
// restore their state) and 20 more each, the last kind's shifted. Every
// kind must show exactly windows 1 and 2, the shifted one drifted, and the
// status view must agree.
func TestMonitorWindowsSurviveRestartAndRebalance(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	l := pipeline.Layout{Prefix: kafkatest.Prefix(t), Partitions: 3}
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, adm, l, -1); err != nil {
		t.Fatal(err)
	}
	cfg := gates.DefaultDriftConfig()
	cfg.Window = 20
	start := func(instance string) func() {
		m, err := drift.New(l, drift.Config{Drift: cfg})
		if err != nil {
			t.Fatal(err)
		}
		p, err := pipeline.NewProcessor(drift.Name, m,
			pipeline.WithKafka(kgo.SeedBrokers(brokers...)),
			pipeline.WithLayout(l),
			pipeline.WithInputs(m.Topics()...),
			pipeline.WithCodec(drift.NewCodec(jsonEvents{}, l)),
			pipeline.WithInstanceID(instance),
			pipeline.WithGroupTimeouts(6*time.Second, 10*time.Second),
		)
		if err != nil {
			t.Fatal(err)
		}
		return spinetest.Start(t, "drift "+instance, p.Run)
	}
	kinds := []string{"k0", "k1", "k2", "k3"}
	gens := map[string]*gen{}
	for i, k := range kinds {
		gens[k] = &gen{rng: rand.New(rand.NewPCG(uint64(i), 9)), kind: k, route: thread.RouteBaseline}
	}
	pr := kafkatest.Client(t, brokers)
	produce := func(n int) {
		t.Helper()
		var recs []*kgo.Record
		for range n {
			for _, k := range kinds {
				s := gens[k].next()
				recs = append(recs, &kgo.Record{Topic: string(l.DriftSamples()), Key: []byte(thread.DriftKey(s.Kind, s.Route)), Value: drift.AppendSample(nil, s)})
			}
		}
		if err := pr.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// consumed waits until the group committed every sample produced.
	consumed := func(n int64) {
		t.Helper()
		spinetest.Eventually(t, 60*time.Second, func() error {
			os, err := adm.FetchOffsets(t.Context(), l.Group(drift.Name))
			if err != nil {
				return err
			}
			var sum int64
			os.Each(func(o kadm.OffsetResponse) { sum += o.At })
			if sum < n {
				return fmt.Errorf("%d of %d samples committed", sum, n)
			}
			return nil
		})
	}

	stop := start("a")
	produce(30)
	consumed(4 * 30)
	stop()
	start("a") // restarted: restores spine.state.drift
	produce(10)
	consumed(4 * 40)
	start("b") // a rebalance: b takes partitions, restoring their state
	spinetest.Eventually(t, 30*time.Second, func() error {
		gs, err := adm.DescribeGroups(t.Context(), l.Group(drift.Name))
		if err != nil {
			return err
		}
		if g := gs[l.Group(drift.Name)]; g.State != "Stable" || len(g.Members) != 2 {
			return fmt.Errorf("group %s with %d members", g.State, len(g.Members))
		}
		return nil
	})
	gens["k3"].scoreShift = 0.3
	produce(20)
	consumed(4 * 60)

	// gate.drift: windows 1 and 2 of every kind, exactly once.
	cl := kafkatest.Client(t, brokers, kgo.ConsumeTopics(string(l.Gate(thread.DriftGate))), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string][]*schemas.RuntimeEvent{}
	spinetest.Eventually(t, 30*time.Second, func() error {
		pctx, pcancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer pcancel()
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var ev schemas.RuntimeEvent
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Errorf("gate.drift record: %v", err)
				return
			}
			if string(r.Key) != ev.TraceID || !thread.IsDriftTrace(ev.TraceID) {
				t.Errorf("key %s, trace %s", r.Key, ev.TraceID)
			}
			got[ev.Intent] = append(got[ev.Intent], &ev)
		})
		n := 0
		for _, evs := range got {
			n += len(evs)
		}
		if n < 8 {
			return fmt.Errorf("%d of 8 window events", n)
		}
		return nil
	})
	for _, k := range kinds {
		evs := got[k]
		if len(evs) != 2 || evs[0].Gate.Evidence["window"] != "1" || evs[1].Gate.Evidence["window"] != "2" {
			t.Errorf("%s: %d events %v, want windows 1 and 2", k, len(evs), evs)
			continue
		}
		if want := k != "k3"; evs[1].Gate.Passed != want || !evs[0].Gate.Passed {
			t.Errorf("%s: windows passed %v, %v; want true, %v (%s)", k, evs[0].Gate.Passed, evs[1].Gate.Passed, want, evs[1].Gate.Reason)
		}
	}

	// The status view: current once started, the last window of each.
	st := drift.NewStatuses([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l, nil)
	if _, _, err := st.DriftStatus("k0", thread.RouteBaseline); !errors.Is(err, drift.ErrStatusNotReady) {
		t.Errorf("a view not yet run: %v, want ErrStatusNotReady", err)
	}
	spinetest.Start(t, "statuses", st.Run)
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	if err := st.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		s, ok, err := st.DriftStatus(k, thread.RouteBaseline)
		if err != nil || !ok || s.Window != 2 || s.Drifted != (k == "k3") || s.NRef != 20 || s.NCur != 20 {
			t.Errorf("status of %s: %+v %v %v", k, s, ok, err)
		}
	}
	if _, ok, err := st.DriftStatus("unknown", thread.RouteBaseline); ok || err != nil {
		t.Errorf("status of an unknown kind: %v %v", ok, err)
	}
}
