package thread

import (
	"strings"
	"time"
)

// Error kinds of a failed call (the error of a dataplane.failed event),
// classified at the boundary by the adapters, as kerr marks each Kafka
// error retriable or not. Whether the stateflow may retry a call is a
// property of its kind: NonRetryableErrorKinds.
const (
	ErrorRateLimited       = "rate_limited"       // 429; retryable, honours Retry-After
	ErrorUnavailable       = "unavailable"        // 5xx, 408, 409, connection refused or reset, a server process that died; retryable
	ErrorTimeout           = "timeout"            // the call exceeded its state's timeout; retryable
	ErrorBadRequest        = "bad_request"        // 4xx other than 408, 409, 429; not retryable
	ErrorUnauthorized      = "unauthorized"       // 401, 403; not retryable
	ErrorMalformed         = "malformed_response" // a response that does not parse; not retryable
	ErrorEmptyResponse     = "empty_response"     // no choices, no content; not retryable
	ErrorToolError         = "tool_error"         // an MCP tool answered IsError; not retryable
	ErrorUnknownTool       = "unknown_tool"       // the MCP server does not list the tool; not retryable
	ErrorInvalidArguments  = "invalid_arguments"  // tool arguments that are not a JSON object; not retryable
	ErrorArtifactTooLarge  = "artifact_too_large" // content over the artifact limit; not retryable
	ErrorExecution         = "execution"          // any other failure; retryable
	ErrorInvalidInput      = "invalid_input"      // the input cannot be sent; not retryable
	ErrorUnsupported       = "unsupported"        // the executor cannot do what is asked; not retryable
	ErrorExecutorNotReady  = "executor_not_ready" // the executor is still connecting; retryable
	ErrorSynthetic         = "synthetic"          // the synthetic executor's simulated failure; retryable
	ErrorAgentNotFound     = "unknown_agent"      // no agent serves the kind on this instance; not retryable
	ErrorCanceledByRestart = "interrupted"        // a call cut off by the instance stopping; retryable
)

// NonRetryableErrorKinds are the kinds a retry cannot cure: the default
// retry policy sends them straight to the state's failure.
var NonRetryableErrorKinds = []string{
	ErrorBadRequest, ErrorUnauthorized, ErrorMalformed, ErrorEmptyResponse, ErrorToolError, ErrorUnknownTool,
	ErrorInvalidArguments, ErrorArtifactTooLarge, ErrorInvalidInput, ErrorUnsupported, ErrorAgentNotFound,
}

// FormatCallError is the error text of a dataplane.failed event: the kind,
// the delay the outside system asked for before a retry (Retry-After) when
// there is one, and the cause: "rate_limited (retry after 2s): the
// server's text", "bad_request: the server's text".
func FormatCallError(kind string, retryAfter time.Duration, text string) string {
	if retryAfter > 0 {
		return kind + " (retry after " + retryAfter.String() + "): " + text
	}
	return kind + ": " + text
}

// ParseCallError reads FormatCallError's text back; a text without a kind
// is kind "unknown".
func ParseCallError(s string) (kind string, retryAfter time.Duration, text string) {
	head, rest, ok := strings.Cut(s, ": ")
	if !ok {
		return "unknown", 0, s
	}
	kind = head
	if k, d, ok := strings.Cut(head, " (retry after "); ok && strings.HasSuffix(d, ")") {
		ra, err := time.ParseDuration(strings.TrimSuffix(d, ")"))
		if err != nil || ra <= 0 {
			return "unknown", 0, s
		}
		kind, retryAfter = k, ra
	}
	if kind == "" || strings.ContainsAny(kind, " \t()") {
		return "unknown", 0, s
	}
	return kind, retryAfter, rest
}
