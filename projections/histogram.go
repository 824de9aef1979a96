package projections

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// histSubBits sets the histogram's precision: each power of two is split
// into 2^histSubBits linear sub-buckets, so a value is known to within
// 1/2^histSubBits (about 3%) of itself; values below 2^histSubBits are exact.
const histSubBits = 5

const histSub = 1 << histSubBits

// histMaxIndex bounds bucket indexes: every index below it has bounds
// that fit in an int64, so a decoded histogram cannot overflow.
const histMaxIndex = (64 - histSubBits) << histSubBits

// Histogram is a mergeable log-linear histogram of non-negative integers (for
// example latencies in milliseconds), in the spirit of HdrHistogram: fixed
// bucket boundaries, so two histograms merge exactly by adding counts, and
// merging is associative and commutative. Quantiles are within one bucket
// (about 3% relative error) of the exact value. The zero value is empty and
// ready to use. A Histogram is not safe for concurrent mutation.
type Histogram struct {
	// counts maps bucket index to count; only non-empty buckets are kept.
	counts map[int32]int64
	n      int64
	sum    int64
	min    int64
	max    int64
}

// histIndex returns the bucket of v (v >= 0).
func histIndex(v int64) int32 {
	if v < histSub {
		return int32(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1
	m := v >> e
	return int32((e+1)<<histSubBits) + int32(m-histSub)
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int32) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i)
	}
	e := int(i>>histSubBits) - 1
	m := int64(i&(histSub-1)) + histSub
	lo = m << e
	return lo, lo + (int64(1) << e) - 1
}

// Record adds one observation of v; negative values count as 0.
func (h *Histogram) Record(v int64) { h.RecordN(v, 1) }

// RecordN adds n observations of v.
func (h *Histogram) RecordN(v, n int64) {
	if n <= 0 {
		return
	}
	if v < 0 {
		v = 0
	}
	if v > 1<<62 {
		v = 1 << 62
	}
	if h.counts == nil {
		h.counts = map[int32]int64{}
	}
	h.counts[histIndex(v)] += n
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n += n
	h.sum = satAdd(h.sum, satMul(v, n))
}

func satAdd(a, b int64) int64 {
	if s := a + b; (s > a) == (b > 0) {
		return s
	}
	return math.MaxInt64
}

func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// Merge adds every observation of o to h. Merging is exact.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make(map[int32]int64, len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum = satAdd(h.sum, o.sum)
}

// Clone returns a deep copy of h.
func (h *Histogram) Clone() *Histogram {
	c := &Histogram{n: h.n, sum: h.sum, min: h.min, max: h.max}
	if h.counts != nil {
		c.counts = make(map[int32]int64, len(h.counts))
		for i, v := range h.counts {
			c.counts[i] = v
		}
	}
	return c
}

// Count is the number of observations.
func (h *Histogram) Count() int64 { return h.n }

// Sum is the sum of observations (saturating).
func (h *Histogram) Sum() int64 { return h.sum }

// Min and Max are the exact extremes (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest observation (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Quantile returns the q-quantile (0 <= q <= 1) by the nearest-rank method:
// the midpoint of the bucket holding the ceil(q*n)-th smallest observation,
// clamped to the exact min and max. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	q = math.Max(0, math.Min(1, q))
	rank := int64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for _, i := range h.indexes() {
		seen += h.counts[i]
		if seen >= rank {
			lo, hi := histBounds(i)
			v := lo + (hi-lo)/2
			return max(h.min, min(h.max, v))
		}
	}
	return h.max
}

// Bucket is one non-empty bucket: every value in [Lo, Hi] counted in Count.
type Bucket struct {
	Lo    int64 `json:"lo"`
	Hi    int64 `json:"hi"`
	Count int64 `json:"count"`
}

// Buckets returns the non-empty buckets in ascending order.
func (h *Histogram) Buckets() []Bucket {
	idx := h.indexes()
	out := make([]Bucket, len(idx))
	for k, i := range idx {
		lo, hi := histBounds(i)
		out[k] = Bucket{Lo: lo, Hi: hi, Count: h.counts[i]}
	}
	return out
}

func (h *Histogram) indexes() []int32 {
	idx := make([]int32, 0, len(h.counts))
	for i := range h.counts {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return idx
}

// Equal reports whether h and o hold the same observations.
func (h *Histogram) Equal(o *Histogram) bool {
	if h.n != o.n || h.sum != o.sum || h.min != o.min || h.max != o.max || len(h.counts) != len(o.counts) {
		return false
	}
	for i, c := range h.counts {
		if o.counts[i] != c {
			return false
		}
	}
	return true
}

// histJSON is the encoded form: buckets as [index, count] pairs in
// ascending index order, so the encoding is deterministic.
type histJSON struct {
	N       int64      `json:"n"`
	Sum     int64      `json:"sum"`
	Min     int64      `json:"min"`
	Max     int64      `json:"max"`
	Buckets [][2]int64 `json:"b"`
}

// MarshalJSON encodes h compactly and deterministically.
func (h Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Sum: h.sum, Min: h.min, Max: h.max, Buckets: [][2]int64{}}
	for _, i := range h.indexes() {
		j.Buckets = append(j.Buckets, [2]int64{int64(i), h.counts[i]})
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes and validates an encoded histogram: indexes in
// range and strictly ascending, counts positive and summing to n, min and
// max inside the first and last bucket.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var total int64
	counts := make(map[int32]int64, len(j.Buckets))
	prev := int64(-1)
	for _, p := range j.Buckets {
		if p[0] <= prev || p[0] < 0 || p[0] >= histMaxIndex {
			return fmt.Errorf("%w: histogram bucket index %d out of order or range", ErrCorruptState, p[0])
		}
		if p[1] <= 0 || total > math.MaxInt64-p[1] {
			return fmt.Errorf("%w: histogram bucket %d count %d", ErrCorruptState, p[0], p[1])
		}
		prev = p[0]
		total += p[1]
		counts[int32(p[0])] = p[1]
	}
	if total != j.N {
		return fmt.Errorf("%w: histogram counts sum to %d, n is %d", ErrCorruptState, total, j.N)
	}
	if j.N > 0 {
		firstLo, firstHi := histBounds(int32(j.Buckets[0][0]))
		lastLo, lastHi := histBounds(int32(j.Buckets[len(j.Buckets)-1][0]))
		if j.Min < firstLo || j.Min > firstHi || j.Max < lastLo || j.Max > lastHi || j.Sum < 0 {
			return fmt.Errorf("%w: histogram min/max/sum %d/%d/%d outside its buckets", ErrCorruptState, j.Min, j.Max, j.Sum)
		}
	} else if j.Min != 0 || j.Max != 0 || j.Sum != 0 {
		return fmt.Errorf("%w: empty histogram with min/max/sum", ErrCorruptState)
	}
	*h = Histogram{n: j.N, sum: j.Sum, min: j.Min, max: j.Max}
	if len(counts) > 0 {
		h.counts = counts
	}
	return nil
}
