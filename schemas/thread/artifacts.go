package thread

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Artifacts are kept whole on a compacted topic (Layout.Artifacts), keyed
// by artifact id, written in the same transaction as the artifact.delivered
// that names them: the id on the thread is a claim check that can be
// redeemed. A record's value is the artifact's content, byte for byte; its
// headers say what it is.
const (
	// HeaderContentType carries the artifact's MIME type.
	HeaderContentType = "content-type"
	// HeaderTraceID carries the run the artifact belongs to.
	HeaderTraceID = "x-trace-id"
)

// DefaultArtifactLimit is the largest artifact kept by default
// (SPINE_MAX_ARTIFACT_BYTES); a larger one fails the call as
// artifact_too_large. MaxArtifactBytes is the ceiling of that setting.
const (
	DefaultArtifactLimit = 1 << 20
	MaxArtifactBytes     = 4 << 20
)

// ArtifactID returns the claim check of the artifact a dispatch produced:
// "art-" + the dispatch time in Unix milliseconds (hex) + "-" + a hash of
// the trace and the dispatch span. It is deterministic (a re-run of the
// same dispatch names the same artifact), and it says where to look: the
// record's partition follows from the id (it is the key), and the record
// was written after the dispatch, so a reader starts at the offset of that
// time instead of scanning the topic.
func ArtifactID(trace, dispatchSpan string, dispatched time.Time) string {
	return "art-" + strconv.FormatInt(dispatched.UnixMilli(), 16) + "-" + ID(trace, "artifact", dispatchSpan)
}

// ErrNotArtifactID is returned by ParseArtifactID for a string that is not
// an artifact id.
var ErrNotArtifactID = errors.New("not an artifact id")

// ParseArtifactID returns the dispatch time an artifact id carries.
func ParseArtifactID(id string) (time.Time, error) {
	rest, ok := strings.CutPrefix(id, "art-")
	if !ok {
		return time.Time{}, fmt.Errorf("%q: %w (want art-<time>-<hash>)", clipID(id), ErrNotArtifactID)
	}
	ts, hash, ok := strings.Cut(rest, "-")
	if !ok || len(hash) != 32 || strings.Trim(hash, "0123456789abcdef") != "" {
		return time.Time{}, fmt.Errorf("%q: %w (want art-<time>-<32 hex digits>)", clipID(id), ErrNotArtifactID)
	}
	ms, err := strconv.ParseInt(ts, 16, 64)
	if err != nil || ms <= 0 || len(ts) > 12 || strings.Trim(ts, "0123456789abcdef") != "" {
		return time.Time{}, fmt.Errorf("%q: %w (bad time %q)", clipID(id), ErrNotArtifactID, ts)
	}
	return time.UnixMilli(ms), nil
}

// clipID bounds an id quoted in an error.
func clipID(id string) string {
	if len(id) > 80 {
		return id[:80] + "…"
	}
	return id
}
