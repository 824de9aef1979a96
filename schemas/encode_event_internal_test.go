package schemas

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// hambaAPI is the hamba configuration Serde encodes with.
var hambaAPI = avro.Config{TagKey: "avro", MaxByteSliceSize: DefaultMaxRecordBytes, MaxSliceAllocSize: DefaultMaxRecordBytes}.Freeze()

// contractsV holds today's RuntimeEvent schema of each version.
var contractsV = sync.OnceValue(func() map[ContractVersion]avro.Schema {
	m := map[ContractVersion]avro.Schema{}
	for _, v := range Versions {
		sch, err := parseContract(ContractRuntimeEvent, v)
		if err != nil {
			panic(err)
		}
		m[v] = sch
	}
	return m
})

func hambaBody(t testing.TB, ev *RuntimeEvent, v ContractVersion) []byte {
	t.Helper()
	b, err := hambaAPI.Marshal(contractsV()[v], ev)
	if err != nil {
		t.Fatalf("hamba: %v", err)
	}
	return b
}

// TestEventBodyEncoderCoversContracts: the hand-written encoder is written
// against today's RuntimeEvent contracts. A contract whose canonical form
// changes must fail here until appendEventBody (and its fingerprints) are
// brought in line with it.
func TestEventBodyEncoderCoversContracts(t *testing.T) {
	for _, v := range Versions {
		sch, err := parseContract(ContractRuntimeEvent, v)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sch.Fingerprint()); got != eventBodyFingerprints[v] {
			t.Errorf("RuntimeEvent %s fingerprint %s, appendEventBody was written for %s: update it to the contract", v, got, eventBodyFingerprints[v])
		}
	}
}

// randomEvent fills every field of a RuntimeEvent from r; each optional
// part is left unset half the time. Maps hold at most one entry, so that
// hamba's bytes (in Go's map order) are comparable.
func randomEvent(r *rand.Rand) *RuntimeEvent {
	str := func() string {
		switch r.IntN(4) {
		case 0:
			return ""
		case 1:
			return "é✓\u2028ключ"[:r.IntN(3)*2]
		}
		b := make([]byte, r.IntN(200))
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		return string(b)
	}
	m := func() map[string]string {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		return map[string]string{str(): str()}
	}
	ts := func() time.Time {
		if r.IntN(4) == 0 {
			return time.Time{}
		}
		return time.Unix(r.Int64N(1<<34)-1<<33, r.Int64N(1e9)).UTC()
	}
	f := func() float64 {
		return []float64{0, 0.5, -1, math.Inf(1), math.NaN(), r.NormFloat64()}[r.IntN(6)]
	}
	i64 := func() int64 { return []int64{0, 1, -1, math.MaxInt64, math.MinInt64, r.Int64()}[r.IntN(6)] }
	i32 := func() int32 { return []int32{0, 1, -1, math.MaxInt32, math.MinInt32, r.Int32()}[r.IntN(6)] }
	ev := &RuntimeEvent{
		EventID: str(), TraceID: str(), SpanID: str(), ParentSpanID: str(), Actor: str(), Intent: str(), ArtifactID: str(),
		SchemaVersion: Versions[r.IntN(len(Versions))], Timestamp: ts(), RunStarted: ts(),
		Phase:     []Phase{PhaseControl, PhaseData, PhaseGate}[r.IntN(3)],
		EventType: EventType(str()), State: str(), Route: str(), Attempt: i32(), Priority: i32(), Tenant: str(),
		Attributes: m(), Input: str(), StateflowVersion: str(),
	}
	if r.IntN(2) == 0 {
		ev.Artifact = &ArtifactSummary{ContentType: str(), Summary: str(), Score: f(), SizeBytes: i64(), LatencyMs: i64()}
	}
	if r.IntN(2) == 0 {
		ev.Gate = &GateOutcome{Name: str(), Passed: r.IntN(2) == 0, Reason: str(), Measured: f(), Threshold: f(),
			Rule: str(), PolicyVersion: str(), Evidence: m()}
	}
	if r.IntN(2) == 0 {
		e := str()
		ev.Error = &e
	}
	if r.IntN(2) == 0 {
		ev.Usage = &Usage{InputTokens: i64(), OutputTokens: i64(), CostUSD: f()}
	}
	if r.IntN(2) == 0 {
		ev.Provenance = &Provenance{Issuer: str(), Subject: str(), VerifiedAt: ts(), Claims: m()}
	}
	return ev
}

// TestEventBodyMatchesHamba: the hand-written encoder writes hamba's bytes
// for every field, set and unset, under both contract versions.
func TestEventBodyMatchesHamba(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		ev := randomEvent(r)
		for _, v := range Versions {
			want := hambaBody(t, ev, v)
			got, ok := appendEventBody([]byte("prefix"), ev, v)
			if !ok {
				t.Fatalf("event %d %s: refused %+v", i, v, ev)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("event %d %s: %+v\ngot  %x\nwant %x", i, v, ev, got[6:], want)
			}
		}
	}
}

// TestEventBodyLargeMaps: maps of more entries than a block holds are
// written in blocks, as hamba writes them; entries come in Go's map order,
// so the two are compared by what they decode to.
func TestEventBodyLargeMaps(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 99, 100, 101, 250} {
		ev := randomEvent(rand.New(rand.NewPCG(uint64(n), 0)))
		ev.SchemaVersion = V2
		ev.Attributes = map[string]string{}
		for i := range n {
			ev.Attributes["k"+strconv.Itoa(i)] = "v" + strconv.Itoa(i)
		}
		want := hambaBody(t, ev, V2)
		got, ok := appendEventBody(nil, ev, V2)
		if !ok || len(got) != len(want) {
			t.Fatalf("%d entries: ok=%v, %d bytes, hamba %d", n, ok, len(got), len(want))
		}
		sch, _ := parseContract(ContractRuntimeEvent, V2)
		var a, b RuntimeEvent
		if err := hambaAPI.Unmarshal(sch, got, &a); err != nil {
			t.Fatalf("%d entries: decode: %v", n, err)
		}
		if err := hambaAPI.Unmarshal(sch, want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Attributes, b.Attributes) || len(a.Attributes) != n {
			t.Fatalf("%d entries: decoded %d entries, hamba's %d", n, len(a.Attributes), len(b.Attributes))
		}
	}
}

// TestEventBodyRefusesWhatHambaRefuses: an enum outside its symbols is
// left to hamba, which names it.
func TestEventBodyRefusesWhatHambaRefuses(t *testing.T) {
	t.Parallel()
	for name, ev := range map[string]*RuntimeEvent{
		"phase":   {SchemaVersion: V1, Phase: "nowhere"},
		"version": {SchemaVersion: 7, Phase: PhaseGate},
	} {
		if b, ok := appendEventBody([]byte("x"), ev, V2); ok || string(b) != "x" {
			t.Errorf("%s: ok=%v, %q", name, ok, b)
		}
		sch, _ := parseContract(ContractRuntimeEvent, V2)
		if _, err := hambaAPI.Marshal(sch, ev); err == nil {
			t.Errorf("%s: hamba encoded it", name)
		}
	}
}

// FuzzEventBody compares the hand-written encoder with hamba on events
// built from the fuzzer's values.
func FuzzEventBody(f *testing.F) {
	f.Add(uint64(1), "ev", "gate.passed", "k", "v", int64(1764151200000), int32(2), 0.5, true)
	f.Add(uint64(7), "", "", "", "", int64(-1), int32(-1), math.Inf(-1), false)
	f.Fuzz(func(t *testing.T, seed uint64, id, typ, k, val string, ms int64, attempt int32, score float64, v2 bool) {
		ev := randomEvent(rand.New(rand.NewPCG(seed, seed>>1)))
		ev.EventID, ev.EventType, ev.Attempt = id, EventType(typ), attempt
		ev.Timestamp = time.UnixMilli(ms)
		ev.Attributes = map[string]string{k: val}
		ev.Artifact = &ArtifactSummary{Summary: val, Score: score}
		v := V1
		if v2 {
			v = V2
		}
		want := hambaBody(t, ev, v)
		got, ok := appendEventBody(nil, ev, v)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("ok=%v\ngot  %x\nwant %x", ok, got, want)
		}
	})
}

// goldenPathEvent is a gate.passed event as the golden path writes it:
// W3C ids, most of the envelope empty.
func goldenPathEvent() *RuntimeEvent {
	t0 := time.Date(2026, 12, 6, 21, 0, 0, 123456789, time.UTC)
	return &RuntimeEvent{
		EventID: "4bf92f3577b34da6a3ce929d0e0e4736", TraceID: "0af7651916cd43dd8448eb211c80319c",
		SpanID: "00f067aa0ba902b7", ParentSpanID: "b7ad6b7169203331", Actor: "agent:bench", Intent: "summarize",
		ArtifactID: "art-4bf92f3577b34da6", SchemaVersion: V2, Timestamp: t0, RunStarted: t0.Add(-3 * time.Millisecond),
		Phase: PhaseGate, EventType: "gate.passed", State: "gating",
		Gate:  &GateOutcome{Name: "performance", Passed: true, Reason: "latency within budget", Measured: 3, Threshold: 2000},
		Route: "baseline", StateflowVersion: "sha256:0123456789ab",
	}
}

// TestEventBodyPinned pins the bytes of a golden-path event under both
// contract versions: the wire format does not change with the encoder.
func TestEventBodyPinned(t *testing.T) {
	t.Parallel()
	want := map[ContractVersion]string{
		V1: "403462663932663335373762333464613661336365393239643065306534373336403061663736353139313663643433" +
			"646438343438656232313163383033313963203030663036376161306261393032623720623761643662373136393230" +
			"33333331166167656e743a62656e63681273756d6d6172697a65286172742d3462663932663335373762333464613602" +
			"f6b3c0d2c968f0b3c0d2c9680416676174652e7061737365640c676174696e67000216706572666f726d616e6365012a" +
			"6c6174656e63792077697468696e2062756467657400000000000008400000000000409f400000000000000000267368" +
			"613235363a303132333435363738396162",
		V2: "403462663932663335373762333464613661336365393239643065306534373336403061663736353139313663643433" +
			"646438343438656232313163383033313963203030663036376161306261393032623720623761643662373136393230" +
			"33333331166167656e743a62656e63681273756d6d6172697a65286172742d3462663932663335373762333464613602" +
			"f6b3c0d2c968f0b3c0d2c9680416676174652e7061737365640c676174696e67000216706572666f726d616e6365012a" +
			"6c6174656e63792077697468696e2062756467657400000000000008400000000000409f4000000010626173656c696e" +
			"650000000000000000267368613235363a303132333435363738396162",
	}
	for _, v := range Versions {
		ev := goldenPathEvent()
		got, _ := appendEventBody(nil, ev, v)
		if h := fmt.Sprintf("%x", hambaBody(t, ev, v)); h != want[v] {
			t.Errorf("%s: hamba wrote %s, pinned %s", v, h, want[v])
		}
		if h := fmt.Sprintf("%x", got); h != want[v] {
			t.Errorf("%s: wrote %s, pinned %s", v, h, want[v])
		}
	}
}

// BenchmarkEventBody: the golden path's gate.passed and a full event,
// hand-written against hamba.
func BenchmarkEventBody(b *testing.B) {
	full := randomEvent(rand.New(rand.NewPCG(3, 4)))
	full.Attributes = map[string]string{"model": "m-1"}
	for name, ev := range map[string]*RuntimeEvent{"golden": goldenPathEvent(), "random": full} {
		sch, _ := parseContract(ContractRuntimeEvent, V2)
		b.Run(name+"/hamba", func(b *testing.B) {
			b.ReportAllocs()
			w := avro.NewWriter(nil, 512, avro.WithWriterConfig(hambaAPI))
			for b.Loop() {
				w.Reset(nil)
				w.WriteVal(sch, ev)
			}
		})
		b.Run(name+"/appendEventBody", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf, _ = appendEventBody(buf[:0], ev, V2)
			}
		})
	}
}

// TestEventBodySizeHint: the golden path's events fit their hint, so each
// record takes one allocation.
func TestEventBodySizeHint(t *testing.T) {
	t.Parallel()
	for _, v := range Versions {
		ev := goldenPathEvent()
		ev.Artifact = &ArtifactSummary{ContentType: "text/plain", Summary: "a summary", Score: 0.9, SizeBytes: 1 << 20, LatencyMs: 1500}
		ev.Usage = &Usage{InputTokens: 1000, OutputTokens: 1000, CostUSD: 0.01}
		e := "upstream 503"
		ev.Error = &e
		ev.Attributes = map[string]string{"model": "llama3.2"}
		b, _ := appendEventBody(nil, ev, v)
		if h := eventBodySizeHint(ev); len(b) > h {
			t.Errorf("%s: body of %d bytes over its hint of %d", v, len(b), h)
		}
	}
}
