package projections

import "errors"

// Errors of this package. Each carries a stable code (see Code) for users
// and dead-letter consumers.
var (
	// ErrCorruptState marks a projection cell that does not decode: bad
	// format byte, bad JSON, or values that break the cell's invariants.
	ErrCorruptState = errors.New("corrupt projection state")
	// ErrBadKey marks a projection key this version cannot parse.
	ErrBadKey = errors.New("bad projection key")
	// ErrNotFound is returned by queries for a run the projections do not
	// know (yet).
	ErrNotFound = errors.New("not found")
	// ErrThreadTruncated is returned by Replay when a thread partition no
	// longer starts at offset zero (retention deleted its beginning), so
	// the projections cannot be rebuilt from it.
	ErrThreadTruncated = errors.New("thread truncated by retention")
)

// Code returns the stable code of an error of this package, or "".
func Code(err error) string {
	switch {
	case errors.Is(err, ErrCorruptState):
		return "corrupt_projection_state"
	case errors.Is(err, ErrBadKey):
		return "bad_projection_key"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrThreadTruncated):
		return "thread_truncated"
	}
	return ""
}
