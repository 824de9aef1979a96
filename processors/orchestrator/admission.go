package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Admission: before a run is routed, the orchestrator establishes who asked
// (the run's provenance) and asks the policy, when one is configured,
// whether the run may start.
//
//   - With a Verifier (WithVerifier), an intent record's header
//     IDTokenHeader is verified: a valid token makes the provenance (and its
//     subject the run's actor); an invalid one rejects the run with the
//     reason "unauthenticated: <code>" (the token itself is never written
//     or logged). Without the header, the provenance is the one the intent
//     carries, set by a trusted ingress (the ACLs of spine.intents say who
//     may write it), or none.
//   - With a policy (WithPolicy), its admission rules decide; the decision
//     is a gate.policy event (passed or failed, with the rule and the policy
//     version). A denied run ends at once: intent.received, gate.policy
//     (gate.failed), run.rejected, and never a run.dispatch: it never
//     reaches the data plane.

// IDTokenHeader is the Kafka header of an intent record that carries the
// caller's ID token (a JWT), verified at admission by the Verifier.
const IDTokenHeader = "x-spine-id-token"

// Verifier verifies a caller's raw ID token and returns the provenance it
// proves. An error that implements Code() string gives the stable reason
// code of the rejection ("expired", "bad_signature", ...; "invalid_token"
// otherwise); one that implements Temporary() bool and returns true (the
// issuer's keys unreachable) cannot decide: the intent is retried, not
// rejected. Implementations must be safe for concurrent use.
type Verifier interface {
	Verify(ctx context.Context, rawToken string) (*schemas.Provenance, error)
}

// VerifierFunc adapts a function to a Verifier.
type VerifierFunc func(ctx context.Context, rawToken string) (*schemas.Provenance, error)

// Verify calls f.
func (f VerifierFunc) Verify(ctx context.Context, rawToken string) (*schemas.Provenance, error) {
	return f(ctx, rawToken)
}

// PolicySource gives the policy in force (a *gates.Policy or a
// *gates.PolicyFile, which reloads its file); Current is never nil.
type PolicySource interface {
	Current() *gates.Policy
}

// WithVerifier verifies the ID token an intent record carries in its
// IDTokenHeader header (default: none; the header is ignored).
func WithVerifier(v Verifier) Option { return func(o *Orchestrator) { o.verifier = v } }

// WithPolicy evaluates the policy's admission rules on every new run
// (default: none).
func WithPolicy(p PolicySource) Option { return func(o *Orchestrator) { o.policy = p } }

// ReasonUnauthenticated starts the reason of a run rejected for an invalid
// ID token.
const ReasonUnauthenticated = "unauthenticated"

// caller returns the run's provenance and actor. deny is the rejection
// reason of an invalid token ("" when none); err is a transient error (the
// verifier could not decide).
func (o *Orchestrator) caller(ctx context.Context, in pipeline.Input, it *schemas.Intent) (prov *schemas.Provenance, actor, deny string, err error) {
	prov, actor = it.Provenance, it.Actor
	tok, ok := in.Headers[IDTokenHeader]
	if !ok || o.verifier == nil {
		return prov, actor, "", nil
	}
	p, verr := o.verifier.Verify(ctx, tok)
	if verr != nil {
		var temp interface{ Temporary() bool }
		if errors.As(verr, &temp) && temp.Temporary() {
			return nil, actor, "", fmt.Errorf("verify the id token of intent %s: %w", it.TraceID, verr)
		}
		code := "invalid_token"
		var coded interface{ Code() string }
		if errors.As(verr, &coded) && coded.Code() != "" {
			code = coded.Code()
		}
		o.log.Info("intent rejected: id token not verified", "trace_id", it.TraceID, "code", code)
		return nil, actor, ReasonUnauthenticated + ": " + code, nil
	}
	if p == nil {
		return nil, actor, ReasonUnauthenticated + ": invalid_token", nil
	}
	if p.Subject != "" {
		actor = p.Subject
	}
	return p, actor, "", nil
}

// admission decides whether the received run may go on: false when it was
// rejected (the step then holds intent.received, gate.policy and
// run.rejected). deny is caller's rejection reason, if any. An error is
// ctx's: an evaluation cut short decides nothing.
func (s *step) admission(ctx context.Context, it *schemas.Intent, deny string) (bool, error) {
	var g *schemas.GateOutcome
	var version string
	if s.o.policy != nil {
		version = s.o.policy.Current().Version()
	}
	switch {
	case deny != "":
		g = &schemas.GateOutcome{Name: gates.PolicyName, Reason: deny, Rule: ReasonUnauthenticated, PolicyVersion: version,
			Evidence: map[string]string{"stage": string(gates.StageAdmission)}}
	case s.o.policy != nil:
		r := s.r
		in := gates.IntentInput(it, r.Prov, r.Route, r.Version)
		in.Actor = r.Actor
		g = s.o.policy.Current().Evaluate(ctx, gates.StageAdmission, in).Outcome()
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("admission of %s: %w", it.TraceID, err)
		}
	default:
		return true, nil
	}
	typ := thread.GateFailed
	if g.Passed {
		typ = thread.GatePassed
	}
	ev := s.event(typ, s.r.Span)
	ev.Phase = schemas.PhaseGate
	ev.Gate = g
	ev.Provenance = s.r.Prov
	s.out = append(s.out, pipeline.Output{Topic: s.o.policyTopic, Key: []byte(s.r.Trace), Value: ev, Version: s.r.Version})
	if g.Passed {
		return true, nil
	}
	if end := s.enter(OnDenied, ev); end != nil {
		reason := g.Reason
		end.Error = &reason
	}
	return false, nil
}

// validateAdmission checks that the stateflow can reject a run at
// admission when a policy or a verifier may deny one.
func (o *Orchestrator) validateAdmission() error {
	if o.policy == nil && o.verifier == nil {
		return nil
	}
	if to, ok := o.flow.Next(StateReceived, OnDenied); !ok || !o.flow.Terminal(to) {
		return fmt.Errorf("orchestrator: admission needs the stateflow to lead %q on %q to a terminal state", StateReceived, OnDenied)
	}
	return nil
}
