package thread

// Every record of a run carries a W3C Trace Context header (HeaderTraceparent)
// built from its envelope: version 00, the run's trace_id, the event's
// span_id, flags 01 (sampled). Trace ids are 32 lowercase hex digits (the
// CLI, HTTP ingress and load test make them so) and span ids are 16
// (SpanID), so a run is one trace in any OpenTelemetry backend and an
// event's parent_span_id is its span's parent.

// HeaderTraceparent is the record header that carries the W3C traceparent.
const HeaderTraceparent = "traceparent"

// TraceparentLen is the length of a version-00 traceparent.
const TraceparentLen = 55

// AppendTraceparent appends the version-00 traceparent of trace and span to
// dst. It reports false, appending nothing, unless trace is 32 and span 16
// lowercase hex digits, neither all zeros (W3C's invalid ids): a run whose
// producer chose another kind of trace id has no traceparent.
func AppendTraceparent(dst []byte, trace, span string) ([]byte, bool) {
	if !lowerHex(trace, 32) || !lowerHex(span, 16) {
		return dst, false
	}
	dst = append(dst, "00-"...)
	dst = append(dst, trace...)
	dst = append(dst, '-')
	dst = append(dst, span...)
	return append(dst, "-01"...), true
}

// RunSpanID is the span id of a run's first event, intent.received (the
// orchestrator's step 0): the span an intent's record names in its
// traceparent, the root of the run's trace.
func RunSpanID(trace string) string { return SpanID(trace, "o", Step(0)) }

// lowerHex reports whether s is n lowercase hex digits, not all zeros.
// It runs on every record the loop writes: a table lookup and no branch
// per character.
func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	ok, nonzero := byte(1), byte(0)
	for i := 0; i < n; i++ {
		c := s[i]
		ok &= isLowerHex[c]
		nonzero |= c ^ '0'
	}
	return ok == 1 && nonzero != 0
}

// isLowerHex is 1 for the bytes 0-9 and a-f.
var isLowerHex = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = 1
	}
	return t
}()
