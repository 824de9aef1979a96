package orchestrator_test

import (
	"testing"
	"time"

	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestRetryByErrorKind: a call that failed with a kind no retry can cure
// (a 400, an empty answer, a tool error) fails the run at once, under
// either contract version; a retryable one is retried after the backoff (full jitter, seeded by the trace id), or
// after the Retry-After the outside system asked for when that is longer.
func TestRetryByErrorKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		err       string
		version   schemas.ContractVersion
		retried   bool
		notBefore time.Duration // the retry's earliest time after the failure
	}{
		{"bad request V1", thread.FormatCallError(thread.ErrorBadRequest, 0, "400: no such model"), schemas.V1, false, 0},
		{"bad request V2", thread.FormatCallError(thread.ErrorBadRequest, 0, "400: no such model"), schemas.V2, false, 0},
		{"empty response", thread.FormatCallError(thread.ErrorEmptyResponse, 0, "no choices"), schemas.V1, false, 0},
		{"tool error", thread.FormatCallError(thread.ErrorToolError, 0, "lookup failed"), schemas.V1, false, 0},
		{"unavailable", thread.FormatCallError(thread.ErrorUnavailable, 0, "503"), schemas.V1, true, orchestrator.DefaultRetry.Jittered(1, "tr-k")},
		{"rate limited, Retry-After 3s", thread.FormatCallError(thread.ErrorRateLimited, 3*time.Second, "429"), schemas.V1, true, 3 * time.Second},
		{"rate limited, Retry-After under the backoff", thread.FormatCallError(thread.ErrorRateLimited, 10*time.Millisecond, "429"), schemas.V2, true, max(10*time.Millisecond, orchestrator.DefaultRetry.Jittered(1, "tr-k"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			it := newIntent("tr-k", "alice", "summarize")
			it.SchemaVersion = tc.version
			dispatch := last(h.must(h.intent(it)), thread.RunDispatch)
			failed := reply(dispatch, thread.DataplaneFailed, 0)
			msg := tc.err
			failed.Error = &msg
			evs := h.must(h.data(failed))
			if !tc.retried {
				ended := last(evs, thread.RunFailed)
				if ended == nil || ended.Error == nil || *ended.Error != tc.err || last(evs, thread.RunRetryScheduled) != nil {
					t.Fatalf("events %v, want run.failed carrying %q and no retry", types(evs), tc.err)
				}
				return
			}
			if last(evs, thread.RunRetryScheduled) == nil {
				t.Fatalf("events %v, want run.retry_scheduled", types(evs))
			}
			h.clk.Add(tc.notBefore - time.Millisecond)
			if again := last(h.fire("tr-k"), thread.RunDispatch); again != nil {
				t.Fatalf("retried %s after the failure, before %s", tc.notBefore-time.Millisecond, tc.notBefore)
			}
			h.clk.Add(time.Millisecond)
			if again := last(h.fire("tr-k"), thread.RunDispatch); again == nil || again.Attempt != 1 {
				t.Fatalf("no retry dispatch at %s after the failure", tc.notBefore)
			}
		})
	}
}
