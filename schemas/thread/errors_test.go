package thread_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

func TestCallError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind string
		ra   time.Duration
		text string
	}{
		{thread.ErrorRateLimited, 2 * time.Second, "slow down: try later"},
		{thread.ErrorBadRequest, 0, "POST /v1/chat/completions: 400: model \"x\" not found"},
		{thread.ErrorUnavailable, 1500 * time.Millisecond, ""},
		{thread.ErrorTimeout, 0, "retry after 3s: not a delay, the cause's own words"},
	} {
		s := thread.FormatCallError(tc.kind, tc.ra, tc.text)
		kind, ra, text := thread.ParseCallError(s)
		if kind != tc.kind || ra != tc.ra || text != tc.text {
			t.Errorf("%q parses to (%q, %s, %q), want (%q, %s, %q)", s, kind, ra, text, tc.kind, tc.ra, tc.text)
		}
	}
	if kind, _, _ := thread.ParseCallError("no kind here"); kind != "unknown" {
		t.Errorf("a text without a kind parses to kind %q", kind)
	}
	for _, k := range []string{thread.ErrorRateLimited, thread.ErrorUnavailable, thread.ErrorTimeout, thread.ErrorExecution, thread.ErrorSynthetic} {
		if slices.Contains(thread.NonRetryableErrorKinds, k) {
			t.Errorf("%s is retryable, but listed as not", k)
		}
	}
}

func FuzzParseCallError(f *testing.F) {
	f.Add(thread.FormatCallError(thread.ErrorRateLimited, time.Second, "x"))
	f.Add("bad_request: y")
	f.Fuzz(func(t *testing.T, s string) {
		kind, ra, text := thread.ParseCallError(s)
		if ra < 0 || kind == "" {
			t.Fatalf("%q: kind %q, retry after %s", s, kind, ra)
		}
		if kind != "unknown" {
			if again := thread.FormatCallError(kind, ra, text); ra == 0 && again != s {
				t.Fatalf("%q prints back as %q", s, again)
			}
		}
	})
}
