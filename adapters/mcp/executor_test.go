package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/adapters/mcp"
	"github.com/spinerun/spine/processors/dataplane"
)

// serverBin is the test server program, built once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spine-mcp-test")
	if err != nil {
		panic(err)
	}
	serverBin = filepath.Join(dir, "testserver")
	out, err := exec.Command("go", "build", "-o", serverBin, "./internal/testserver").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("build the test server: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// backend names one way to reach the test server.
type backend struct {
	name string
	cfg  func(t *testing.T, tool string) mcp.Config
}

// backends: the server as a child process over stdio, and over streamable
// HTTP (the same binary run with -http).
var backends = []backend{
	{"stdio", func(_ *testing.T, tool string) mcp.Config {
		return mcp.Config{Tool: tool, Command: []string{serverBin}}
	}},
	{"http", func(t *testing.T, tool string) mcp.Config {
		return mcp.Config{Tool: tool, URL: httpServer(t)}
	}},
}

// httpServer runs the test server binary with -http on a free port and
// returns its URL once it answers.
func httpServer(t *testing.T) string {
	t.Helper()
	l := httptest.NewUnstartedServer(nil).Listener // a free port
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(serverBin, "-http", addr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start http test server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		c := gomcp.NewClient(&gomcp.Implementation{Name: "probe", Version: "v0"}, nil)
		s, err := c.Connect(ctx, &gomcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
		if err != nil {
			return err
		}
		return s.Close()
	})
	return url
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		<-tick.C
	}
}

// newExecutor returns an executor running until the test ends, once it
// has connected.
func newExecutor(t *testing.T, cfg mcp.Config) *mcp.Executor {
	t.Helper()
	e := start(t, cfg)
	select {
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the executor did not connect within 10s")
	}
	return e
}

// start returns an executor whose Run runs until the test ends.
func start(t *testing.T, cfg mcp.Config) *mcp.Executor {
	t.Helper()
	e, err := mcp.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

func wantKind(t *testing.T, err error, kind string, retryable bool) {
	t.Helper()
	var ee *dataplane.ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want a *dataplane.ExecError of kind %s", err, kind)
	}
	if ee.Kind != kind || ee.Retryable != retryable {
		t.Fatalf("err = %v (kind %s, retryable %v), want kind %s, retryable %v", err, ee.Kind, ee.Retryable, kind, retryable)
	}
}

func req(input string) dataplane.Request {
	return dataplane.Request{TraceID: "t1", DispatchSpan: "s1", IdempotencyKey: "k1", Input: []byte(input)}
}

func TestExecute(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			t.Run("echo", func(t *testing.T) {
				t.Parallel()
				e := newExecutor(t, b.cfg(t, "echo"))
				in := `{"text":"hello","n":12345678901234567890}`
				if err := e.Validate(req(in)); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				res, err := e.Execute(t.Context(), req(in))
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if res.ContentType != mcp.ContentTypeText || string(res.Content) != in {
					t.Fatalf("result = %s %q, want text/plain %q", res.ContentType, res.Content, in)
				}
			})
			t.Run("structured", func(t *testing.T) {
				t.Parallel()
				e := newExecutor(t, b.cfg(t, "structured"))
				res, err := e.Execute(t.Context(), req(`{"a":1}`))
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if res.ContentType != mcp.ContentTypeJSON {
					t.Fatalf("content type = %s, want %s", res.ContentType, mcp.ContentTypeJSON)
				}
				var got map[string]any
				if err := json.Unmarshal(res.Content, &got); err != nil {
					t.Fatalf("content %q is not JSON: %v", res.Content, err)
				}
				if got["ok"] != true || got["args"].(map[string]any)["a"] != 1.0 {
					t.Fatalf("content = %s, want ok and the arguments", res.Content)
				}
			})
			t.Run("traceparent in _meta", func(t *testing.T) {
				t.Parallel()
				e := newExecutor(t, b.cfg(t, "meta"))
				tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
				sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
				traced := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
				for ctx, want := range map[context.Context]string{
					traced:      "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
					t.Context(): "traceparent=",
				} {
					res, err := e.Execute(ctx, req(`{}`))
					if err != nil || string(res.Content) != want {
						t.Errorf("the server read %q (%v), want %q", res.Content, err, want)
					}
				}
			})
			t.Run("fail", func(t *testing.T) {
				t.Parallel()
				e := newExecutor(t, b.cfg(t, "fail"))
				_, err := e.Execute(t.Context(), req(`{}`))
				wantKind(t, err, dataplane.KindToolError, false)
				if !strings.HasSuffix(err.Error(), "boom") {
					t.Fatalf("err = %v, want the tool's text boom", err)
				}
			})
			t.Run("hang", func(t *testing.T) {
				t.Parallel()
				e := newExecutor(t, b.cfg(t, "hang"))
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				_, err := e.Execute(ctx, req(`{}`))
				wantKind(t, err, dataplane.KindTimeout, true)
				k, retry, _ := dataplane.Classify(err)
				if k != dataplane.KindTimeout || !retry {
					t.Fatalf("Classify = %s %v, want timeout retryable", k, retry)
				}
			})
			t.Run("validate", func(t *testing.T) {
				t.Parallel()
				unknown := newExecutor(t, b.cfg(t, "nope"))
				wantKind(t, unknown.Validate(req(`{}`)), dataplane.KindUnknownTool, false)
				e := newExecutor(t, b.cfg(t, "echo"))
				for _, in := range []string{``, `null`, `[1]`, `"s"`, `3`, `{`, `{} {}`, `not json`} {
					wantKind(t, e.Validate(req(in)), dataplane.KindInvalidArguments, false)
					_, err := e.Execute(t.Context(), req(in))
					wantKind(t, err, dataplane.KindInvalidArguments, false)
				}
			})
		})
	}
}

// TestCrashRestarts: a server process that dies fails the call in flight
// unavailable (retryable); the executor restarts it and the next call
// succeeds, answered by a new process.
func TestCrashRestarts(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, mcp.Config{Tool: "crash", Command: []string{serverBin}})
	survive := req(`{"survive":true}`)
	first, err := e.Execute(t.Context(), survive)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	_, err = e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindUnavailable, true)

	var again dataplane.Result
	eventually(t, 10*time.Second, func() error {
		res, err := e.Execute(t.Context(), survive)
		if err != nil {
			wantKind(t, err, dataplane.KindUnavailable, true)
			return err
		}
		again = res
		return nil
	})
	if !strings.HasPrefix(string(again.Content), "alive ") || string(again.Content) == string(first.Content) {
		t.Fatalf("after the crash: %q, before: %q; want a new process", again.Content, first.Content)
	}
	if err := e.Validate(survive); err != nil {
		t.Fatalf("Validate after restart: %v", err)
	}
}

// TestInFlightFailsWhenProcessDies: a call in flight when the server
// process is killed fails unavailable, retryable, well before its deadline.
func TestInFlightFailsWhenProcessDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile, errFile := filepath.Join(dir, "pid"), filepath.Join(dir, "stderr")
	// A wrapper that records the server's pid and its stderr, where the
	// hang tool says it is waiting.
	script := filepath.Join(dir, "server.sh")
	body := "#!/bin/sh\necho $$ > " + pidFile + "\nexec " + serverBin + " 2> " + errFile + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, mcp.Config{Tool: "hang", Command: []string{script}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Execute(ctx, req(`{}`))
		done <- err
	}()
	eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(errFile)
		if err == nil && !strings.Contains(string(b), "hang: waiting") {
			err = errors.New("the call has not reached the server")
		}
		return err
	})
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kill", "-9", strings.TrimSpace(string(pid))).CombinedOutput(); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	select {
	case err := <-done:
		wantKind(t, err, dataplane.KindUnavailable, true)
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight did not fail when its server died")
	}
}

// TestHTTPServerGone: an HTTP server that dies (Spine does not own it, so
// cannot restart it) fails the call in flight and the next ones
// unavailable, retryable.
func TestHTTPServerGone(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, mcp.Config{Tool: "crash", URL: httpServer(t)})
	_, err := e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindUnavailable, true)
	_, err = e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindUnavailable, true)
}

func TestNewRejectsConfig(t *testing.T) {
	t.Parallel()
	_, err := mcp.New(mcp.Config{Command: []string{"x"}, URL: "ftp://"})
	if err == nil {
		t.Fatal("New accepted a config with no tool and both Command and URL")
	}
	for _, want := range []string{"Tool is required", "exclusive", "scheme must be http or https"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %q", err, want)
		}
	}
	if _, err := mcp.New(mcp.Config{}); err == nil || !strings.Contains(err.Error(), "one of Command") {
		t.Errorf("empty config: err = %v, want the missing server named", err)
	}
}

// New does no I/O: until Run has connected, calls fail executor_not_ready
// (retryable), and a server that does not start keeps them so while Run
// retries; invalid arguments are still refused for good.
func TestNotReadyUntilConnected(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	e, err := mcp.New(mcp.Config{Tool: "echo", Command: []string{missing}})
	if err != nil {
		t.Fatalf("New with a command that does not exist: %v (it must not start it)", err)
	}
	defer e.Close()
	wantKind(t, e.Validate(req(`{}`)), dataplane.KindExecutorNotReady, true)
	_, err = e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindExecutorNotReady, true)
	if !errors.Is(err, mcp.ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
	wantKind(t, e.Validate(req(`[1]`)), dataplane.KindInvalidArguments, false)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // a few failed attempts, with backoff
	_, err = e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindExecutorNotReady, true)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its ctx ended")
	}
	// Its instance stopped: another one runs the call again.
	_, err = e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindCanceledByRestart, true)
	if !errors.Is(err, mcp.ErrStopped) {
		t.Fatalf("err = %v, want ErrStopped", err)
	}
	if err := e.Run(t.Context()); err == nil {
		t.Fatal("a second Run was accepted")
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, mcp.Config{Tool: "echo", Command: []string{serverBin}})
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := e.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindUnavailable, false)
	if !errors.Is(err, mcp.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	// Closed before it ever ran: it never will.
	never, err := mcp.New(mcp.Config{Tool: "echo", Command: []string{serverBin}})
	if err != nil {
		t.Fatal(err)
	}
	if err := never.Close(); err != nil {
		t.Fatal(err)
	}
	if err := never.Run(t.Context()); err == nil {
		t.Fatal("Run after Close was accepted")
	}
	_, err = never.Execute(t.Context(), req(`{}`))
	wantKind(t, err, dataplane.KindUnavailable, false)
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, mcp.Config{Tool: "echo", Command: []string{serverBin}})
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			in := fmt.Sprintf(`{"i":%d}`, i)
			res, err := e.Execute(t.Context(), req(in))
			if err == nil && string(res.Content) != in {
				err = errors.New("content " + string(res.Content) + " != " + in)
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
