package drift

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/spinerun/spine/gates"
)

// Windows is the state of one intent kind and route: the reference window
// (its first RefSize samples, then frozen) and the current window, a
// tumbling window of the next size samples: when it is full it is
// compared with the reference and emptied. So after the reference, every
// size samples are one evaluation, and consecutive evaluations share no
// sample.
type Windows struct {
	// Evaluated counts the evaluated current windows.
	Evaluated int64
	// Drifted is the outcome of the last evaluated window.
	Drifted bool
	// RefSize is the reference's size, fixed when the windows start (the
	// window size then): a later change of SPINE_DRIFT_WINDOW sizes the
	// current windows, not a reference already taken.
	RefSize int
	Ref     []Sample
	Cur     []Sample
}

// Add adds one sample. When it completes the current window of size, Add
// compares it with the reference, empties it and returns the result and
// true.
func (w *Windows) Add(s Sample, size int, t gates.DriftThresholds) (gates.DriftResult, bool) {
	s.Kind, s.Route = "", "" // the key holds them
	if w.RefSize <= 0 {
		w.RefSize = size
	}
	if len(w.Ref) < w.RefSize {
		w.Ref = append(w.Ref, s)
		return gates.DriftResult{}, false
	}
	w.Cur = append(w.Cur, s)
	if len(w.Cur) < size {
		return gates.DriftResult{}, false
	}
	r := gates.DriftCompare(t, values(w.Ref), values(w.Cur))
	w.Cur = w.Cur[:0]
	w.Evaluated++
	w.Drifted = r.Drifted
	return r, true
}

// values splits samples into a window of values per metric.
func values(ss []Sample) *gates.DriftWindow {
	var w gates.DriftWindow
	for m := range gates.NumDriftMetrics {
		w[m] = make([]float64, 0, len(ss))
	}
	for _, s := range ss {
		for m := range gates.NumDriftMetrics {
			if s.Present(m) {
				w[m] = append(w[m], float64(s.Values[m]))
			}
		}
	}
	return &w
}

// windowsVersion is the first byte of an encoded Windows.
const windowsVersion byte = 3

// headerBytes is an encoded Windows' header: version, evaluated (8 bytes),
// drifted, the reference's size (4 bytes), little-endian. The samples
// follow, the reference's first: the first min(count, RefSize) samples are
// the reference, the rest the current window. A sample is added by
// appending it, without a byte before it changing.
const headerBytes = 1 + 8 + 1 + 4

// sampleBytes is an encoded sample in a state: presence bits and four
// float32.
const sampleBytes = 1 + 4*int(gates.NumDriftMetrics)

// Encode returns w's state encoding, with room to append the rest of its
// windows' samples.
func (w *Windows) Encode() []byte {
	n := len(w.Ref) + len(w.Cur)
	b := make([]byte, headerBytes, headerBytes+(n+max(2*w.RefSize-n, 16))*sampleBytes)
	b[0] = windowsVersion
	binary.LittleEndian.PutUint64(b[1:], uint64(w.Evaluated))
	if w.Drifted {
		b[9] = 1
	}
	binary.LittleEndian.PutUint32(b[10:], uint32(w.RefSize))
	for _, win := range [][]Sample{w.Ref, w.Cur} {
		for _, s := range win {
			b = appendPoint(b, s)
		}
	}
	return b
}

func appendPoint(b []byte, s Sample) []byte {
	b = append(b, s.Has)
	for _, v := range s.Values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// header checks an encoded state's header and returns its counts.
func header(b []byte) (nref, ncur int, err error) {
	if len(b) < headerBytes || b[0] != windowsVersion {
		return 0, 0, fmt.Errorf("drift state: not a version %d state", windowsVersion)
	}
	if (len(b)-headerBytes)%sampleBytes != 0 {
		return 0, 0, fmt.Errorf("drift state: %d bytes of samples, not a multiple of %d", len(b)-headerBytes, sampleBytes)
	}
	refSize := int(binary.LittleEndian.Uint32(b[10:]))
	n := (len(b) - headerBytes) / sampleBytes
	if refSize <= 0 && n > 0 {
		return 0, 0, fmt.Errorf("drift state: %d samples and no reference size", n)
	}
	nref = min(n, refSize)
	return nref, n - nref, nil
}

// DecodeWindows decodes a state; nil or empty is the empty state.
func DecodeWindows(b []byte) (*Windows, error) {
	w := &Windows{}
	if len(b) == 0 {
		return w, nil
	}
	nref, ncur, err := header(b)
	if err != nil {
		return nil, err
	}
	w.Evaluated, w.Drifted = int64(binary.LittleEndian.Uint64(b[1:])), b[9] == 1
	w.RefSize = int(binary.LittleEndian.Uint32(b[10:]))
	b = b[headerBytes:]
	w.Ref, w.Cur = make([]Sample, nref), make([]Sample, ncur)
	for _, win := range [][]Sample{w.Ref, w.Cur} {
		for j := range win {
			s := &win[j]
			s.Has = b[0]
			for m := range s.Values {
				s.Values[m] = math.Float32frombits(binary.LittleEndian.Uint32(b[1+4*m:]))
			}
			b = b[sampleBytes:]
		}
	}
	return w, nil
}

// AddEncoded is Add on an encoded state (nil: empty), the monitor's hot
// path: it appends the sample without decoding the windows, and decodes
// them only when the sample completes the current window. It returns the
// new state, and the result and true when a window was evaluated. The
// bytes of state are never modified. With owned, the sample is appended
// in place: state's spare capacity must then be the caller's alone (a
// state it got from AddEncoded and nobody appended to since); otherwise
// the state is copied, with room for the rest of its windows.
func AddEncoded(state []byte, s Sample, size int, t gates.DriftThresholds, owned bool) ([]byte, gates.DriftResult, bool, error) {
	if len(state) == 0 {
		state, owned = (&Windows{RefSize: size}).Encode(), true
	}
	nref, ncur, err := header(state)
	if err != nil {
		return nil, gates.DriftResult{}, false, err
	}
	refSize := int(binary.LittleEndian.Uint32(state[10:]))
	if nref >= refSize && ncur+1 >= size {
		w, err := DecodeWindows(state)
		if err != nil {
			return nil, gates.DriftResult{}, false, err
		}
		r, done := w.Add(s, size, t)
		return w.Encode(), r, done, nil
	}
	next := state
	if !owned {
		next = make([]byte, len(state), len(state)+(max(refSize+size-nref-ncur, 16))*sampleBytes)
		copy(next, state)
	}
	return appendPoint(next, s), gates.DriftResult{}, false, nil
}
