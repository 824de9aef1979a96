package loadtest

import (
	"bufio"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Memory is a sample of a process's memory, in bytes.
type Memory struct {
	// RSS is the resident set size (VmRSS), 0 where /proc is missing.
	RSS int64
	// Heap is the Go heap's live and not yet swept objects.
	Heap int64
}

// ProcessMemory samples this process: with the stack in process, the
// stack's memory (the load driver's own is small beside the broker's).
func ProcessMemory() Memory {
	var m Memory
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		m.Heap = int64(s[0].Value.Uint64())
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				m.RSS = kb << 10
			}
			break
		}
	}
	return m
}
