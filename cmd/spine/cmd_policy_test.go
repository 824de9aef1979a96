package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spinerun/spine/gates"
)

func TestCLIPolicyCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	src := `version: 1
default: deny
rules:
  - name: staff
    stage: admission
    effect: allow
    when: "provenance != null && provenance.subject.endsWith('@staff')"
    message: "staff may run"
`
	if err := os.WriteFile(good, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "", "policy", "check", good)
	if code != exitOK || !strings.Contains(out, "version "+gates.PolicyVersion([]byte(src))) || !strings.Contains(out, "admission  allow   staff") ||
		!strings.Contains(out, "warning: default deny and no artifact rules") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`version: 1
rules:
  - name: typo
    stage: admission
    effect: deny
    when: "intent.knd == 'x'"
  - name: broken
    stage: artifact
    effect: deny
    when: "artifact.size >"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, "", "policy", "check", bad)
	if code != exitError || !strings.Contains(out, bad+":6: rule typo: when: column 18: undefined field 'knd'") ||
		!strings.Contains(out, bad+":10: rule broken: when: ") || !strings.Contains(stderr, "2 problems") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	if code, _, _ := runCLI(t, "", "policy", "check"); code != exitUsage {
		t.Fatalf("no file: exit %d", code)
	}
	if code, _, _ := runCLI(t, "", "policy", "check", filepath.Join(dir, "none.yaml")); code != exitError {
		t.Fatalf("missing file: exit %d", code)
	}
}
