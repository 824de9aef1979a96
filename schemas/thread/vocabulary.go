package thread

import "github.com/spinerun/spine/schemas"

// The canonical event types of one run, in the order of the thread.
const (
	// Control plane (spine.control), written only by the orchestrator.
	IntentReceived    schemas.EventType = "intent.received"
	RunRouted         schemas.EventType = "run.routed"
	RunQueued         schemas.EventType = "run.queued"
	RunDequeued       schemas.EventType = "run.dequeued"
	RunDispatch       schemas.EventType = "run.dispatch"
	RunExecuting      schemas.EventType = "run.executing"
	RunDelivered      schemas.EventType = "run.delivered"
	RunGating         schemas.EventType = "run.gating"
	RunRetryScheduled schemas.EventType = "run.retry_scheduled"
	// RunFallback: the run degrades to a fallback agent (attributes
	// fallback_from, fallback_to; error: why).
	RunFallback  schemas.EventType = "run.fallback"
	RunCompleted schemas.EventType = "run.completed"
	RunRejected  schemas.EventType = "run.rejected"
	RunFailed    schemas.EventType = "run.failed"
	RunTimedOut  schemas.EventType = "run.timed_out"
	RunIllegal   schemas.EventType = "run.illegal_transition"
	RunStale     schemas.EventType = "run.stale_event"

	// Arbitration messages on spine.control, keyed by ActorKey, between a
	// run and its actor's ledger (see package orchestrator).
	ArbitrationAcquire schemas.EventType = "arbitration.acquire"
	ArbitrationRelease schemas.EventType = "arbitration.release"
	ArbitrationGrant   schemas.EventType = "arbitration.grant"
	ArbitrationQueued  schemas.EventType = "arbitration.queued"

	// Data plane (spine.dataplane), written by dataplane workers.
	DataplaneDispatched schemas.EventType = "dataplane.dispatched"
	DataplaneStarted    schemas.EventType = "dataplane.started"
	ArtifactDelivered   schemas.EventType = "artifact.delivered"
	DataplaneFailed     schemas.EventType = "dataplane.failed"

	// Gates (gate.<name>), written by the gatekeeper.
	GatePassed  schemas.EventType = "gate.passed"
	GateFailed  schemas.EventType = "gate.failed"
	GateVerdict schemas.EventType = "gate.verdict"

	// Canary analyses (gate.canary), written by the canary analyzer: one
	// per analysis, named by its decision.
	CanaryStep         schemas.EventType = "canary.step"
	CanaryPromote      schemas.EventType = "canary.promote"
	CanaryHold         schemas.EventType = "canary.hold"
	CanaryRollback     schemas.EventType = "canary.rollback"
	CanaryInconclusive schemas.EventType = "canary.inconclusive"
)

// EventTypes lists every event type of the thread.
var EventTypes = []schemas.EventType{
	IntentReceived, RunRouted, RunQueued, RunDequeued, RunDispatch, RunExecuting, RunDelivered, RunGating,
	RunRetryScheduled, RunFallback, RunCompleted, RunRejected, RunFailed, RunTimedOut, RunIllegal, RunStale,
	ArbitrationAcquire, ArbitrationRelease, ArbitrationGrant, ArbitrationQueued,
	DataplaneDispatched, DataplaneStarted, ArtifactDelivered, DataplaneFailed,
	GatePassed, GateFailed, GateVerdict,
	CanaryStep, CanaryPromote, CanaryHold, CanaryRollback, CanaryInconclusive,
}

// The attributes of run.fallback (v2; its error says the same in words).
const (
	AttrFallbackFrom = "fallback_from"
	AttrFallbackTo   = "fallback_to"
)

// GoldenHops are the hops of the golden path, in path order; a gate check
// passes or fails.
var GoldenHops = []schemas.EventType{IntentReceived, DataplaneDispatched, ArtifactDelivered, GatePassed, GateFailed}

// IsGoldenHop reports whether t is one of GoldenHops.
func IsGoldenHop(t schemas.EventType) bool {
	switch t {
	case IntentReceived, DataplaneDispatched, ArtifactDelivered, GatePassed, GateFailed:
		return true
	}
	return false
}

// The terminal outcomes of a run: exactly one per run.
const (
	OutcomeCompleted = "completed"
	OutcomeRejected  = "rejected"
	OutcomeFailed    = "failed"
	OutcomeTimedOut  = "timed_out"
)

// Outcomes lists the terminal outcomes.
var Outcomes = []string{OutcomeCompleted, OutcomeRejected, OutcomeFailed, OutcomeTimedOut}

// Outcome returns the terminal outcome a run event announces, or false for
// an event that does not end a run.
func Outcome(t schemas.EventType) (string, bool) {
	switch t {
	case RunCompleted:
		return OutcomeCompleted, true
	case RunRejected:
		return OutcomeRejected, true
	case RunFailed:
		return OutcomeFailed, true
	case RunTimedOut:
		return OutcomeTimedOut, true
	}
	return "", false
}

// Routes a run can take. Baseline runs speak contract V1, canary runs V2.
const (
	RouteBaseline = "baseline"
	RouteCanary   = "canary"
)

// Gate names of the thread itself; each check of package gates names its
// own gate (gate.<name>).
const (
	// VerdictGate is the per-run verdict the orchestrator completes or
	// rejects a run on (gate.verdict).
	VerdictGate = "verdict"
	// CanaryGate is the canary analysis (gate.canary).
	CanaryGate = "canary"
)

// The gate names of the checks (package gates): each check publishes on
// gate.<name>.
const (
	SchemaGate      = "schema"
	PerformanceGate = "performance"
	PolicyGate      = "policy"
	DriftGate       = "drift"
)

// GateNames are the gate.* topics of the layout: one per check, the canary
// analysis and the per-run verdict. A new check adds its name here.
var GateNames = []string{SchemaGate, PerformanceGate, PolicyGate, DriftGate, CanaryGate, VerdictGate}

// The processors of the thread: each names its consumer group, its state
// topic and its metrics label.
const (
	Orchestrator = "orchestrator"
	Dataplane    = "dataplane"
	Gatekeeper   = "gates"
	Projections  = "projections"
	// CanaryAnalyzer is the canary analyzer (not a loop processor: it runs
	// under a leader election).
	CanaryAnalyzer = "canary"
	// Drift is the drift monitor: it keeps each intent kind and route's
	// reference and current windows of artifact metrics (see
	// processors/drift).
	Drift = "drift"
)

// Processors lists the loop processors in the order `spine up` starts them.
var Processors = []string{Orchestrator, Dataplane, Gatekeeper, Projections}

// StatefulProcessors are the processors that keep a compacted state
// changelog (spine.state.<name>).
var StatefulProcessors = []string{Orchestrator, Dataplane, Gatekeeper, Drift}

// The projections: each is one compacted topic spine.proj.<name>.
const (
	ProjRuns      = "runs"
	ProjGolden    = "golden"
	ProjGates     = "gates"
	ProjArtifacts = "artifacts"
)

// ProjectionNames lists the projections.
var ProjectionNames = []string{ProjRuns, ProjGolden, ProjGates, ProjArtifacts}

// Base names of the topics (a layout prefixes them).
const (
	TopicIntents     = "spine.intents"
	TopicControl     = "spine.control"
	TopicDataplane   = "spine.dataplane"
	TopicDLQ         = "spine.dlq"
	TopicFlags       = "spine.flags"
	TopicSchemas     = "_schemas"
	TopicGatePrefix  = "gate."
	TopicStatePrefix = "spine.state."
	TopicProjPrefix  = "spine.proj."
	// TopicDriftSamples carries one metric sample per delivered artifact,
	// keyed by DriftKey; TopicDriftStatus is the compacted current drift
	// status of each kind and route, keyed the same.
	TopicDriftSamples = "spine.drift.samples"
	TopicDriftStatus  = "spine.drift.status"
)
