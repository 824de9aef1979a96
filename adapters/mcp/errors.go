package mcp

import "errors"

// ErrClosed is wrapped by calls made after Close (kind unavailable, not
// retryable).
var ErrClosed = errors.New("mcp executor is closed")

// ErrReconnecting is wrapped by calls made while the session is down and
// Run reconnects (kind unavailable, retryable).
var ErrReconnecting = errors.New("mcp server is reconnecting")

// ErrNotConnected is wrapped by calls made before Run has connected for
// the first time (kind executor_not_ready, retryable).
var ErrNotConnected = errors.New("mcp server is not connected yet (is the executor's Run running?)")

// ErrStopped is wrapped by calls made after Run's ctx ended: the instance
// is stopping (kind interrupted, retryable).
var ErrStopped = errors.New("mcp executor stopped with its instance")
