package gates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"unicode/utf8"

	"github.com/spinerun/spine/agents"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// SchemaName is the schema check's gate name.
const SchemaName = thread.SchemaGate

// DefaultContentTypes are the artifact content types the schema check knows.
var DefaultContentTypes = []string{"text/plain", "text/markdown", "application/json"}

// SchemaCheck checks that an artifact validates against its declared
// contract: an artifact_id (the claim check) is present, the content type is
// known (its media type, parameters such as charset aside: a model API's
// "text/plain; charset=utf-8" is text/plain), the summary is non-empty, valid UTF-8 and within
// schemas.MaxSummaryBytes, the score is in [0,1], the latency and size are
// not negative, and an application/json artifact whose summary is all of
// it parses as JSON (a longer one's summary is a cut). Measured is
// the summary's size in bytes, Threshold the bound.
//
// With output schemas (WithOutputs), an artifact of a kind whose agent
// declares output_schema must also be JSON that validates against it, its
// whole content judged: the summary when it is all of the artifact, else
// the artifact fetched by id. A failure names the JSON path and the rule
// (code output_schema, Rule the schema keyword's location, Evidence the
// path); content that is not JSON fails as output_not_json. It is safe for
// concurrent use.
type SchemaCheck struct {
	types   map[string]bool
	outputs OutputSchemas
	content ArtifactContent
}

// OutputSchemas returns the output schema of an intent kind on a route
// (thread.RouteBaseline or thread.RouteCanary); nil when it has none.
type OutputSchemas func(kind, route string) *agents.OutputSchema

// ArtifactContent returns the whole content of the artifact id names (the
// claim check of an artifact.delivered). An error is transient: the check
// is retried.
type ArtifactContent func(ctx context.Context, id string) ([]byte, error)

// WithOutputs makes c validate artifacts against their kind's output
// schema; content fetches an artifact longer than its summary.
func (c *SchemaCheck) WithOutputs(outputs OutputSchemas, content ArtifactContent) *SchemaCheck {
	c.outputs, c.content = outputs, content
	return c
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
func (c *SchemaCheck) Check(ctx context.Context, s Subject) (Outcome, error) {
	const limit = float64(schemas.MaxSummaryBytes)
	a := s.Artifact()
	if a == nil {
		return fail("missing_artifact", "the event carries no artifact summary", 0, limit), nil
	}
	n := float64(len(a.Summary))
	media := a.ContentType
	if m, _, err := mime.ParseMediaType(a.ContentType); err == nil {
		media = m
	}
	switch {
	case s.Event.ArtifactID == "":
		return fail("missing_artifact_id", "the event has no artifact_id (claim check)", n, limit), nil
	case !c.types[media]:
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
	case media == "application/json" && int64(len(a.Summary)) == a.SizeBytes && !json.Valid([]byte(a.Summary)):
		// Only a summary that is the whole artifact can be parsed: a JSON
		// artifact over MaxSummaryBytes is summarized by a cut.
		return fail("invalid_json", "the application/json artifact does not parse as JSON", n, limit), nil
	}
	if c.outputs != nil {
		if schema := c.outputs(s.Event.Intent, s.Route()); schema != nil {
			return c.checkOutput(ctx, s, schema, n, limit)
		}
	}
	return pass("valid", fmt.Sprintf("%s artifact valid against contract %s", a.ContentType, s.Version), n, limit), nil
}

// checkOutput validates the artifact's whole content against schema.
func (c *SchemaCheck) checkOutput(ctx context.Context, s Subject, schema *agents.OutputSchema, n, limit float64) (Outcome, error) {
	a := s.Artifact()
	content := []byte(a.Summary)
	if int64(len(a.Summary)) != a.SizeBytes {
		if c.content == nil {
			return Outcome{}, fmt.Errorf("artifact %s is %d bytes, its summary %d: no artifact store to read it whole from", s.Event.ArtifactID, a.SizeBytes, len(a.Summary))
		}
		var err error
		if content, err = c.content(ctx, s.Event.ArtifactID); err != nil {
			return Outcome{}, fmt.Errorf("read artifact %s to validate it against the output schema of %q: %w", s.Event.ArtifactID, s.Event.Intent, err)
		}
	}
	err := schema.Validate(content)
	var v *agents.Violation
	switch {
	case err == nil:
		o := pass("valid", fmt.Sprintf("%s artifact valid against contract %s and the output schema of %q", a.ContentType, s.Version, s.Event.Intent), n, limit)
		o.Rule = "output_schema"
		return o, nil
	case errors.Is(err, agents.ErrNotJSON):
		o := fail("output_not_json", fmt.Sprintf("kind %q declares an output schema, and the artifact (%d bytes) %v", s.Event.Intent, len(content), err), n, limit)
		o.Rule = "output_schema"
		return o, nil
	case errors.As(err, &v):
		path := v.Path
		if path == "" {
			path = "/"
		}
		o := fail("output_schema", fmt.Sprintf("the artifact does not match the output schema of %q %v", s.Event.Intent, v), n, limit)
		o.Rule = "output_schema" + v.Keyword
		o.Evidence = map[string]string{"path": path, "keyword": v.Keyword, "message": v.Message, "schema": schema.Source}
		return o, nil
	}
	return Outcome{}, err
}
