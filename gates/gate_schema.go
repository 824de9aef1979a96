package gates

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// SchemaName is the schema check's gate name.
const SchemaName = thread.SchemaGate

// DefaultContentTypes are the artifact content types the schema check knows.
var DefaultContentTypes = []string{"text/plain", "text/markdown", "application/json"}

// SchemaCheck checks that an artifact validates against its declared
// contract: an artifact_id (the claim check) is present, the content type is
// known, the summary is non-empty, valid UTF-8 and within
// schemas.MaxSummaryBytes, the score is in [0,1], the latency and size are
// not negative, and an application/json summary parses as JSON. Measured is
// the summary's size in bytes, Threshold the bound. It is stateless.
type SchemaCheck struct {
	types map[string]bool
}

var _ Check = (*SchemaCheck)(nil)

// Schema returns the schema check; contentTypes replace DefaultContentTypes
// when given.
func Schema(contentTypes ...string) *SchemaCheck {
	if len(contentTypes) == 0 {
		contentTypes = DefaultContentTypes
	}
	c := &SchemaCheck{types: map[string]bool{}}
	for _, t := range contentTypes {
		c.types[t] = true
	}
	return c
}

// Name returns "schema".
func (c *SchemaCheck) Name() string { return SchemaName }

// Check implements Check.
func (c *SchemaCheck) Check(_ context.Context, s Subject) (Outcome, error) {
	const limit = float64(schemas.MaxSummaryBytes)
	a := s.Artifact()
	if a == nil {
		return fail("missing_artifact", "the event carries no artifact summary", 0, limit), nil
	}
	n := float64(len(a.Summary))
	switch {
	case s.Event.ArtifactID == "":
		return fail("missing_artifact_id", "the event has no artifact_id (claim check)", n, limit), nil
	case !c.types[a.ContentType]:
		return fail("unknown_content_type", fmt.Sprintf("content type %q is not one of the known types", a.ContentType), n, limit), nil
	case a.Summary == "":
		return fail("empty_summary", "the artifact summary is empty", n, limit), nil
	case !utf8.ValidString(a.Summary):
		return fail("invalid_utf8", "the artifact summary is not valid UTF-8", n, limit), nil
	case len(a.Summary) > schemas.MaxSummaryBytes:
		return fail("summary_too_large", fmt.Sprintf("summary is %d bytes, more than %d", len(a.Summary), schemas.MaxSummaryBytes), n, limit), nil
	case math.IsNaN(a.Score) || a.Score < 0 || a.Score > 1:
		return fail("score_out_of_range", fmt.Sprintf("score %v is outside [0,1]", a.Score), n, limit), nil
	case a.LatencyMs < 0 || a.SizeBytes < 0:
		return fail("negative_measure", fmt.Sprintf("latency %d ms or size %d bytes is negative", a.LatencyMs, a.SizeBytes), n, limit), nil
	case a.ContentType == "application/json" && !json.Valid([]byte(a.Summary)):
		return fail("invalid_json", "the application/json summary does not parse as JSON", n, limit), nil
	}
	return pass("valid", fmt.Sprintf("%s artifact valid against contract %s", a.ContentType, s.Version), n, limit), nil
}
