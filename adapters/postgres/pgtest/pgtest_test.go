package pgtest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spinerun/spine/adapters/postgres/pgtest"
)

// recorder is a testing.TB that records how the helper ended the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

type ended struct{}

func (r *recorder) Helper()                   {}
func (r *recorder) Cleanup(func())            {}
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...); panic(ended{}) }
func (r *recorder) Skipf(f string, a ...any)  { r.skip = fmt.Sprintf(f, a...); panic(ended{}) }

func start(r *recorder) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(ended); !ok {
				panic(v)
			}
		}
	}()
	pgtest.Start(r)
}

// Without the server binaries the helper fails the test saying what to
// install; SPINE_SKIP_PG=1 makes it skip instead, saying so.
func TestStartWithoutBinaries(t *testing.T) {
	t.Setenv("SPINE_PG_BIN", t.TempDir())
	t.Setenv("SPINE_SKIP_PG", "")
	r := &recorder{TB: t}
	start(r)
	if !strings.Contains(r.fatal, "apt-get install -y postgresql") || !strings.Contains(r.fatal, "SPINE_SKIP_PG=1") || r.skip != "" {
		t.Errorf("fatal %q skip %q: want a failure naming the package and SPINE_SKIP_PG", r.fatal, r.skip)
	}
	t.Setenv("SPINE_SKIP_PG", "1")
	r = &recorder{TB: t}
	start(r)
	if !strings.HasPrefix(r.skip, "SKIPPED: SPINE_SKIP_PG=1") || r.fatal != "" {
		t.Errorf("fatal %q skip %q: want a skip that says why", r.fatal, r.skip)
	}
}

// The helper's server takes connections and restarts in place.
func TestStartAndRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	url := srv.CreateDB(t)
	if !strings.Contains(url, fmt.Sprint(srv.Port())) {
		t.Fatalf("url %s does not name port %d", url, srv.Port())
	}
	srv.Restart("immediate")
	if url2 := srv.CreateDB(t); url2 == url {
		t.Errorf("two databases named %s", url)
	}
}
