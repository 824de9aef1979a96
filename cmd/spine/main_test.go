package main

import (
	"bytes"
	"strings"
	"testing"
)

// runCLI runs the CLI in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code := execute(t.Context(), a, args)
	return code, out.String(), errb.String()
}

func TestCLIUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`},
		{"unknown flag", []string{"up", "--nope"}, "unknown flag: --nope"},
		{"unknown root flag", []string{"--nope"}, "unknown flag: --nope"},
		{"extra args", []string{"version", "extra"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != exitUsage {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
		})
	}
}

func TestCLIHelpListsEveryCommand(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "", "--help")
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, c := range []string{"up", "version", "produce", "consume", "schemas", "registry", "trace", "replay", "verify", "flags", "policy", "loadtest", "run", "agents"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("--help does not list %q:\n%s", c, out)
		}
		code, sub, _ := runCLI(t, "", c, "--help")
		if code != exitOK || !strings.Contains(sub, "Usage:") {
			t.Errorf("%s --help: exit %d, output %q", c, code, sub)
		}
	}
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "", "version")
	if code != exitOK || !strings.HasPrefix(out, "spine ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestCLIInvalidConfigExit2(t *testing.T) {
	t.Setenv("SPINE_PARTITIONS", "many")
	t.Setenv("SPINE_LOG_FORMAT", "xml")
	code, _, stderr := runCLI(t, "", "up")
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	for _, v := range []string{"SPINE_PARTITIONS", "SPINE_LOG_FORMAT"} {
		if !strings.Contains(stderr, v) {
			t.Errorf("stderr does not name %s: %q", v, stderr)
		}
	}
}
