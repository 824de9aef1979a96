package verify

import (
	"math/rand/v2"
	"testing"
)

// fpSet names each fingerprint new once, in a table large enough to be
// advised onto huge pages and through its growth, 0 included.
func TestFPSet(t *testing.T) {
	t.Parallel()
	var s fpSet
	s.init(1 << 20) // 8 MiB: adviseHuge advises its interior
	r := rand.New(rand.NewPCG(7, 11))
	fps := []uint64{0, 1, 2}
	for range 600_000 { // past half of the slots: the table grows
		fps = append(fps, r.Uint64())
	}
	for i, fp := range fps {
		if new := s.add(fp); new != (i != 1) { // 0 is stored as 1
			t.Fatalf("%x: new %v", fp, new)
		}
	}
	for _, fp := range fps {
		if !s.has(fp) || s.add(fp) {
			t.Fatalf("%x: missing, or new again", fp)
		}
	}
	if s.len() != len(fps)-1 || len(s.slots) <= 1<<20 {
		t.Fatalf("len %d, slots %d; want %d, grown", s.len(), len(s.slots), len(fps)-1)
	}
}
