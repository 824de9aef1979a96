package projections

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A slice of the replay is compared first by digest: each side's cells
// are summed as hashes of (key, encoded cell), so that the live cells need
// no map of keys and bytes, and the rebuilt ones are hashed, not looked
// up. Only a slice whose digests differ is read again and compared cell by
// cell (diffCells), to name its differences: the digest decides nothing on
// its own but "equal".
//
// The sum of a multiset's hashes is equal for equal multisets; for
// unequal ones it is equal with probability about 2^-64. A live key
// that collides with another (64-bit hashes of up to a million keys a
// slice: about 2^-25) makes the sums differ, so it costs a second read,
// never a false "equal".

// cellHash is the hash of one cell, its key and its encoded bytes.
func cellHash(seed maphash.Seed, key string, value []byte) uint64 {
	return mixHash(maphash.String(seed, key), maphash.Bytes(seed, value))
}

// mixHash combines a key's hash and its value's (splitmix64's finalizer:
// a bijection, so that distinct pairs collide only as often as random
// values do).
func mixHash(k, v uint64) uint64 {
	x := k ^ (v * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// liveDigest holds a slice's live cells as hashes, the last record of a key
// winning as in a compacted topic: maphash(key) → cellHash(key, value).
type liveDigest struct {
	seed  maphash.Seed
	cells map[uint64]uint64
}

func newLiveDigest(seed maphash.Seed) *liveDigest {
	return &liveDigest{seed: seed, cells: map[uint64]uint64{}}
}

// add applies one record of a projection topic: a cell, or a tombstone.
func (d *liveDigest) add(r *kgo.Record) {
	kh := maphash.Bytes(d.seed, r.Key)
	if r.Value == nil {
		delete(d.cells, kh)
		return
	}
	d.cells[kh] = mixHash(kh, maphash.Bytes(d.seed, r.Value))
}

// sum returns the digest of the live cells and their number.
func (d *liveDigest) sum() (uint64, int) {
	var s uint64
	for _, h := range d.cells {
		s += h
	}
	return s, len(d.cells)
}

// shardsDigest returns the digest of the rebuilt cells (encoded as
// diffCells compares them: appendCell's bytes, EncodeCell's where it
// cannot) and their number, one worker per shard; ok is false if a cell
// could not be encoded (then only diffCells can compare the slice). A
// shard sums its ended run parts as it encodes them; only the cells still
// open are encoded here.
func shardsDigest(seed maphash.Seed, shards []*shard) (sum uint64, n int, ok bool) {
	sums := make([]uint64, len(shards))
	var bad atomic.Bool
	var wg sync.WaitGroup
	for w, sh := range shards {
		if sh.seed != seed {
			panic("projections: a shard digested with another seed")
		}
		wg.Go(func() {
			s := sh.doneSum
			var buf []byte
			sh.eachOpen(func(k string, c Cell) {
				enc, fast := appendCell(buf[:0], c)
				buf = enc
				if !fast {
					var err error
					if enc, err = EncodeCell(c); err != nil {
						bad.Store(true)
					}
				}
				s += cellHash(seed, k, enc)
			})
			sums[w] = s
		})
	}
	wg.Wait()
	for w, sh := range shards {
		sum += sums[w]
		n += len(sh.agg) + len(sh.runs)
	}
	return sum, n, !bad.Load()
}
