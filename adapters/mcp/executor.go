package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/processors/dataplane"
)

// Artifact content types.
const (
	ContentTypeJSON = "application/json"
	ContentTypeText = "text/plain"
)

// maxToolErrorBytes bounds the tool's text kept in a tool_error.
const maxToolErrorBytes = 512

// terminateAfter is how long closing a stdio session waits for the process
// to exit after its stdin closes, before SIGTERM.
const terminateAfter = 2 * time.Second

// Executor calls one MCP tool. It is a dataplane.Executor and a
// dataplane.Validator, safe for concurrent use. New does no I/O; Run
// connects and keeps the session. See the package doc for its goroutines
// and lock.
type Executor struct {
	cfg    Config
	log    *slog.Logger
	client *mcp.Client

	running atomic.Bool
	// ready is closed at the first connection.
	ready     chan struct{}
	readyOnce sync.Once
	// stop ends Run (Close); done is closed when Run has returned.
	stop    context.CancelFunc
	stopCtx context.Context
	done    chan struct{}

	mu        sync.Mutex
	sess      *mcp.ClientSession // nil until connected and while reconnecting
	tools     map[string]bool    // as the server last listed them
	connected bool               // a session was ever established
	closed    bool
	// byClose is set when Close, not the end of Run's ctx, stopped it.
	byClose bool
}

var (
	_ dataplane.Executor  = (*Executor)(nil)
	_ dataplane.Validator = (*Executor)(nil)
)

// New validates cfg, returning every problem at once. It does no I/O: Run
// connects. Until Run has connected, Execute and Validate fail
// executor_not_ready (retryable).
func New(cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Command = append([]string(nil), cfg.Command...)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Executor{
		cfg:    cfg,
		log:    log.With("adapter", "mcp", "tool", cfg.Tool),
		client: mcp.NewClient(&mcp.Implementation{Name: "spine", Version: "v1"}, nil),
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	e.stopCtx, e.stop = context.WithCancel(context.Background())
	return e, nil
}

// Ready is closed when Run has connected for the first time.
func (e *Executor) Ready() <-chan struct{} { return e.ready }

// Run connects to the server (for a Command, starts it), lists its tools,
// and keeps the session: when it ends for any reason but ctx or Close it
// reconnects with a backoff of 100ms doubling to 5s, restarting the
// command. A server that cannot be reached at first is retried the same
// way. Run blocks until ctx ends or Close is called, then closes the
// session (for a Command, the server's stdin, then SIGTERM after 2s) and
// returns nil; calls after that fail unavailable, not retryable. Run may
// be called once.
func (e *Executor) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("mcp: Run called twice")
	}
	defer close(e.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAfter := context.AfterFunc(e.stopCtx, cancel)
	defer stopAfter()
	defer e.markClosed()

	delay := backoffMin
	for {
		sess, tools, err := e.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.log.Warn("mcp connect failed", "err", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			delay = min(2*delay, backoffMax)
			continue
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			_ = sess.Close()
			return nil
		}
		reconnected := e.connected
		e.sess, e.tools, e.connected = sess, tools, true
		e.mu.Unlock()
		e.readyOnce.Do(func() { close(e.ready) })
		if reconnected {
			e.log.Info("mcp session reconnected")
		} else {
			e.log.Info("mcp session connected", "tools", len(tools))
		}
		delay = backoffMin

		ended := make(chan error, 1)
		go func() { ended <- sess.Wait() }()
		select {
		case <-ctx.Done():
			e.drop(sess)
			_ = sess.Close()
			<-ended
			return nil
		case err := <-ended:
			e.drop(sess)
			e.log.Warn("mcp session ended; reconnecting", "err", err)
		}
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// drop forgets sess if it is still the current session.
func (e *Executor) drop(sess *mcp.ClientSession) {
	e.mu.Lock()
	if e.sess == sess {
		e.sess = nil
	}
	e.mu.Unlock()
}

// markClosed makes later calls fail: see Execute.
func (e *Executor) markClosed() {
	e.mu.Lock()
	e.closed, e.sess = true, nil
	if e.stopCtx.Err() != nil {
		e.byClose = true
	}
	e.mu.Unlock()
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connect opens one session and lists the server's tools.
func (e *Executor) connect(ctx context.Context) (*mcp.ClientSession, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ConnectTimeout)
	defer cancel()

	var t mcp.Transport
	where := e.cfg.URL
	if len(e.cfg.Command) > 0 {
		// Not CommandContext: the process lives past this ctx, until Run
		// ends or its own exit.
		t = &mcp.CommandTransport{
			Command:           exec.Command(e.cfg.Command[0], e.cfg.Command[1:]...),
			TerminateDuration: terminateAfter,
		}
		where = strings.Join(e.cfg.Command, " ")
	} else {
		t = &mcp.StreamableClientTransport{Endpoint: e.cfg.URL}
	}
	sess, err := e.client.Connect(ctx, t, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("mcp: connect to %s: %w (does the server start and speak MCP?)", where, err)
	}
	tools := map[string]bool{}
	for tool, err := range sess.Tools(ctx, nil) {
		if err != nil {
			_ = sess.Close()
			return nil, nil, fmt.Errorf("mcp: list the tools of %s: %w", where, err)
		}
		tools[tool.Name] = true
	}
	return sess, tools, nil
}

// closedByClose reports whether Close, rather than the end of Run's ctx,
// stopped the executor.
func (e *Executor) closedByClose() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byClose
}

// state is what a call needs to know, under the lock.
func (e *Executor) state() (sess *mcp.ClientSession, tools map[string]bool, connected, closed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sess, e.tools, e.connected, e.closed
}

// Validate implements dataplane.Validator: Input must be a JSON object and
// the tool must be listed by the server (as of the last connection).
// Before Run has first connected it fails executor_not_ready (retryable);
// while the executor is reconnecting the tool check is skipped: Execute
// reports the outage.
func (e *Executor) Validate(req dataplane.Request) error {
	if _, err := decodeArguments(req.Input); err != nil {
		return dataplane.Permanent(dataplane.KindInvalidArguments, err)
	}
	sess, tools, connected, closed := e.state()
	if !connected && !closed {
		return dataplane.Retryable(dataplane.KindExecutorNotReady, ErrNotConnected)
	}
	if sess != nil && !tools[e.cfg.Tool] {
		return dataplane.Permanent(dataplane.KindUnknownTool,
			fmt.Errorf("the mcp server does not list tool %q", e.cfg.Tool))
	}
	return nil
}

// Execute implements dataplane.Executor: one CallTool with req.Input as the
// arguments. It honours ctx: a deadline that passes is a retryable timeout;
// a ctx canceled otherwise returns ctx.Err(). It never retries.
func (e *Executor) Execute(ctx context.Context, req dataplane.Request) (dataplane.Result, error) {
	args, err := decodeArguments(req.Input)
	if err != nil {
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindInvalidArguments, err)
	}
	sess, _, connected, closed := e.state()
	switch {
	case closed && e.closedByClose():
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindUnavailable, ErrClosed)
	case closed:
		// The instance is stopping: another one runs the call again.
		return dataplane.Result{}, dataplane.Retryable(dataplane.KindCanceledByRestart, ErrStopped)
	case !connected:
		return dataplane.Result{}, dataplane.Retryable(dataplane.KindExecutorNotReady, ErrNotConnected)
	case sess == nil:
		return dataplane.Result{}, dataplane.Retryable(dataplane.KindUnavailable, ErrReconnecting)
	}
	params := &mcp.CallToolParams{Name: e.cfg.Tool, Arguments: args}
	if trace.SpanContextFromContext(ctx).IsValid() {
		// The dataplane's executor.call span (when tracing is on), in the
		// request's _meta as W3C trace context, so the tool's trace joins
		// the run's.
		c := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, c)
		params.Meta = mcp.Meta{}
		for k, v := range c {
			params.Meta[k] = v
		}
	}
	res, err := sess.CallTool(ctx, params)
	if err != nil {
		return dataplane.Result{}, e.classify(ctx, sess, err)
	}
	return result(res)
}

// classify turns a failed CallTool into a canonical error. A failure that
// is not the server's own answer means the session is gone: it is closed so
// Run reconnects.
func (e *Executor) classify(ctx context.Context, sess *mcp.ClientSession, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return dataplane.Retryable(dataplane.KindTimeout, fmt.Errorf("mcp tool %q: %w", e.cfg.Tool, ctxErr))
		}
		return ctxErr
	}
	var wire *jsonrpc.Error
	if errors.As(err, &wire) {
		switch wire.Code {
		case jsonrpc.CodeInvalidParams:
			return dataplane.Permanent(dataplane.KindInvalidArguments, fmt.Errorf("mcp tool %q: %w", e.cfg.Tool, err))
		case jsonrpc.CodeMethodNotFound:
			return dataplane.Permanent(dataplane.KindUnsupported, fmt.Errorf("mcp tool %q: %w", e.cfg.Tool, err))
		case jsonrpc.CodeInternalError:
			return dataplane.Retryable(dataplane.KindExecution, fmt.Errorf("mcp tool %q: %w", e.cfg.Tool, err))
		}
	}
	// The connection, the process or the HTTP session died under the call.
	e.mu.Lock()
	if e.sess == sess {
		e.sess = nil
	}
	e.mu.Unlock()
	_ = sess.Close() // wakes Run, which reconnects
	return dataplane.Retryable(dataplane.KindUnavailable, fmt.Errorf("mcp tool %q: %w (the server will be reconnected)", e.cfg.Tool, err))
}

// result translates the tool's answer into an artifact.
func result(res *mcp.CallToolResult) (dataplane.Result, error) {
	text := textOf(res.Content)
	if res.IsError {
		if text == "" {
			text = "the tool reported an error without text"
		}
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindToolError, errors.New(bound(text, maxToolErrorBytes)))
	}
	if res.StructuredContent != nil {
		b, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return dataplane.Result{}, dataplane.Permanent(dataplane.KindMalformed, fmt.Errorf("mcp structured content: %w", err))
		}
		return dataplane.Result{ContentType: ContentTypeJSON, Content: b}, nil
	}
	if text == "" {
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindEmptyResponse, errors.New("the mcp tool answered no text and no structured content"))
	}
	return dataplane.Result{ContentType: ContentTypeText, Content: []byte(text)}, nil
}

// textOf concatenates the text items of a tool's content.
func textOf(content []mcp.Content) string {
	var b strings.Builder
	for _, c := range content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// bound cuts s to at most n bytes on a rune boundary, marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Close ends Run (if it runs) and waits for it to close the session; for
// a Command the server's stdin is closed and, if it has not exited within
// 2s, it is terminated. Calls after Close fail unavailable, not
// retryable. Close is idempotent; the executor cannot run again.
func (e *Executor) Close() error {
	e.stop()
	if e.running.CompareAndSwap(false, true) {
		// Run never ran and now never will.
		e.markClosed()
		close(e.done)
	}
	<-e.done
	return nil
}
