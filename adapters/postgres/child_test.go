package postgres_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/spinerun/spine/internal/spinetest"
)

// TestMain removes the spine binary the crash tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	spinetest.RemoveBinary()
	os.Exit(code)
}

// child is one `spine run pgsink` process.
type child struct{ *spinetest.Proc }

// spawn starts `spine run pgsink` as instance against the rig.
func (r *rig) spawn(tb testing.TB, instance string, extraEnv ...string) *child {
	tb.Helper()
	cmd := exec.Command(spinetest.Binary(tb), "run", "pgsink")
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"SCHEMA_REGISTRY_URL=" + r.registryURL, "SPINE_INSTANCE_ID=" + instance}
	for k, v := range r.env {
		env = append(env, k+"="+v)
	}
	if os.Getenv("PG_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		env = append(env, "SPINE_LOG_LEVEL=info")
	} else {
		env = append(env, "SPINE_LOG_LEVEL=error")
	}
	cmd.Env = append(env, extraEnv...)
	return &child{spinetest.StartProc(tb, "spine run pgsink", cmd, nil)}
}
