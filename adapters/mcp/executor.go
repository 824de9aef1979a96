package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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
// dataplane.Validator, safe for concurrent use. See the package doc for its
// goroutine and lock.
type Executor struct {
	cfg    Config
	log    *slog.Logger
	client *mcp.Client

	// stop ends the supervisor and any connection attempt; done is closed
	// when the supervisor has returned.
	stop    context.CancelFunc
	stopCtx context.Context
	done    chan struct{}

	mu     sync.Mutex
	sess   *mcp.ClientSession // nil while reconnecting
	tools  map[string]bool    // as the server last listed them
	closed bool
}

var (
	_ dataplane.Executor  = (*Executor)(nil)
	_ dataplane.Validator = (*Executor)(nil)
)

// New validates cfg (every problem at once), connects to the server (for a
// Command, starts it), lists its tools and starts the supervisor that
// reconnects when the session dies. ctx bounds the first connection only;
// the server outlives it until Close.
func New(ctx context.Context, cfg Config) (*Executor, error) {
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
		done:   make(chan struct{}),
	}
	e.stopCtx, e.stop = context.WithCancel(context.Background())
	sess, tools, err := e.connect(ctx)
	if err != nil {
		e.stop()
		return nil, err
	}
	e.sess, e.tools = sess, tools
	go e.supervise(sess)
	return e, nil
}

// connect opens one session and lists the server's tools.
func (e *Executor) connect(ctx context.Context) (*mcp.ClientSession, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ConnectTimeout)
	defer cancel()
	stopAfter := context.AfterFunc(e.stopCtx, cancel)
	defer stopAfter()

	var t mcp.Transport
	where := e.cfg.URL
	if len(e.cfg.Command) > 0 {
		// Not CommandContext: the process lives past this ctx, until Close
		// or its own exit.
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

// supervise waits for the current session to end and, unless the executor
// is closing, reconnects with backoff.
func (e *Executor) supervise(sess *mcp.ClientSession) {
	defer close(e.done)
	for {
		err := sess.Wait()
		e.mu.Lock()
		if e.sess == sess {
			e.sess = nil
		}
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return
		}
		e.log.Warn("mcp session ended; reconnecting", "err", err)
		sess = e.reconnect()
		if sess == nil {
			return
		}
	}
}

// reconnect connects until it succeeds or the executor closes (nil).
func (e *Executor) reconnect() *mcp.ClientSession {
	delay := backoffMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-e.stopCtx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		sess, tools, err := e.connect(e.stopCtx)
		if err == nil {
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				_ = sess.Close()
				return nil
			}
			e.sess, e.tools = sess, tools
			e.mu.Unlock()
			e.log.Info("mcp session reconnected")
			return sess
		}
		e.log.Warn("mcp reconnect failed", "err", err, "retry_in", delay)
		delay = min(2*delay, backoffMax)
	}
}

// Validate implements dataplane.Validator: the tool must be listed by the
// server (as of the last connection) and Input must be a JSON object.
// While the executor is reconnecting the tool check is skipped: Execute
// reports the outage.
func (e *Executor) Validate(req dataplane.Request) error {
	e.mu.Lock()
	listed, known := e.tools[e.cfg.Tool], e.sess != nil
	e.mu.Unlock()
	if known && !listed {
		return dataplane.Permanent(dataplane.KindUnknownTool,
			fmt.Errorf("the mcp server does not list tool %q", e.cfg.Tool))
	}
	if _, err := decodeArguments(req.Input); err != nil {
		return dataplane.Permanent(dataplane.KindInvalidArguments, err)
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
	e.mu.Lock()
	sess, closed := e.sess, e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindUnavailable, ErrClosed)
	case sess == nil:
		return dataplane.Result{}, dataplane.Retryable(dataplane.KindUnavailable, ErrReconnecting)
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: e.cfg.Tool, Arguments: args})
	if err != nil {
		return dataplane.Result{}, e.classify(ctx, sess, err)
	}
	return result(res)
}

// classify turns a failed CallTool into a canonical error. A failure that
// is not the server's own answer means the session is gone: it is closed so
// the supervisor reconnects.
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
	_ = sess.Close() // wakes the supervisor
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

// Close stops the supervisor and the session; for a Command it closes the
// server's stdin and, if it has not exited within 2s, terminates it.
// Calls after Close fail unavailable, not retryable. Close is idempotent
// and waits for the supervisor to return.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return nil
	}
	e.closed = true
	sess := e.sess
	e.sess = nil
	e.mu.Unlock()
	e.stop()
	var err error
	if sess != nil {
		err = sess.Close()
	}
	<-e.done
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}
