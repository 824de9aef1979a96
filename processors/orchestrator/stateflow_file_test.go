package orchestrator_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/processors/orchestrator"
)

// TestStateflowFileErrors: each file under testdata/stateflow has one kind
// of error, marked "# want: <message>" on the line it must be reported at;
// the file is refused with that line named.
func TestStateflowFileErrors(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("testdata/stateflow/*.yaml")
	if err != nil || len(paths) < 8 {
		t.Fatalf("bad files: %v %v", paths, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wantLine, want := 0, ""
			sc := bufio.NewScanner(bytes.NewReader(src))
			for n := 1; sc.Scan(); n++ {
				if _, w, ok := strings.Cut(sc.Text(), "# want: "); ok {
					wantLine, want = n, w
				}
			}
			if want == "" {
				t.Fatal("no '# want:' line")
			}
			_, err = orchestrator.ParseStateflow(path, src)
			var se *orchestrator.StateflowError
			if !errors.As(err, &se) || !errors.Is(err, orchestrator.ErrStateflow) {
				t.Fatalf("accepted or wrong error type: %v", err)
			}
			found := false
			for _, p := range se.Problems {
				if p.Line == wantLine && strings.Contains(p.Msg, want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want %q at line %d, got %v", want, wantLine, err)
			}
			if !strings.Contains(err.Error(), path+":") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// TestDefaultFile: the built-in file parses as is, and DefaultStates with
// the file's own retry and timeouts is the same machine (same table, same
// version).
func TestDefaultFile(t *testing.T) {
	t.Parallel()
	f, err := orchestrator.ParseStateflow("stateflow.yaml", orchestrator.DefaultFile)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := f.Spec(orchestrator.StateDispatched)
	g := orchestrator.MustStateflow(orchestrator.DefaultStates(*sp.Retry, sp.Timeout, 30*time.Second))
	if f.Text() != g.Text() || f.Version() != g.Version() || !strings.HasPrefix(f.Version(), "sha256:") {
		t.Fatalf("file and DefaultStates differ:\n%s\n%s", f.Text(), g.Text())
	}
	other := orchestrator.MustStateflow(orchestrator.DefaultStates(*sp.Retry, time.Minute, 30*time.Second))
	if other.Version() == f.Version() {
		t.Fatal("a different timeout gives the same version")
	}
	for _, s := range f.Specs() {
		if !s.Terminal && s.Timeout == 0 && !s.Transient {
			t.Errorf("state %s unbounded", s.State)
		}
	}
}

// FuzzParseStateflow: no file makes the parser panic; a file it accepts
// renders (table, Mermaid) and parses again to the same version.
func FuzzParseStateflow(f *testing.F) {
	f.Add(orchestrator.DefaultFile)
	paths, _ := filepath.Glob("testdata/stateflow/*.yaml")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\nstates: []\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, src []byte) {
		flow, err := orchestrator.ParseStateflow("f.yaml", src)
		if err != nil {
			var se *orchestrator.StateflowError
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		_ = flow.Mermaid()
		again, err := orchestrator.ParseStateflow("f.yaml", src)
		if err != nil || again.Version() != flow.Version() || again.Text() != flow.Text() {
			t.Fatalf("unstable: %v", err)
		}
	})
}
