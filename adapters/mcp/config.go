package mcp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"
)

// Config is the MCP executor's settings. Exactly one of Command and URL
// names the server.
type Config struct {
	// Tool is the name of the tool every call invokes. Required.
	Tool string
	// Command is the server's argv, started by Spine and spoken to over
	// stdio; restarted when it exits. Exclusive with URL.
	Command []string
	// URL is a streamable HTTP MCP endpoint (http or https). Exclusive
	// with Command.
	URL string
	// ConnectTimeout bounds one connection attempt (start, initialize,
	// list tools). Default 10s.
	ConnectTimeout time.Duration
	// Logger receives reconnection events. Default: discarded.
	Logger *slog.Logger
}

// Backoff between reconnection attempts: from backoffMin, doubling to
// backoffMax.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

const defaultConnectTimeout = 10 * time.Second

// Validate checks the settings, returning every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Tool == "" {
		bad("mcp: Tool is required: which tool of the server does the executor call?")
	}
	switch {
	case len(c.Command) == 0 && c.URL == "":
		bad("mcp: one of Command (a stdio server to start) or URL (a streamable HTTP endpoint) is required")
	case len(c.Command) > 0 && c.URL != "":
		bad("mcp: Command and URL are exclusive: set one")
	}
	if len(c.Command) > 0 && c.Command[0] == "" {
		bad("mcp: Command[0], the program to run, is empty")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			bad("mcp: URL %q does not parse: %v", c.URL, err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("mcp: URL %q: scheme must be http or https", c.URL)
		case u.Host == "":
			bad("mcp: URL %q has no host", c.URL)
		}
	}
	if c.ConnectTimeout < 0 {
		bad("mcp: ConnectTimeout %s must not be negative", c.ConnectTimeout)
	}
	return errors.Join(errs...)
}
