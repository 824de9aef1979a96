package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the spine binary the crash tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// spineBinary builds ./cmd/spine once per test binary (`go build -o
// $TMP/spine ./cmd/spine`) and returns its path.
func spineBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "spine-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "spine")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/spine")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/spine: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// child is one `spine run <name>` process.
type child struct {
	name, instance string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// spawn starts `spine run name` as instance against the stack.
func (s *rig) spawn(tb testing.TB, name, instance string, extraEnv ...string) *child {
	tb.Helper()
	c := &child{name: name, instance: instance, exited: make(chan struct{})}
	c.cmd = exec.Command(spineBinary(tb), "run", name)
	c.cmd.Env = append(s.childEnv(instance), extraEnv...)
	if os.Getenv("E2E_VERBOSE") != "" {
		c.cmd.Stdout, c.cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := c.cmd.Start(); err != nil {
		tb.Fatalf("start spine run %s: %v", name, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	tb.Cleanup(func() { c.kill(tb) })
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(tb testing.TB) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		tb.Errorf("spine run %s (pid %d) did not die", c.name, c.cmd.Process.Pid)
	}
}

// alive reports whether the child is still running (it must not exit on
// its own).
func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
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
