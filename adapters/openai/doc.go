// Package openai is the dataplane's executor for OpenAI-compatible Chat
// Completions (POST {BaseURL}/chat/completions), the API served by OpenAI,
// vLLM, Ollama, llama.cpp's server and LiteLLM. A call goes in as a
// dataplane.Request whose Input is the user message (UTF-8 text), after the
// configured system prompt, and comes back as a dataplane.Result (the first
// choice's content, its finish reason, token usage) or a classified
// *dataplane.ExecError. No wire type leaves the package.
//
// It speaks the API with net/http and encoding/json, not an SDK: the
// official client (openai-go) retries by itself, and retries must live in
// one place, the stateflow's retry policy, which also needs the server's
// Retry-After exactly as sent. Here nothing retries: not the client, not
// net/http's transport (the request is not replayable, so a kept-alive
// connection that dies under a call fails it unavailable instead of
// resending it), and redirects are not followed.
//
// Classification at the boundary:
//
//   - 429: rate_limited, retryable, RetryAfter from retry-after-ms or
//     Retry-After (delta-seconds or HTTP-date)
//   - 408, 409, 5xx: unavailable, retryable, RetryAfter likewise
//   - 401, 403: unauthorized, not retryable
//   - other 4xx (and a 3xx, since redirects are not followed): bad_request,
//     not retryable
//   - connection refused or reset, EOF, DNS: unavailable, retryable
//   - the ctx's deadline or Config.Timeout passed: timeout, retryable
//   - a 2xx body that is not a chat completion, or, when JSON was asked,
//     content that is not valid JSON: malformed_response, not retryable
//   - no choices, no message, empty content (or a refusal):
//     empty_response, not retryable
//   - a 2xx body over Config.MaxResponseBytes (16 MiB by default):
//     artifact_too_large, not retryable: the body is almost all content, so
//     the artifact is what is too large, and the same request would
//     produce it again
//   - Input that is not valid UTF-8: invalid_input, not retryable
//     (Validate, and Execute)
//
// Errors carry the server's own message from the OpenAI error shape,
// bounded to 512 bytes, and are also found with errors.As as *APIError.
// The API key is a Secret that never prints; it is scrubbed from the
// server's text should the server echo it, and neither the Authorization
// header nor the request body ever appears in an error or a log line.
//
// An Executor holds no goroutine and no lock: its settings are immutable
// after New and its *http.Client is safe for concurrent use, so calls run
// concurrently.
package openai
