// Package mcp is the dataplane's MCP adapter: an Executor (and Validator)
// that calls one tool of a Model Context Protocol server through the
// official go-sdk. The server is either a command Spine starts and keeps,
// spoken to over stdio, or a streamable HTTP endpoint. No go-sdk type
// leaves this package: a call goes in as a dataplane.Request whose Input is
// the tool's JSON arguments object, and comes back as a dataplane.Result or
// a classified *dataplane.ExecError.
//
// Classification at the boundary:
//
//   - the server does not list the tool: unknown_tool, not retryable (Validate)
//   - Input is not a JSON object: invalid_arguments, not retryable (Validate)
//   - the tool answered IsError: tool_error, not retryable, its text bounded
//   - the call's ctx deadline passed: timeout, retryable
//   - the connection or the server process died: unavailable, retryable
//   - the server rejected the arguments (JSON-RPC invalid params):
//     invalid_arguments, not retryable
//
// A StructuredContent answer becomes an application/json artifact; any
// other answer the concatenation of its text content, as text/plain.
//
// # Lifecycle, goroutines and locks
//
// New does no I/O. Run connects, starting the command, lists the tools and
// keeps the session: it waits for the session to end and, when it ends for
// any reason but ctx or Close (the process exited, the HTTP session was
// lost, or Execute dropped it after a transport failure), reconnects with a
// backoff of 100ms doubling to 5s, restarting the command, and lists the
// tools again. A server that does not answer at first is retried the same
// way. Before the first connection, calls fail executor_not_ready
// (retryable); while reconnecting, unavailable (retryable); calls in flight
// when the session dies fail unavailable too. The adapter does not retry a
// call itself: retries are the stateflow's. When ctx ends or Close is
// called, Run closes the session and returns; later calls fail
// interrupted, retryable, when ctx ended (the instance is stopping), or
// unavailable, not retryable, after Close.
//
// Run owns one more goroutine per session, which waits for it to end; Run
// waits for it before returning. One mutex, Executor.mu, guards the
// current session, the listed tools and the connected and closed flags; it
// is never held across a network call.
package mcp
