package e2e

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
)

// TestMain removes the spine binary the crash tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	spinetest.RemoveBinary()
	os.Exit(code)
}

// spineBinary is ./cmd/spine, built once per test binary.
func spineBinary(tb testing.TB) string { return spinetest.Binary(tb) }

// child is one `spine run <name>` process.
type child struct {
	name, instance string
	*spinetest.Proc
}

// spawn starts `spine run name` as instance against the stack.
func (s *rig) spawn(tb testing.TB, name, instance string, extraEnv ...string) *child {
	tb.Helper()
	cmd := exec.Command(spineBinary(tb), "run", name)
	cmd.Env = append(s.childEnv(instance), extraEnv...)
	if os.Getenv("E2E_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	return &child{name: name, instance: instance, Proc: spinetest.StartProc(tb, "spine run "+name, cmd, nil)}
}

// embeddedNoCompaction starts a kfake broker whose cleaner never runs during
// a test, unless KAFKA_BROKERS names a real cluster (then nil: use it).
// kfake's compaction (at least up to 01f206a7e32c) cleans past the last
// stable offset, so a state write of a transaction a SIGKILL later aborts
// can supersede the committed one; Apache Kafka's cleaner stops at the first
// unstable offset. See pipeline/crash_test.go.
func embeddedNoCompaction(tb testing.TB) []string {
	tb.Helper()
	if os.Getenv("KAFKA_BROKERS") != "" {
		return nil
	}
	emb := pipeline.NewEmbedded(pipeline.EmbeddedConfig{CleanerIntervalMs: int(time.Hour.Milliseconds())})
	if err := emb.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(emb.Close)
	return emb.Addrs()
}
