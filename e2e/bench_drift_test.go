package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline/kafkatest"
)

// throughputRound starts a fresh stack with env on brokers, warms it with
// 200 runs, then produces n intents at once and returns intents/s from the
// first produce to the last gate.verdict visible read_committed.
func throughputRound(b *testing.B, brokers []string, env map[string]string, run string, n int) (perSec float64, cpuPerIntent time.Duration) {
	b.Helper()
	s := newStack(b, brokers, env)
	w := s.watch(b)
	s.startAll(nil)
	cl := kafkatest.Client(b, brokers, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err := cl.ProduceSync(context.Background(), s.encoded(b, "warm", 200)...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 60*time.Second, func() bool { _, v := w.counts(); return v >= 200 }, func() string { return "warm-up runs" })
	recs := s.encoded(b, run, n)
	_, v0 := w.counts()
	cpu0 := cpuTime()
	start := time.Now()
	for _, r := range recs {
		cl.Produce(context.Background(), r, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitFor(b, time.Duration(60+n/100)*time.Second, func() bool { _, v := w.counts(); return v-v0 >= n },
		func() string { _, v := w.counts(); return fmt.Sprintf("%d verdicts (have %d)", n, v-v0) })
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	s.stopAll()
	return float64(n) / elapsed.Seconds(), cpu / time.Duration(n)
}

// benchPolicy is a policy with a rule at each stage that never matches:
// every run is evaluated at admission and on its artifact, and completes.
const benchPolicy = `version: 1
default: allow
rules:
  - name: no-such-kind
    stage: admission
    effect: deny
    when: "intent.kind == 'no-such-kind'"
    message: "never"
  - name: negative-size
    stage: artifact
    effect: deny
    when: "artifact.size < 0"
    message: "never"
`

// BenchmarkGoldenPathDrift measures the golden path's throughput (as
// BenchmarkGoldenPath's throughput sub-benchmark: b.N intents at once,
// intents/s to the last verdict) without the trust gates
// (SPINE_DRIFT_MODE=off, no policy), with the drift gate
// (SPINE_DRIFT_MODE=enforce: the gates sample every artifact and check
// every run against the status, the drift monitor keeps the windows), and
// with the policy and drift gates (SPINE_POLICY as well: admission and
// artifact rules evaluated on every run), in one run on one broker, rounds
// alternating off, drift, policy+drift (three of each) so that the
// machine's load weighs on all alike. It reports each side's throughput
// over all its rounds (and its best round), the ratios of those
// throughputs to off, and each side's mean CPU per intent.
//
//	go test -run '^$' -bench GoldenPathDrift -benchtime 5000x ./e2e
//
// E2E_DRIFT_ONLY=off, drift or policy+drift runs one round of that side
// only, for a CPU profile of it (-cpuprofile).
func BenchmarkGoldenPathDrift(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	policy := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(benchPolicy), 0o600); err != nil {
		b.Fatal(err)
	}
	sides := []struct {
		name string
		env  map[string]string
	}{
		{"off", map[string]string{"SPINE_DRIFT_MODE": "off"}},
		{"drift", map[string]string{"SPINE_DRIFT_MODE": "enforce"}},
		{"policy+drift", map[string]string{"SPINE_DRIFT_MODE": "enforce", "SPINE_POLICY": policy}},
	}
	best := make([]float64, len(sides))
	wall := make([]float64, len(sides)) // seconds per intent, summed over rounds
	cpu := make([]time.Duration, len(sides))
	n := make([]int, len(sides))
	order := []int{0, 1, 2, 0, 1, 2, 0, 1, 2}
	if only := os.Getenv("E2E_DRIFT_ONLY"); only != "" {
		order = nil
		for i, sd := range sides {
			if sd.name == only {
				order = []int{i}
			}
		}
	}
	b.ResetTimer()
	for round, i := range order {
		tp, c := throughputRound(b, brokers, sides[i].env, fmt.Sprintf("dr%d-%d", round, b.N), b.N)
		b.Logf("round %d, %s: %.0f intents/s, %s CPU per intent, load %s", round, sides[i].name, tp, c, loadAvg())
		best[i] = max(best[i], tp)
		wall[i] += 1 / tp
		cpu[i] += c
		n[i]++
	}
	b.StopTimer()
	for i, sd := range sides {
		if n[i] == 0 {
			continue
		}
		// Each side's throughput over all its rounds (intents over
		// their summed wall time), and its best round.
		b.ReportMetric(float64(n[i])/wall[i], "intents/s-"+sd.name)
		b.ReportMetric(best[i], "best-intents/s-"+sd.name)
		// CPU of the whole process (broker, registry, processors,
		// watcher) per intent, the mean of the side's rounds: the
		// figure the machine's other load changes least.
		b.ReportMetric(float64(cpu[i].Microseconds())/float64(n[i]), "cpu-µs/intent-"+sd.name)
		if i > 0 && n[0] > 0 {
			b.ReportMetric(wall[0]/float64(n[0])/(wall[i]/float64(n[i])), sd.name+"/off")
		}
	}
}

// loadAvg is the machine's 1-minute load average, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
