package mcp

import "errors"

// ErrClosed is wrapped by calls made after Close (kind unavailable, not
// retryable).
var ErrClosed = errors.New("mcp executor is closed")

// ErrReconnecting is wrapped by calls made while the session is down and
// the supervisor reconnects (kind unavailable, retryable).
var ErrReconnecting = errors.New("mcp server is reconnecting")
