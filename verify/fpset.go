package verify

// fpSet is a set of 64-bit fingerprints (maphash of an id) in one
// open-addressed table: no allocation per entry, 8 bytes a slot, grown at
// half full. Fingerprint 0 is stored as 1 (0 marks a free slot); two ids
// share a fingerprint with probability about n²/2⁶⁵ (5·10⁻⁶ for 13M ids).
type fpSet struct {
	slots []uint64
	n     int
}

func (s *fpSet) init(size int) {
	n := 16
	for n < size {
		n <<= 1
	}
	s.slots = make([]uint64, n)
	adviseHuge(s.slots)
	s.n = 0
}

// add inserts fp and reports whether it was new.
func (s *fpSet) add(fp uint64) bool {
	if fp == 0 {
		fp = 1
	}
	if 2*(s.n+1) > len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := fp & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case 0:
			s.slots[i] = fp
			s.n++
			return true
		case fp:
			return false
		}
	}
}

// has reports whether fp is in the set.
func (s *fpSet) has(fp uint64) bool {
	if fp == 0 {
		fp = 1
	}
	if len(s.slots) == 0 {
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for i := fp & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case 0:
			return false
		case fp:
			return true
		}
	}
}

func (s *fpSet) grow() {
	old := s.slots
	s.init(max(2*len(old), 16))
	for _, fp := range old {
		if fp != 0 {
			s.add(fp)
		}
	}
}

// len is the number of fingerprints in the set.
func (s *fpSet) len() int { return s.n }
