package drift

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Sample is one delivered artifact's metrics, the record the gatekeeper
// writes to spine.drift.samples keyed by thread.DriftKey(Kind, Route).
type Sample struct {
	Kind, Route string
	// Values holds the metrics (gates.DriftMetric order); Has says which
	// are present: a score of exactly 0 and 0 output tokens read as none
	// (the thread has no presence bit for them: a model API has no score).
	Values [gates.NumDriftMetrics]float32
	Has    uint8
}

// Present reports whether metric m is present.
func (s Sample) Present(m gates.DriftMetric) bool { return s.Has&(1<<m) != 0 }

// ResetBit in Has marks a reset record instead of a sample: the monitor
// drops the kind and route's windows, so its next Window samples become the
// new reference (an operator's answer to a legitimately changed model,
// which stays drifted against a frozen reference). `spine drift reset`
// writes it.
const ResetBit uint8 = 0x80

// Reset returns the reset record of a kind and route.
func Reset(kind, route string) Sample { return Sample{Kind: kind, Route: route, Has: ResetBit} }

// IsReset reports whether s is a reset record.
func (s Sample) IsReset() bool { return s.Has == ResetBit }

// sampleVersion is the first byte of an encoded sample.
const sampleVersion byte = 1

// maxSampleBytes bounds a sample record (kind and route are short names).
const maxSampleBytes = 4096

// ErrBadSample marks a sample record that does not decode (stable code
// "bad_drift_sample": dead-lettered).
var ErrBadSample = errors.New("bad drift sample")

// AppendSample appends s's encoding to b: a version byte (1), the presence
// bits, kind and route (uvarint length, UTF-8), then the four metrics as
// little-endian float32.
func AppendSample(b []byte, s Sample) []byte {
	b = append(b, sampleVersion, s.Has)
	b = binary.AppendUvarint(b, uint64(len(s.Kind)))
	b = append(b, s.Kind...)
	b = binary.AppendUvarint(b, uint64(len(s.Route)))
	b = append(b, s.Route...)
	for _, v := range s.Values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// DecodeSample decodes a sample record; an error wraps ErrBadSample.
func DecodeSample(b []byte) (Sample, error) {
	var s Sample
	bad := func(f string, a ...any) (Sample, error) {
		return Sample{}, fmt.Errorf("%w: %s", ErrBadSample, fmt.Sprintf(f, a...))
	}
	if len(b) > maxSampleBytes {
		return bad("%d bytes, at most %d", len(b), maxSampleBytes)
	}
	if len(b) < 2 || b[0] != sampleVersion {
		return bad("not a version %d sample", sampleVersion)
	}
	s.Has = b[1]
	if s.Has >= 1<<gates.NumDriftMetrics && s.Has != ResetBit {
		return bad("presence bits %#x", s.Has)
	}
	b = b[2:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, utf8.ValidString(v)
	}
	var ok bool
	if s.Kind, ok = str(); !ok {
		return bad("kind")
	}
	if s.Route, ok = str(); !ok {
		return bad("route")
	}
	if len(b) != 4*int(gates.NumDriftMetrics) {
		return bad("%d bytes of metrics, want %d", len(b), 4*gates.NumDriftMetrics)
	}
	for i := range s.Values {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return bad("metric %s is %v", gates.DriftMetric(i), v)
		}
		s.Values[i] = v
	}
	return s, nil
}

// SampleOf returns the sample of an artifact.delivered event, false if it
// carries no artifact.
func SampleOf(ev *schemas.RuntimeEvent, route string) (Sample, bool) {
	if ev == nil || ev.Artifact == nil {
		return Sample{}, false
	}
	a := ev.Artifact
	s := Sample{Kind: ev.Intent, Route: route}
	set := func(m gates.DriftMetric, v float64, present bool) {
		if present && !math.IsNaN(v) && !math.IsInf(v, 0) {
			s.Values[m] = float32(v)
			s.Has |= 1 << m
		}
	}
	set(gates.MetricScore, a.Score, a.Score != 0)
	set(gates.MetricLength, float64(a.SizeBytes), true)
	set(gates.MetricLatency, float64(a.LatencyMs), true)
	if ev.Usage != nil {
		set(gates.MetricTokens, float64(ev.Usage.OutputTokens), ev.Usage.OutputTokens > 0)
	}
	return s, true
}

// Sampler turns each checked artifact into a sample record on
// spine.drift.samples: the gatekeeper writes it in the transaction of the
// artifact's gate events (gatekeeper.Config.Taps). It is stateless and safe
// for concurrent use.
type Sampler struct {
	topic pipeline.Topic
}

// NewSampler returns the sampler writing to layout's samples topic.
func NewSampler(layout pipeline.Layout) *Sampler { return &Sampler{topic: layout.DriftSamples()} }

// Tap returns the sample record of s's artifact, if it has one.
func (p *Sampler) Tap(s gates.Subject) []pipeline.Output {
	smp, ok := SampleOf(s.Event, s.Route())
	if !ok {
		return nil
	}
	return []pipeline.Output{{Topic: p.topic, Key: []byte(thread.DriftKey(smp.Kind, smp.Route)), Raw: AppendSample(make([]byte, 0, 32+len(smp.Kind)+len(smp.Route)), smp)}}
}
