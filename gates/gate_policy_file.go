package gates

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// PolicyReloadInterval is how often a PolicyFile reads its file for a
// change.
const PolicyReloadInterval = 500 * time.Millisecond

// PolicyFile is a policy read from a file and reloaded when the file
// changes (SPINE_POLICY): Run reads the file every PolicyReloadInterval,
// compiles a changed content and swaps it in, logging "policy loaded" with
// the version it now enforces; a content that does not compile (or a file
// that cannot be read) is logged with every problem and the previous policy
// stays in force. Current is safe for concurrent use and lock-free (an
// atomic pointer); only Run's goroutine writes.
type PolicyFile struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[Policy]
	// last is the content last seen and lastErr the problem it had, both
	// Run's alone.
	last    []byte
	lastErr string
}

var _ PolicySource = (*PolicyFile)(nil)

// LoadPolicyFile reads and compiles the policy at path; an invalid file is
// an error (a *PolicyError lists every problem). It does no other I/O.
func LoadPolicyFile(path string, log *slog.Logger) (*PolicyFile, error) {
	if log == nil {
		log = slog.Default()
	}
	src, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(src)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	f := &PolicyFile{path: path, log: log.With("policy", path), last: src}
	f.cur.Store(p)
	return f, nil
}

func readPolicy(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer fh.Close()
	src, err := io.ReadAll(io.LimitReader(fh, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if len(src) > MaxPolicyBytes {
		return nil, fmt.Errorf("policy %s: more than %d bytes", path, MaxPolicyBytes)
	}
	return src, nil
}

// Path is the policy file's path.
func (f *PolicyFile) Path() string { return f.path }

// Current returns the policy in force.
func (f *PolicyFile) Current() *Policy { return f.cur.Load() }

// Run reloads the policy when its file changes, until ctx ends; it returns
// nil then. It logs the version in force when it starts.
func (f *PolicyFile) Run(ctx context.Context) error {
	p := f.Current()
	f.log.Info("policy loaded", "version", p.Version(), "rules", len(p.rules), "default", p.def)
	t := time.NewTicker(PolicyReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.reload()
		}
	}
}

// reload reads the file and swaps in a changed content that compiles.
func (f *PolicyFile) reload() {
	src, err := readPolicy(f.path)
	if err != nil {
		f.problem(fmt.Sprintf("policy unreadable, keeping version %s: %v", f.Current().Version(), err))
		return
	}
	if bytes.Equal(src, f.last) {
		return
	}
	p, err := ParsePolicy(src)
	if err != nil {
		// Log a bad content once, not every tick; keep it as seen.
		f.last = src
		f.problem(fmt.Sprintf("policy %s rejected, keeping version %s: %v", PolicyVersion(src), f.Current().Version(), err))
		return
	}
	f.last, f.lastErr = src, ""
	old := f.cur.Swap(p)
	f.log.Info("policy loaded", "version", p.Version(), "previous", old.Version(), "rules", len(p.rules), "default", p.def)
}

func (f *PolicyFile) problem(msg string) {
	if msg == f.lastErr {
		return
	}
	f.lastErr = msg
	f.log.Error(msg)
}

// PolicyConfig is the policy gate's settings, read from the environment by
// the composition root.
type PolicyConfig struct {
	// Path is SPINE_POLICY, the policy file: admission rules judged by the
	// orchestrator, artifact rules by the gates, reloaded when the file
	// changes. Default empty: no policy gate.
	Path string `env:"SPINE_POLICY"`
}

// Validate reads and compiles the policy file, returning every problem of
// it, each with its line.
func (c *PolicyConfig) Validate() []error {
	if c.Path == "" {
		return nil
	}
	src, err := readPolicy(c.Path)
	if err != nil {
		return []error{fmt.Errorf("SPINE_POLICY: %w", err)}
	}
	_, err = ParsePolicy(src)
	var pe *PolicyError
	if errors.As(err, &pe) {
		errs := make([]error, len(pe.Problems))
		for i, p := range pe.Problems {
			errs[i] = fmt.Errorf("SPINE_POLICY %s: %s", c.Path, p)
		}
		return errs
	}
	if err != nil {
		return []error{fmt.Errorf("SPINE_POLICY %s: %w", c.Path, err)}
	}
	return nil
}

// Load returns the policy file the settings name, nil when none.
func (c *PolicyConfig) Load(log *slog.Logger) (*PolicyFile, error) {
	if c.Path == "" {
		return nil, nil
	}
	return LoadPolicyFile(c.Path, log)
}
