//go:build !linux

package verify

func adviseHuge([]uint64) {}
