package stack_test

import (
	"os"
	"strings"
	"testing"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
)

// The README's least-privilege table is the code's.
func TestGrantTableInREADME(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.GrantTable(stack.Grants(pipeline.Layout{}))
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md's Security section does not hold the table of stack.Grants; it should read:\n%s", want)
	}
}

// Every grant names a principal, and no principal but the gates' writes
// gate.verdict: the verdict a run completes on has one author.
func TestGrantsVerdictHasOneWriter(t *testing.T) {
	t.Parallel()
	l := pipeline.Layout{}
	var writers []string
	for _, g := range stack.Grants(l) {
		if g.Principal == "" {
			t.Fatal("a grant without a principal")
		}
		for _, w := range g.Write {
			if w == l.Gate("verdict") {
				writers = append(writers, g.Principal)
			}
		}
	}
	if len(writers) != 1 || writers[0] != stack.Gates {
		t.Fatalf("gate.verdict writers %v, want only %s", writers, stack.Gates)
	}
}
