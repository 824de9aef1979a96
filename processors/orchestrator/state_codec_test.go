package orchestrator

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
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
		rs.Input = s()
	}
	if r.IntN(3) == 0 {
		rs.Prov = &schemas.Provenance{Issuer: s(), Subject: s()}
		if r.IntN(2) == 0 {
			rs.Prov.VerifiedAt = time.UnixMilli(r.Int64N(1 << 45)).UTC()
			rs.Prov.Claims = map[string]string{s(): s(), "groups": "a,b"}
		}
	}
	if r.IntN(2) == 0 {
		rs.Flow = "sha256:" + s()
	}
	if r.IntN(3) == 0 {
		rs.Agent = s()
	}
	if r.IntN(3) == 0 {
		// A held verdict keeps the fields the orchestrator uses.
		rs.Early = &schemas.RuntimeEvent{EventID: s(), TraceID: rs.Trace, SpanID: s(), ParentSpanID: s(), EventType: "gate.verdict", ArtifactID: s()}
		if r.IntN(2) == 0 {
			rs.Early.Gate = &schemas.GateOutcome{Name: "verdict", Passed: r.IntN(2) == 0, Reason: s(), Measured: r.Float64(), Threshold: r.Float64()}
		}
		if r.IntN(2) == 0 {
			e := s()
			rs.Early.Error = &e
		}
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
		got, err := decodeRun(b, "")
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		for cut := 1; cut < len(b); cut += 7 {
			// Only a cut before a trailing field (input, provenance,
			// stateflow version) may decode, without it and those after.
			if r, err := decodeRun(b[:cut], ""); err == nil && (r.Agent != "" || r.Flow != "" && want.Agent == "" ||
				r.Prov != nil && want.Flow == "" && want.Agent == "" ||
				want.Input == "" && want.Prov == nil && want.Flow == "" && want.Agent == "") {
				t.Fatalf("a state cut at %d of %d bytes decoded", cut, len(b))
			}
		}
	}
	// A held verdict as JSON, as earlier builds wrote it, still decodes.
	early := &runState{Trace: "tr", Version: schemas.V1, State: StateExecuting}
	b, err := encodeRun(early)
	if err != nil {
		t.Fatal(err)
	}
	ej, err := json.Marshal(&schemas.RuntimeEvent{SpanID: "s", ParentSpanID: "p", EventType: "gate.verdict", SchemaVersion: schemas.V2,
		Timestamp: time.UnixMilli(1).UTC(), Gate: &schemas.GateOutcome{Name: "verdict", Passed: true}})
	if err != nil {
		t.Fatal(err)
	}
	b = binary.AppendUvarint(b[:len(b)-1], uint64(len(ej))) // replace the empty held verdict
	b = append(b, ej...)
	if r, err := decodeRun(b, ""); err != nil || r.Early == nil || r.Early.ParentSpanID != "p" || !r.Early.Gate.Passed {
		t.Fatalf("held verdict in JSON: %+v, %v", r, err)
	}
	// The JSON encoding of earlier builds still decodes.
	legacy := `{"t":"tr","a":"alice","k":"summarize","r":"baseline","v":"V1","s":"dispatched","n":3,"st":1700000000000,"dl":1700000030000,"ds":"abc"}`
	r, err := decodeRun([]byte(legacy), "")
	if err != nil || r.Trace != "tr" || r.State != StateDispatched || r.Seq != 3 || r.Dispatch != "abc" || r.Version != schemas.V1 {
		t.Fatalf("legacy JSON state: %+v, %v", r, err)
	}
}

// TestUvarintString: uvarintString reads what binary.Uvarint reads,
// including its answers for a truncated and an overflowing varint.
func TestUvarintString(t *testing.T) {
	cases := [][]byte{{}, {0}, {0x7f}, {0x80}, {0x80, 0x01}, {0xff, 0xff, 0x03},
		binary.AppendUvarint(nil, math.MaxUint64), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}}
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		cases = append(cases, binary.AppendUvarint(nil, r.Uint64()>>r.IntN(64)))
	}
	for _, b := range cases {
		v, n := binary.Uvarint(b)
		if gv, gn := uvarintString(string(b)); gv != v || gn != n {
			t.Errorf("%x: got %d, %d; binary.Uvarint %d, %d", b, gv, gn, v, n)
		}
	}
}

// BenchmarkDecodeRun: a run's state as the golden path decodes it at each
// event, with a held verdict.
func BenchmarkDecodeRun(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := randomRun(rng)
	for r.Early == nil {
		r = randomRun(rng)
	}
	enc, err := encodeRun(r)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRunBinary(enc, ""); err != nil {
			b.Fatal(err)
		}
	}
}
