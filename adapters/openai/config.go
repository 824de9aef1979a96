package openai

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// Config is the executor's settings. The zero value of every optional field
// is its default.
type Config struct {
	// BaseURL is the API's root, http or https, without a query, e.g.
	// https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama).
	// Calls go to BaseURL + "/chat/completions" (a trailing slash on
	// BaseURL is dropped). Required.
	BaseURL string
	// Model is the model every call asks for. Required.
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer <key>". Default:
	// none (local servers need none).
	APIKey Secret
	// System, when set, is the system prompt: the first message, role
	// "system". Default: none.
	System string
	// Temperature, when set, is sent as temperature, 0..2. Default: not
	// sent (the server's default).
	Temperature *float64
	// MaxTokens, when > 0, is sent as max_tokens. Default 0: not sent.
	MaxTokens int
	// JSON asks for a JSON object answer (response_format
	// {"type":"json_object"}); the artifact is then application/json, and
	// an answer that is not valid JSON is malformed_response. Default
	// false: text/plain.
	JSON bool
	// Timeout, when > 0, bounds each call on top of its ctx. Default 0:
	// the ctx only (the state's timeout).
	Timeout time.Duration
	// MaxResponseBytes bounds the response body read; a larger body fails
	// artifact_too_large. Default 16 MiB.
	MaxResponseBytes int64
	// HTTPClient sends the requests, as given (its redirect policy, its
	// timeouts). Default: a client that follows no redirects and whose
	// transport bounds dialing and TLS handshakes, with connection reuse
	// sized for many calls at once to one host.
	HTTPClient *http.Client
	// Logger receives one debug line per call. Default: discarded.
	Logger *slog.Logger
}

// DefaultMaxResponseBytes is MaxResponseBytes's default.
const DefaultMaxResponseBytes = 16 << 20

// Validate checks the settings, returning every problem at once, each
// naming its field. It never prints the API key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("openai: "+format, args...)) }
	if c.BaseURL == "" {
		bad("BaseURL is required: the API's root, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1")
	} else if u, err := url.Parse(c.BaseURL); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		bad("BaseURL does not parse: %v", err)
	} else {
		shown := u.Redacted()
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			bad("BaseURL %q: scheme must be http or https", shown)
		case u.Host == "":
			bad("BaseURL %q has no host", shown)
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			bad("BaseURL %q must not have a query or a fragment: /chat/completions is appended to it", shown)
		}
	}
	if strings.TrimSpace(c.Model) == "" {
		bad("Model is required: which model does the executor ask for?")
	}
	if strings.ContainsFunc(c.APIKey.Reveal(), func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		bad("APIKey contains whitespace or control characters: is it the whole key, and only the key?")
	}
	if t := c.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 2) {
		bad("Temperature %v must be within 0..2", *t)
	}
	if c.MaxTokens < 0 {
		bad("MaxTokens %d must not be negative (0 leaves it to the server)", c.MaxTokens)
	}
	if c.Timeout < 0 {
		bad("Timeout %s must not be negative (0 means the call's ctx only)", c.Timeout)
	}
	if c.MaxResponseBytes < 0 {
		bad("MaxResponseBytes %d must not be negative (0 means %d)", c.MaxResponseBytes, DefaultMaxResponseBytes)
	}
	return errors.Join(errs...)
}

// LogValue implements slog.LogValuer: the settings worth a log line, the
// API key only as whether one is set.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("base_url", redactURL(c.BaseURL)),
		slog.String("model", c.Model),
		slog.Bool("api_key_set", c.APIKey != ""),
		slog.Bool("system_prompt", c.System != ""),
		slog.Int("max_tokens", c.MaxTokens),
		slog.Bool("json", c.JSON),
		slog.Duration("timeout", c.Timeout),
	}
	if c.Temperature != nil {
		attrs = append(attrs, slog.Float64("temperature", *c.Temperature))
	}
	return slog.GroupValue(attrs...)
}

// redactURL hides a password in a URL's user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
