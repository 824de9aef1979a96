// Package gates holds the checks an artifact passes before its run
// completes: schema validity, performance, policy (the artifact rules of
// the policy file; its admission rules run in the orchestrator), and
// (later) drift, plus the canary analysis. The gatekeeper (processors/gatekeeper) runs
// the configured checks on every artifact.delivered event and publishes one
// gate.<name> event per check and a verdict.
//
// A check sees a Subject: the artifact.delivered event with its whole
// envelope — actor, intent kind, route, contract version, tenant, v2
// attributes (for instance a token or verified claims a policy check reads),
// the artifact summary (score, latency, content) — and the record's headers.
// A check that needs history reads it from a view, safe for concurrent
// use: drift's windows per intent kind and route are the drift monitor's
// state on Kafka (processors/drift), and the Drift check reads the status
// it publishes; the pure statistics (DriftCompare) live here.
package gates

import (
	"context"
	"time"

	"github.com/spinerun/spine/schemas"
)

// Subject is what a check judges: one delivered artifact and its run.
type Subject struct {
	// Event is the artifact.delivered event.
	Event *schemas.RuntimeEvent
	// Version is the contract version the event was written with.
	Version schemas.ContractVersion
	// Headers are the record's Kafka headers.
	Headers map[string]string
	// Now is the runner's clock at the check.
	Now time.Time
}

// Artifact returns the event's artifact summary, or nil.
func (s Subject) Artifact() *schemas.ArtifactSummary {
	if s.Event == nil {
		return nil
	}
	return s.Event.Artifact
}

// Route returns the run's route; V1 events carry none and are baseline.
func (s Subject) Route() string {
	if s.Event == nil || s.Event.Route == "" {
		return "baseline"
	}
	return s.Event.Route
}

// Attribute returns the named v2 attribute of the event, else the header of
// that name, else "".
func (s Subject) Attribute(name string) string {
	if s.Event != nil {
		if v, ok := s.Event.Attributes[name]; ok {
			return v
		}
	}
	return s.Headers[name]
}

// Outcome is the result of one check.
type Outcome struct {
	Passed bool
	// Code is a stable, machine-readable reason ("within_budget",
	// "invalid_json", ...).
	Code string
	// Reason says why in words.
	Reason string
	// Measured is the value held against Threshold.
	Measured  float64
	Threshold float64
	// Rule is the rule or statistic that decided, PolicyVersion the version
	// of the policy or settings it came from, Evidence the rest; all
	// optional, carried onto the gate event.
	Rule          string
	PolicyVersion string
	Evidence      map[string]string
}

// Check is one gate. Name is its gate name: its events go to gate.<Name>.
// Check judges a subject; an error means the check could not decide (an
// identity provider unreachable, say): the runner returns it as transient
// and the pipeline retries the record, so an outage never fails a run.
// Implementations must be safe for concurrent use.
type Check interface {
	Name() string
	Check(ctx context.Context, s Subject) (Outcome, error)
}

// CheckFunc adapts a function to a Check named by its CheckName.
type CheckFunc struct {
	CheckName string
	Fn        func(ctx context.Context, s Subject) (Outcome, error)
}

// Name returns f.CheckName.
func (f CheckFunc) Name() string { return f.CheckName }

// Check calls f.Fn.
func (f CheckFunc) Check(ctx context.Context, s Subject) (Outcome, error) { return f.Fn(ctx, s) }

func pass(code, reason string, measured, threshold float64) Outcome {
	return Outcome{Passed: true, Code: code, Reason: reason, Measured: measured, Threshold: threshold}
}

func fail(code, reason string, measured, threshold float64) Outcome {
	return Outcome{Code: code, Reason: reason, Measured: measured, Threshold: threshold}
}
