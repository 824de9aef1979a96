package schemas

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/hamba/avro/v2"
)

// resolvedV2 holds, per writer version, today's RuntimeEvent schema
// resolved for a V2 reader.
var resolvedV2 = sync.OnceValue(func() map[ContractVersion]avro.Schema {
	m := map[ContractVersion]avro.Schema{}
	for _, v := range Versions {
		writer, err := parseContract(ContractRuntimeEvent, v)
		if err != nil {
			panic(err)
		}
		reader, err := parseContract(ContractRuntimeEvent, V2)
		if err != nil {
			panic(err)
		}
		if m[v], err = avro.NewSchemaCompatibility().Resolve(reader, writer); err != nil {
			panic(err)
		}
	}
	return m
})

// hambaRead decodes body, written with today's RuntimeEvent schema of
// version v, as a V2 reader with hamba; ok is false on a hamba error.
func hambaRead(t testing.TB, body []byte, v ContractVersion) (*RuntimeEvent, bool) {
	t.Helper()
	r := avro.NewReader(nil, 0, avro.WithReaderConfig(hambaAPI))
	r.Reset(body)
	ev := new(RuntimeEvent)
	r.ReadVal(resolvedV2()[v], ev)
	if r.Error != nil && !errors.Is(r.Error, io.EOF) {
		return nil, false
	}
	return ev, true
}

// sameEvent is reflect.DeepEqual with doubles compared by their bits (a
// NaN equals a NaN of the same bits).
func sameEvent(a, b *RuntimeEvent) bool {
	ca, fa := floatsOut(a)
	cb, fb := floatsOut(b)
	return reflect.DeepEqual(ca, cb) && reflect.DeepEqual(fa, fb)
}

// floatsOut returns a copy of ev with its doubles zeroed, and their bits.
func floatsOut(ev *RuntimeEvent) (*RuntimeEvent, []uint64) {
	c := *ev
	var fs []uint64
	out := func(f *float64) {
		fs = append(fs, math.Float64bits(*f))
		*f = 0
	}
	if a := c.Artifact; a != nil {
		x := *a
		out(&x.Score)
		c.Artifact = &x
	}
	if g := c.Gate; g != nil {
		x := *g
		out(&x.Measured)
		out(&x.Threshold)
		c.Gate = &x
	}
	if u := c.Usage; u != nil {
		x := *u
		out(&x.CostUSD)
		c.Usage = &x
	}
	return &c, fs
}

// TestReadEventBodyMatchesHamba: random events of both versions decode to
// what hamba decodes them to, V1's V2-only fields at their defaults.
func TestReadEventBodyMatchesHamba(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 5000 {
		src := randomEvent(r)
		for _, v := range Versions {
			body, _ := appendEventBody(nil, src, v)
			want, ok := hambaRead(t, body, v)
			if !ok {
				t.Fatalf("event %d %s: hamba refused its own bytes", i, v)
			}
			got := new(RuntimeEvent)
			if !readEventBody(body, v, got) {
				t.Fatalf("event %d %s: refused %x", i, v, body)
			}
			if !sameEvent(got, want) {
				t.Fatalf("event %d %s:\ngot  %+v\nwant %+v", i, v, got, want)
			}
		}
	}
}

// TestReadEventBodyRefusesTruncated: every strict prefix of a body is
// refused (the caller then asks hamba, which names the problem).
func TestReadEventBodyRefusesTruncated(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	for range 50 {
		for _, v := range Versions {
			body, _ := appendEventBody(nil, randomEvent(r), v)
			for n := range len(body) {
				if readEventBody(body[:n], v, new(RuntimeEvent)) {
					t.Fatalf("%s: a %d-byte prefix of %x decoded", v, n, body)
				}
			}
			if readEventBody(append(body, 0), v, new(RuntimeEvent)) {
				t.Fatalf("%s: a trailing byte decoded", v)
			}
		}
	}
}

// FuzzReadEventBody: on any body the wire scan lets through, readEventBody
// and hamba agree; the decoder never panics on any bytes.
func FuzzReadEventBody(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 8 {
		body, _ := appendEventBody(nil, randomEvent(r), V2)
		f.Add(body, true)
		body, _ = appendEventBody(nil, randomEvent(r), V1)
		f.Add(body, false)
	}
	f.Add([]byte{0x02, 0x61, 0xff}, true)
	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		v := V1
		if v2 {
			v = V2
		}
		got := new(RuntimeEvent)
		ok := readEventBody(body, v, got)
		writer := contractsV()[v]
		if n, derr := scanBody(writer, body, DefaultMaxRecordBytes); derr != nil || n != len(body) {
			return // the scan refuses it: neither decoder sees it
		}
		want, hok := hambaRead(t, body, v)
		if ok != hok {
			t.Fatalf("readEventBody ok=%v, hamba ok=%v on %x", ok, hok, body)
		}
		if ok && !sameEvent(got, want) {
			t.Fatalf("%x:\ngot  %+v\nwant %+v", body, got, want)
		}
	})
}

// BenchmarkReadEventBody: the golden path's gate.passed, decoded by hand
// and by hamba.
func BenchmarkReadEventBody(b *testing.B) {
	for _, v := range Versions {
		body, _ := appendEventBody(nil, goldenPathEvent(), v)
		b.Run(v.String()+"/hamba", func(b *testing.B) {
			resolved := resolvedV2()[v]
			r := avro.NewReader(nil, 0, avro.WithReaderConfig(hambaAPI))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				r.ReadVal(resolved, new(RuntimeEvent))
			}
		})
		b.Run(v.String()+"/readEventBody", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				readEventBody(body, v, new(RuntimeEvent))
			}
		})
	}
}
