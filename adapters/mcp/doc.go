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
// # Goroutines and locks
//
// An Executor owns one goroutine, the supervisor, started by New and ended
// by Close. It waits for the current session to end; when it ends for any
// reason but Close (the process exited, the HTTP session was lost, or
// Execute dropped it after a transport failure) the supervisor reconnects,
// restarting the command, with a backoff of 100ms doubling to 5s, and lists
// the tools again. Until it succeeds, calls fail unavailable (retryable);
// calls in flight when the session dies fail the same way. The adapter does
// not retry a call itself: retries are the stateflow's.
//
// One mutex, Executor.mu, guards the current session, the listed tools and
// the closed flag; it is never held across a network call.
package mcp
