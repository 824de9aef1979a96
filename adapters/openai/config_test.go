package openai_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/adapters/openai"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	neg, nan := -0.5, math.NaN()
	tests := []struct {
		name string
		cfg  openai.Config
		want []string // substrings, one per problem; none for a valid config
	}{
		{"minimal", openai.Config{BaseURL: "http://127.0.0.1:11434/v1", Model: "llama3.2"}, nil},
		{"full", openai.Config{BaseURL: "https://api.openai.com/v1/", Model: "gpt-4o-mini", APIKey: testKey, System: "s",
			Temperature: new(2.0), MaxTokens: 10, JSON: true, Timeout: time.Second, MaxResponseBytes: 1 << 10}, nil},
		{"empty", openai.Config{}, []string{"BaseURL is required", "Model is required"}},
		{"everything wrong", openai.Config{BaseURL: "ftp://host/v1", Model: " ", APIKey: "sk-abc\n", Temperature: &neg,
			MaxTokens: -1, Timeout: -time.Second, MaxResponseBytes: -1},
			[]string{"scheme must be http or https", "Model is required", "APIKey contains whitespace", "Temperature -0.5",
				"MaxTokens -1", "Timeout -1s", "MaxResponseBytes -1"}},
		{"no host", openai.Config{BaseURL: "http:///v1", Model: "m"}, []string{"has no host"}},
		{"query", openai.Config{BaseURL: "http://h/v1?api-version=1", Model: "m"}, []string{"must not have a query"}},
		{"unparsable", openai.Config{BaseURL: "http://user:hunter2@h:port/v1", Model: "m"}, []string{"BaseURL does not parse"}},
		{"temperature NaN", openai.Config{BaseURL: "http://h", Model: "m", Temperature: &nan}, []string{"Temperature NaN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tc.cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to name %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("err has %d problems, want %d: %v", n, len(tc.want), err)
			}
			for _, leak := range []string{"sk-abc", "hunter2"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("err shows a secret: %v", err)
				}
			}
			if _, nerr := openai.New(tc.cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New err = %v, want Validate's", nerr)
			}
		})
	}
}

// TestNewNoIO: New succeeds for a server that does not exist.
func TestNewNoIO(t *testing.T) {
	t.Parallel()
	if _, err := openai.New(openai.Config{BaseURL: "http://nowhere.invalid/v1", Model: "m"}); err != nil {
		t.Fatalf("New: %v", err)
	}
}

// TestSecretNeverPrints: no format verb, no encoder and no slog handler
// shows the key, alone or in a Config.
func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	cfg := openai.Config{BaseURL: "http://h/v1", Model: "m", APIKey: testKey}
	var out strings.Builder
	fmt.Fprintf(&out, "%v %+v %s\n", cfg, cfg, cfg.APIKey)
	fmt.Fprintf(&out, "%#v %v %+v %#v\n", cfg, &cfg, &cfg, &cfg)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-20q", "%T"} {
		fmt.Fprintf(&out, verb+"\n", cfg.APIKey)
	}
	out.WriteString(cfg.APIKey.String() + cfg.APIKey.GoString())
	for _, v := range []any{cfg, &cfg, cfg.APIKey, map[string]any{"k": cfg.APIKey}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		out.Write(b)
	}
	tb, _ := cfg.APIKey.MarshalText()
	out.Write(tb)
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		l := slog.New(h)
		l.Info("cfg", "cfg", cfg, "ptr", &cfg, "key", cfg.APIKey)
		l.Info("any", slog.Any("cfg", cfg), slog.Any("key", cfg.APIKey))
	}
	out.Write(logs.Bytes())
	s := out.String()
	if strings.Contains(s, testKey) || strings.Contains(s, "4f9a1c0e") || strings.Contains(s, fmt.Sprintf("%x", testKey)) {
		t.Fatalf("the key shows:\n%s", s)
	}
	if !strings.Contains(s, "[redacted]") || !strings.Contains(logs.String(), "api_key_set=true") {
		t.Fatalf("want the key shown as [redacted] and the config logged:\n%s", s)
	}
	if got := cfg.APIKey.Reveal(); got != testKey {
		t.Fatalf("Reveal = %q", got)
	}
	var empty openai.Secret
	if empty.String() != "" || fmt.Sprint(empty) != "" {
		t.Fatalf("an empty secret prints %q", empty.String())
	}
}

// TestSecretFromEnv is not parallel: it sets environment variables.
func TestSecretFromEnv(t *testing.T) {
	t.Setenv("SPINE_TEST_OPENAI_KEY", " "+testKey+"\n")
	t.Setenv("SPINE_TEST_OPENAI_EMPTY", "  ")
	s, err := openai.SecretFromEnv("SPINE_TEST_OPENAI_KEY")
	if err != nil || s.Reveal() != testKey {
		t.Fatalf("SecretFromEnv = %v, want the trimmed key", err)
	}
	for name, want := range map[string]string{
		"SPINE_TEST_OPENAI_EMPTY": "SPINE_TEST_OPENAI_EMPTY is empty",
		"SPINE_TEST_OPENAI_UNSET": "SPINE_TEST_OPENAI_UNSET is not set",
	} {
		s, err := openai.SecretFromEnv(name)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, openai.ErrNoSecret) || s != "" {
			t.Errorf("SecretFromEnv(%s) = %q, %v; want %q wrapping ErrNoSecret", name, s.Reveal(), err, want)
		}
	}
}
