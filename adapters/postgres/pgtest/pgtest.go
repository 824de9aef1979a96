// Package pgtest starts a real PostgreSQL server for a test: initdb in a
// temporary directory, postgres on a free port of 127.0.0.1, stopped and
// removed when the test ends. No mock and no in-memory substitute.
//
// The binaries are found under SPINE_PG_BIN (a directory with initdb and
// pg_ctl), then /usr/lib/postgresql/<newest>/bin (Debian's postgresql
// package), then PATH. Where none is found the test fails saying what to
// install, unless SPINE_SKIP_PG=1 says this environment has no PostgreSQL
// on purpose: then it is skipped, saying so. PostgreSQL refuses to run as
// root, so under root the server runs as the postgres user (runuser).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one PostgreSQL server of a test. Its methods are safe for
// concurrent use except Restart, which a test calls from one goroutine.
type Server struct {
	tb      testing.TB
	bin     string
	dir     string // owned by the server's user
	data    string
	sock    string
	port    int
	asUser  string // "postgres" under root, "" otherwise
	stopped atomic.Bool
	dbs     atomic.Int64
}

// Start starts a server for tb, stopped and removed with it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := findBin()
	if err != nil {
		if os.Getenv("SPINE_SKIP_PG") == "1" {
			tb.Skipf("SKIPPED: SPINE_SKIP_PG=1 and %v", err)
		}
		tb.Fatalf("%v; install PostgreSQL (Debian: apt-get install -y postgresql), set SPINE_PG_BIN to its bin directory, "+
			"or set SPINE_SKIP_PG=1 to skip the PostgreSQL tests", err)
	}
	s := &Server{tb: tb, bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			tb.Fatalf("running as root, PostgreSQL needs the postgres user to run as: %v", err)
		}
		s.asUser = "postgres"
	}
	if s.dir, err = os.MkdirTemp("", "spine-pg-"); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	s.data, s.sock = filepath.Join(s.dir, "data"), filepath.Join(s.dir, "sock")
	if err := os.Mkdir(s.sock, 0o755); err != nil {
		tb.Fatal(err)
	}
	if s.asUser != "" {
		if out, err := exec.Command("chown", "-R", s.asUser, s.dir).CombinedOutput(); err != nil {
			tb.Fatalf("chown %s: %v %s", s.dir, err, out)
		}
	}
	tb.Cleanup(func() {
		s.stop("immediate")
		_ = os.RemoveAll(s.dir)
	})
	s.run("initdb", "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	s.port = freePort(tb)
	s.start()
	return s
}

// findBin returns the directory of initdb and pg_ctl.
func findBin() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("SPINE_PG_BIN"); d != "" {
		if has(d) {
			return d, nil
		}
		return "", fmt.Errorf("SPINE_PG_BIN=%s has no initdb, pg_ctl and postgres", d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl, postgres) in SPINE_PG_BIN, /usr/lib/postgresql/*/bin or PATH")
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// command returns the server binary name run as the server's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (s *Server) run(name string, args ...string) {
	s.tb.Helper()
	cmd := s.command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (s *Server) start() {
	s.tb.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200", s.port, s.sock)
	s.run("pg_ctl", "-D", s.data, "-o", opts, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "start")
	s.stopped.Store(false)
}

// stop stops the server (mode: smart, fast or immediate); errors are
// ignored, the server may be gone already.
func (s *Server) stop(mode string) {
	if s.stopped.Swap(true) {
		return
	}
	_ = s.command("pg_ctl", "-D", s.data, "-m", mode, "-w", "-t", "60", "stop").Run()
}

// Restart stops the server the way mode says (immediate: as a crash, with
// recovery from the WAL on start) and starts it again on the same port.
func (s *Server) Restart(mode string) {
	s.tb.Helper()
	s.stop(mode)
	s.start()
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// URL returns the URL of database db as user postgres (no password: the
// server trusts local connections).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// CreateDB creates a new, empty database and returns its URL.
func (s *Server) CreateDB(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		tb.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	return s.URL(name)
}

// Log returns the server's log so far, for a failing test to print.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}
