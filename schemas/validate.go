package schemas

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxClockSkew is how far in the future a timestamp may lie before a value
// is refused as invalid.
const MaxClockSkew = time.Hour

// Validate checks i against the rules of the Intent contract, as of now.
// See ValidateAt.
func (i *Intent) Validate() error { return i.ValidateAt(time.Now()) }

// ValidateAt checks i against the rules of the Intent contract: intent_id,
// trace_id and kind are set, schema_version is V1 or V2, timestamp is set and
// at most MaxClockSkew after now, input is at most MaxInputBytes, and every
// string is valid UTF-8. It returns a *ValidationError naming the first
// broken rule.
func (i *Intent) ValidateAt(now time.Time) error { return i.validateAt(now, true) }

// validateAt is ValidateAt; without checkUTF8 it skips the UTF-8 checks, for
// a value just decoded from a body whose wire scan checked every string.
func (i *Intent) validateAt(now time.Time, checkUTF8 bool) error {
	if i == nil {
		return &ValidationError{Contract: ContractIntent, Field: "*", Reason: "nil value", Code: CodeInvalidContract}
	}
	v := validator{c: ContractIntent}
	if checkUTF8 {
		i.checkUTF8(&v)
	}
	v.required("intent_id", i.IntentID)
	v.required("trace_id", i.TraceID)
	v.required("kind", i.Kind)
	v.version(i.SchemaVersion)
	v.timestamp("timestamp", i.Timestamp, now)
	v.maxLen("input", i.Input, MaxInputBytes)
	return v.err
}

func (i *Intent) checkUTF8(v *validator) {
	v.utf8("intent_id", i.IntentID)
	v.utf8("trace_id", i.TraceID)
	v.utf8("actor", i.Actor)
	v.utf8("kind", i.Kind)
	v.utf8("input", i.Input)
	v.utf8("tenant", i.Tenant)
	v.utf8Map("attributes", i.Attributes)
	i.Provenance.checkUTF8(v)
}

// Validate checks e against the rules of the RuntimeEvent contract, as of
// now. See ValidateAt.
func (e *RuntimeEvent) Validate() error { return e.ValidateAt(time.Now()) }

// ValidateAt checks e against the rules of the RuntimeEvent contract:
// event_id, trace_id and event_type are set, schema_version is V1 or V2,
// phase is a known phase, timestamp is set and at most MaxClockSkew after
// now, run_started is not after it by more than MaxClockSkew either, the
// artifact summary is at most MaxSummaryBytes, input at most MaxInputBytes, attempt is not negative, and
// every string is valid UTF-8. It returns a *ValidationError naming the
// first broken rule.
func (e *RuntimeEvent) ValidateAt(now time.Time) error { return e.validateAt(now, true) }

// validateAt is ValidateAt; without checkUTF8 it skips the UTF-8 checks, for
// a value just decoded from a body whose wire scan checked every string.
func (e *RuntimeEvent) validateAt(now time.Time, checkUTF8 bool) error {
	if e == nil {
		return &ValidationError{Contract: ContractRuntimeEvent, Field: "*", Reason: "nil value", Code: CodeInvalidContract}
	}
	v := validator{c: ContractRuntimeEvent}
	if checkUTF8 {
		e.checkUTF8(&v)
	}
	v.required("event_id", e.EventID)
	v.required("trace_id", e.TraceID)
	v.required("event_type", string(e.EventType))
	v.version(e.SchemaVersion)
	switch e.Phase {
	case PhaseControl, PhaseData, PhaseGate:
	default:
		v.fail("phase", fmt.Sprintf("unknown phase %q", e.Phase))
	}
	v.timestamp("timestamp", e.Timestamp, now)
	if e.RunStarted.After(now.Add(MaxClockSkew)) {
		v.fail("run_started", fmt.Sprintf("%s is more than %s in the future", e.RunStarted.UTC().Format(time.RFC3339), MaxClockSkew))
	}
	if e.Artifact != nil {
		v.maxLen("artifact.summary", e.Artifact.Summary, MaxSummaryBytes)
	}
	v.maxLen("input", e.Input, MaxInputBytes)
	if e.Attempt < 0 {
		v.fail("attempt", fmt.Sprintf("negative attempt %d", e.Attempt))
	}
	return v.err
}

func (e *RuntimeEvent) checkUTF8(v *validator) {
	v.utf8("event_id", e.EventID)
	v.utf8("trace_id", e.TraceID)
	v.utf8("span_id", e.SpanID)
	v.utf8("parent_span_id", e.ParentSpanID)
	v.utf8("actor", e.Actor)
	v.utf8("intent", e.Intent)
	v.utf8("artifact_id", e.ArtifactID)
	v.utf8("event_type", string(e.EventType))
	v.utf8("state", e.State)
	v.utf8("route", e.Route)
	v.utf8("tenant", e.Tenant)
	v.utf8("input", e.Input)
	if e.Artifact != nil {
		v.utf8("artifact.content_type", e.Artifact.ContentType)
		v.utf8("artifact.summary", e.Artifact.Summary)
	}
	if e.Gate != nil {
		v.utf8("gate.name", e.Gate.Name)
		v.utf8("gate.reason", e.Gate.Reason)
		v.utf8("gate.rule", e.Gate.Rule)
		v.utf8("gate.policy_version", e.Gate.PolicyVersion)
		v.utf8Map("gate.evidence", e.Gate.Evidence)
	}
	if e.Error != nil {
		v.utf8("error", *e.Error)
	}
	v.utf8Map("attributes", e.Attributes)
	v.utf8("stateflow_version", e.StateflowVersion)
	e.Provenance.checkUTF8(v)
}

func (p *Provenance) checkUTF8(v *validator) {
	if p == nil {
		return
	}
	v.utf8("provenance.issuer", p.Issuer)
	v.utf8("provenance.subject", p.Subject)
	v.utf8Map("provenance.claims", p.Claims)
}

// validator keeps the first broken rule; UTF-8 checks run first so a value
// with bad bytes is reported as invalid_utf8 whatever else is wrong.
type validator struct {
	c   Contract
	err error
}

func (v *validator) fail(field, reason string) {
	v.failCode(field, reason, CodeInvalidContract)
}

func (v *validator) failCode(field, reason string, code ErrorCode) {
	if v.err == nil {
		v.err = &ValidationError{Contract: v.c, Field: field, Reason: reason, Code: code}
	}
}

func (v *validator) utf8(field, s string) {
	if !utf8.ValidString(s) {
		v.failCode(field, "not valid UTF-8", CodeInvalidUTF8)
	}
}

func (v *validator) utf8Map(field string, m map[string]string) {
	if len(m) == 0 {
		return // ranging over an empty map still starts an iterator
	}
	for k, s := range m {
		if !utf8.ValidString(k) {
			v.failCode(field, "a key is not valid UTF-8", CodeInvalidUTF8)
		}
		if !utf8.ValidString(s) {
			v.failCode(field, "a value is not valid UTF-8", CodeInvalidUTF8)
		}
	}
}

func (v *validator) required(field, s string) {
	if s == "" {
		v.fail(field, "required, is empty")
	}
}

func (v *validator) version(cv ContractVersion) {
	if !cv.Valid() {
		v.fail("schema_version", fmt.Sprintf("unknown contract version %d", int(cv)))
	}
}

func (v *validator) timestamp(field string, t, now time.Time) {
	switch {
	case t.IsZero() || t.UnixMilli() == 0:
		v.fail(field, "required, is unset")
	case t.After(now.Add(MaxClockSkew)):
		v.fail(field, fmt.Sprintf("%s is more than %s in the future", t.UTC().Format(time.RFC3339), MaxClockSkew))
	}
}

func (v *validator) maxLen(field, s string, max int) {
	if len(s) > max {
		v.fail(field, fmt.Sprintf("%d bytes, over the bound of %d", len(s), max))
	}
}
