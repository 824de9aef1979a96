package orchestrator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas"
)

func randomRun(r *rand.Rand) *runState {
	s := func() string { return fmt.Sprintf("%x", r.Uint64()>>(r.IntN(64))) }
	rs := &runState{
		Trace: s(), IntentID: s(), Actor: s(), Kind: s(), Tenant: s(), Route: s(), Version: schemas.ContractVersion(1 + r.IntN(2)),
		Priority: int32(r.IntN(100) - 50), State: State(s()), Seq: r.Uint32(), Attempt: int32(r.IntN(9)), Started: r.Int64N(1 << 45),
		Deadline: r.Int64N(1 << 45), RetryAt: r.Int64N(1 << 45), RunDeadline: r.Int64N(1 << 45), Span: s(), Dispatch: s(),
		Delivered: s(), Artifact: s(), Waiting: r.IntN(2) == 0, Admitted: r.IntN(2) == 0,
	}
	if r.IntN(2) == 0 {
		rs.Attrs = map[string]string{s(): s(), s(): ""}
	}
	if r.IntN(3) == 0 {
		rs.Early = &schemas.RuntimeEvent{TraceID: rs.Trace, SpanID: s(), EventType: "gate.verdict", SchemaVersion: schemas.V2,
			Timestamp: time.UnixMilli(r.Int64N(1 << 40)).UTC(), Gate: &schemas.GateOutcome{Name: "verdict", Passed: true}}
	}
	return rs
}

func TestRunStateCodec(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		want := randomRun(rng)
		b, err := encodeRun(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRun(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if want.Early != nil {
			// JSON round trips the held event; compare it through JSON.
			wj, _ := json.Marshal(want.Early)
			gj, _ := json.Marshal(got.Early)
			if string(wj) != string(gj) {
				t.Fatalf("early verdict %s != %s", gj, wj)
			}
			got.Early, want.Early = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		for cut := 1; cut < len(b); cut += 7 {
			if _, err := decodeRun(b[:cut]); err == nil {
				t.Fatalf("a state cut at %d of %d bytes decoded", cut, len(b))
			}
		}
	}
	// The JSON encoding of earlier builds still decodes.
	legacy := `{"t":"tr","a":"alice","k":"summarize","r":"baseline","v":"V1","s":"dispatched","n":3,"st":1700000000000,"dl":1700000030000,"ds":"abc"}`
	r, err := decodeRun([]byte(legacy))
	if err != nil || r.Trace != "tr" || r.State != StateDispatched || r.Seq != 3 || r.Dispatch != "abc" || r.Version != schemas.V1 {
		t.Fatalf("legacy JSON state: %+v, %v", r, err)
	}
}
