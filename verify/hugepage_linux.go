package verify

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks the kernel to back s with huge pages (madvise
// MADV_HUGEPAGE, for a kernel whose transparent huge pages are "madvise"):
// a table of millions of fingerprints is probed at random, and with 4 KiB
// pages nearly every probe also misses the TLB. Only the 2 MiB-aligned
// interior is advised; an error is ignored (it is advice).
func adviseHuge(s []uint64) {
	const huge = 2 << 20
	if len(s)*8 < 2*huge {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	end := start + uintptr(len(s))*8
	lo, hi := (start+huge-1)&^(huge-1), end&^(huge-1)
	if hi <= lo {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, 14) // MADV_HUGEPAGE
}
