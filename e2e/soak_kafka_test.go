package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readPid reads the broker pid deploy/kafka/start.sh wrote.
func readPid(work string) (int, error) {
	b, err := os.ReadFile(filepath.Join(work, "kafka.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s/kafka.pid: %w", work, err)
	}
	return pid, nil
}

// soakApacheKafka returns the work directory and bootstrap of the Apache
// Kafka broker the soak may kill: SPINE_SOAK_KAFKA_WORK's, or one started
// now with deploy/kafka/start.sh (its jar classpath taken from the shared
// broker's work directory when there is one, so Maven is not asked again)
// and stopped with the test.
func soakApacheKafka(t *testing.T) (work string, brokers []string) {
	t.Helper()
	work = os.Getenv("SPINE_SOAK_KAFKA_WORK")
	if work == "" {
		work = t.TempDir()
		shared := os.Getenv("SPINE_KAFKA_WORK")
		if shared == "" {
			shared = filepath.Join(os.TempDir(), "spine-kafka")
		}
		cps, _ := filepath.Glob(filepath.Join(shared, "classpath-*.txt"))
		for _, cp := range cps {
			if b, err := os.ReadFile(cp); err == nil {
				_ = os.WriteFile(filepath.Join(work, filepath.Base(cp)), b, 0o644)
			}
		}
		cmd := exec.Command("../deploy/kafka/start.sh")
		cmd.Env = append(os.Environ(), "SPINE_KAFKA_WORK="+work, "KAFKA_PORT="+strconv.Itoa(freeKafkaPorts(t)), "KAFKA_SASL_SSL=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if _, err := cmd.Output(); err != nil {
			t.Fatalf("deploy/kafka/start.sh: %v\n%s", err, stderr.String())
		}
		t.Cleanup(func() {
			stop := exec.Command("../deploy/kafka/stop.sh")
			stop.Env = append(os.Environ(), "SPINE_KAFKA_WORK="+work)
			if out, err := stop.CombinedOutput(); err != nil {
				t.Errorf("deploy/kafka/stop.sh: %v\n%s", err, out)
			}
		})
	}
	t.Setenv("SPINE_KAFKA_WORK", work) // restart.sh's
	b, err := os.ReadFile(filepath.Join(work, "bootstrap"))
	if err != nil {
		t.Fatalf("the soak's Apache Kafka broker: %v", err)
	}
	return work, []string{strings.TrimSpace(string(b))}
}

// freeKafkaPorts returns a port p with p and p+1 free a moment ago (the
// broker's client and controller ports).
func freeKafkaPorts(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freeLocalPort(t)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no two free consecutive ports")
	return 0
}
