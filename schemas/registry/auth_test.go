package registry_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas/registry"
)

// IsWrite names exactly the requests that change the registry: the ones
// WithWriteAuth guards.
func TestIsWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method, path string
		write        bool
	}{
		{"GET", "/subjects", false},
		{"GET", "/subjects/a-value/versions", false},
		{"HEAD", "/subjects", false},
		{"POST", "/subjects/a-value/versions", true},
		{"POST", "/subjects/a-value/versions/", true},
		{"POST", "/subjects/a-value", false},
		{"POST", "/compatibility/subjects/a-value/versions/latest", false},
		{"POST", "/compatibility/subjects/a-value/versions", false},
		{"PUT", "/config", true},
		{"PUT", "/config/a-value", true},
		{"DELETE", "/config/a-value", true},
		{"DELETE", "/subjects/a-value", true},
		{"DELETE", "/subjects/a-value/versions/1", true},
		{"PATCH", "/subjects", true},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(""))
		if got := registry.IsWrite(req); got != tc.write {
			t.Errorf("%s %s: IsWrite %v, want %v", tc.method, tc.path, got, tc.write)
		}
	}
}

// Basic auth and bearer write auth cannot both be on.
func TestWriteAuthExcludesBasicAuth(t *testing.T) {
	t.Parallel()
	_, err := registry.New(registry.WithKafka(kgo.SeedBrokers("127.0.0.1:1")), registry.WithBasicAuth("u", "p"),
		registry.WithWriteAuth(func(context.Context, string) error { return nil }))
	if err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("New with both: %v, want an error saying they exclude each other", err)
	}
}
