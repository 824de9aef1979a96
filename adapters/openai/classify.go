package openai

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spinerun/spine/processors/dataplane"
)

// statusError classifies a non-2xx answer:
//
//   - 429: rate_limited, retryable, RetryAfter from the headers
//   - 408, 409, 5xx: unavailable, retryable, RetryAfter from the headers
//   - 401, 403: unauthorized, not retryable
//   - any other status: bad_request, not retryable
func statusError(resp *http.Response, apiErr *APIError, where string, now time.Time) *dataplane.ExecError {
	code := resp.StatusCode
	var e *dataplane.ExecError
	hint := ""
	switch {
	case code == http.StatusTooManyRequests:
		e = dataplane.Retryable(dataplane.KindRateLimited, nil)
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code >= 500:
		e = dataplane.Retryable(dataplane.KindUnavailable, nil)
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		e = dataplane.Permanent(dataplane.KindUnauthorized, nil)
		hint = " (is APIKey set and valid for this server?)"
	case code == http.StatusNotFound:
		e = dataplane.Permanent(dataplane.KindBadRequest, nil)
		hint = " (is BaseURL the API's root, and does the server serve the model?)"
	case code >= 300 && code < 400:
		e = dataplane.Permanent(dataplane.KindBadRequest, nil)
		hint = " (a redirect: is BaseURL right?)"
	default:
		e = dataplane.Permanent(dataplane.KindBadRequest, nil)
	}
	if e.Retryable {
		e.RetryAfter = retryAfter(resp.Header, now)
	}
	e.Err = fmt.Errorf("%s: %w%s", where, apiErr, hint)
	return e
}

// maxRetryAfter bounds a Retry-After so that the duration never overflows.
const maxRetryAfter = time.Duration(math.MaxInt64)

// retryAfter is the least delay the server asked for: retry-after-ms
// (milliseconds, as OpenAI sends it) when valid, else Retry-After as
// delta-seconds or an HTTP-date; 0 when none is valid or the date has
// passed.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && !math.IsInf(ms, 0) {
			return clampDuration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return clampDuration(float64(s) * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func clampDuration(ns float64) time.Duration {
	if ns >= float64(maxRetryAfter) {
		return maxRetryAfter
	}
	return time.Duration(ns)
}

// transportError classifies a call that got no complete answer. parent is
// the caller's ctx, call the ctx of the call (parent plus Timeout).
//
//   - parent canceled (not its deadline): ctx's error, unclassified, as
//     the dataplane expects when the handler's own ctx ended
//   - a deadline of either ctx, or a transport timeout: timeout, retryable
//   - anything else (refused, reset, EOF, DNS, TLS): unavailable, retryable
func transportError(parent, call context.Context, err error, where string) error {
	if pe := parent.Err(); pe != nil && !errors.Is(pe, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, pe)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // where already names the endpoint
	}
	var ne net.Error
	if errors.Is(call.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return dataplane.Retryable(dataplane.KindTimeout, fmt.Errorf("%s: no answer in time: %w", where, err))
	}
	return dataplane.Retryable(dataplane.KindUnavailable, fmt.Errorf("%s: %w (is the server up at BaseURL?)", where, err))
}
