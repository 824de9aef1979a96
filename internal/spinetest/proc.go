package spinetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/spine once per test binary (`go build -o
// $TMP/spine ./cmd/spine` at the module's root) and returns its path. A
// TestMain that calls it should call RemoveBinary after m.Run.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "spine-test-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "spine")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/spine")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/spine: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// RemoveBinary deletes what Binary built.
func RemoveBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// moduleRoot is the nearest directory above the working directory (a
// test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Proc is a child process a test started; Exited is closed once it has
// ended.
type Proc struct {
	Cmd    *exec.Cmd
	Exited chan struct{}
	name   string
}

// StartProc starts cmd, named name in errors, and kills it when the test
// ends; onExit (may be nil) runs once the process has ended, before Exited
// is closed.
func StartProc(tb testing.TB, name string, cmd *exec.Cmd, onExit func()) *Proc {
	tb.Helper()
	p := &Proc{Cmd: cmd, Exited: make(chan struct{}), name: name}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		if onExit != nil {
			onExit()
		}
		close(p.Exited)
	}()
	tb.Cleanup(func() { p.Kill(tb) })
	return p
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill(tb testing.TB) {
	select {
	case <-p.Exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.Exited:
	case <-time.After(10 * time.Second):
		tb.Errorf("%s (pid %d) did not die", p.name, p.Cmd.Process.Pid)
	}
}

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.Exited:
		return false
	default:
		return true
	}
}
