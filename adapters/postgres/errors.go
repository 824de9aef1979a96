package postgres

import "errors"

// ErrFenced is the error of a batch whose partition's offsets row moved
// under the sink: another instance wrote the partition since this one read
// it (it no longer owns it). The batch's transaction is rolled back whole
// and the session starts again from the database's offsets.
var ErrFenced = errors.New("offsets fenced: another sink instance wrote this partition")
