package openai

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// redacted is what a Secret prints as, whatever the verb or encoder.
const redacted = "[redacted]"

// Secret is a credential, such as an API key: a value to send, never to
// print. Every way Go formats or encodes it (fmt with any verb, String,
// GoString, slog, encoding/json, encoding.TextMarshaler) yields
// "[redacted]", or "" when the secret is empty. Only Reveal returns the
// value.
type Secret string

// SecretFromEnv reads the secret from the environment variable name,
// trimming surrounding whitespace (a key read from a file often ends in a
// newline). The error, when the variable is unset or empty, names the
// variable, never a value.
func SecretFromEnv(name string) (Secret, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return "", fmt.Errorf("openai: environment variable %s is not set: %w", name, ErrNoSecret)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", fmt.Errorf("openai: environment variable %s is empty: %w", name, ErrNoSecret)
	}
	return Secret(v), nil
}

// Reveal returns the secret's value, to be sent where it belongs.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns the redacted form for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("openai.Secret(%q)", s.String()) }

// Format implements fmt.Formatter so that no verb (%x, %q, %d, ...)
// prints the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, s.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText encodes the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
