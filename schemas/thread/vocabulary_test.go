package thread_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spinerun/spine/schemas/thread"
)

// TestNoEventTypeLiterals: no non-test file outside this package spells an
// event type as a string literal; they all use the constants.
func TestNoEventTypeLiterals(t *testing.T) {
	t.Parallel()
	types := map[string]bool{}
	for _, et := range thread.EventTypes {
		if types[string(et)] {
			t.Errorf("event type %s listed twice", et)
		}
		types[string(et)] = true
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := filepath.Abs(".")
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") || path == self {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, _ = parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && types[s] {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d spells the event type %q; use the schemas/thread constant", rel, fset.Position(lit.Pos()).Line, s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d files from %s; is the module root right?", files, root)
	}
}
