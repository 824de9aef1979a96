package openai

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrNoSecret is wrapped by SecretFromEnv when the variable is unset or
// empty.
var ErrNoSecret = errors.New("no secret")

// APIError is a non-2xx answer of the server, wrapped in the
// *dataplane.ExecError that Execute returns; errors.As finds it. Message,
// Type and Code come from the OpenAI error body
// ({"error":{"message":..,"type":..,"code":..}}, or vLLM's and others'
// variants), bounded, with the API key scrubbed should the server echo it;
// when the body has no such shape, Message is the start of the body.
type APIError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Message is the server's message, at most 512 bytes on one line.
	Message string
	// Type is the error's type (invalid_request_error, server_error, ...).
	Type string
	// Code is the error's code (rate_limit_exceeded, invalid_api_key, ...),
	// a number in some servers' answers, rendered as text.
	Code string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	switch {
	case e.Type != "" && e.Code != "":
		fmt.Fprintf(&b, " (type %s, code %s)", e.Type, e.Code)
	case e.Type != "":
		fmt.Fprintf(&b, " (type %s)", e.Type)
	case e.Code != "":
		fmt.Fprintf(&b, " (code %s)", e.Code)
	}
	return b.String()
}
