package schemas

import (
	"embed"
	"fmt"
	"strings"
	"time"
)

//go:embed avro/*.avsc avro/history/*.avsc
var contractFiles embed.FS

// ContractVersion is the version of a canonical contract. The zero value is
// invalid; use V1 or V2.
type ContractVersion int

// The contract versions Spine speaks. V2 only adds fields with defaults.
const (
	V1 ContractVersion = 1
	V2 ContractVersion = 2
)

// Versions lists every contract version, oldest first.
var Versions = []ContractVersion{V1, V2}

// String returns "V1" or "V2", the symbol used in the Avro enum.
func (v ContractVersion) String() string {
	switch v {
	case V1:
		return "V1"
	case V2:
		return "V2"
	}
	return fmt.Sprintf("ContractVersion(%d)", int(v))
}

// Valid reports whether v is a known version.
func (v ContractVersion) Valid() bool { return v == V1 || v == V2 }

// MarshalText encodes v as its Avro enum symbol.
func (v ContractVersion) MarshalText() ([]byte, error) {
	if !v.Valid() {
		return nil, fmt.Errorf("invalid contract version %d", int(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText decodes an Avro enum symbol ("V1", "V2"; "v1", "1" accepted).
func (v *ContractVersion) UnmarshalText(b []byte) error {
	p, err := ParseContractVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// ParseContractVersion parses "V1"/"v1"/"1" and "V2"/"v2"/"2".
func ParseContractVersion(s string) (ContractVersion, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "V1", "1":
		return V1, nil
	case "V2", "2":
		return V2, nil
	}
	return 0, fmt.Errorf("unknown contract version %q (want V1 or V2)", s)
}

// Phase is the topic family an event travels on.
type Phase string

// The phases of the thread.
const (
	PhaseControl Phase = "control_plane"
	PhaseData    Phase = "data_plane"
	PhaseGate    Phase = "gate"
)

// EventType says what happened: the event_type of a RuntimeEvent. The
// thread's event types are defined once, in package schemas/thread.
type EventType string

// Contract names a record type of the thread.
type Contract string

// The canonical contracts.
const (
	ContractIntent       Contract = "intent"
	ContractRuntimeEvent Contract = "runtime_event"
)

// Contracts lists every contract.
var Contracts = []Contract{ContractIntent, ContractRuntimeEvent}

// Source returns the .avsc text of contract c at version v.
func Source(c Contract, v ContractVersion) (string, error) {
	if !v.Valid() {
		return "", fmt.Errorf("contract %s: invalid version %d", c, int(v))
	}
	b, err := contractFiles.ReadFile(fmt.Sprintf("avro/%s.v%d.avsc", c, int(v)))
	if err != nil {
		return "", fmt.Errorf("contract %s %s: %w", c, v, err)
	}
	return string(b), nil
}

// MustSource is Source for the compiled-in contracts, which always exist.
func MustSource(c Contract, v ContractVersion) string {
	s, err := Source(c, v)
	if err != nil {
		panic(err)
	}
	return s
}

// Limits on bounded fields. They are the contract's ceilings, which no
// record may pass; the orchestrator admits inputs up to its own, smaller
// configurable limit (SPINE_MAX_INPUT_BYTES, default DefaultInputLimit).
const (
	MaxInputBytes     = 4 << 20 // Intent.Input, RuntimeEvent.Input
	DefaultInputLimit = 1 << 20 // what the orchestrator admits by default
	MaxSummaryBytes   = 4 << 10 // ArtifactSummary.Summary
)

// History returns the earlier revisions of contract c at version v, oldest
// first: schemas registered by an earlier Spine that only added fields with
// defaults since. Data written with them still decodes (the writer schema
// comes from the registry), and they still count as version v.
func History(c Contract, v ContractVersion) []string {
	var out []string
	for r := 1; ; r++ {
		b, err := contractFiles.ReadFile(fmt.Sprintf("avro/history/%s.v%d.r%d.avsc", c, int(v), r))
		if err != nil {
			return out
		}
		out = append(out, string(b))
	}
}

// Intent is the ingress request that starts a run. Fields after Timestamp
// exist in V2 only; a V1 record decodes them to their defaults.
type Intent struct {
	IntentID      string            `avro:"intent_id" json:"intent_id"`
	TraceID       string            `avro:"trace_id" json:"trace_id"`
	Actor         string            `avro:"actor" json:"actor"`
	Kind          string            `avro:"kind" json:"kind"`
	Input         string            `avro:"input" json:"input"`
	SchemaVersion ContractVersion   `avro:"schema_version" json:"schema_version"`
	Timestamp     time.Time         `avro:"timestamp" json:"timestamp"`
	Priority      int32             `avro:"priority" json:"priority,omitempty"`
	Tenant        string            `avro:"tenant" json:"tenant,omitempty"`
	DeadlineMs    int64             `avro:"deadline_ms" json:"deadline_ms,omitempty"`
	Attributes    map[string]string `avro:"attributes" json:"attributes,omitempty"`
	Provenance    *Provenance       `avro:"provenance" json:"provenance,omitempty"`
}

// Provenance is who asked for a run, as verified at admission: the OIDC
// issuer and subject of the caller's token and the claims the policy names.
// The token itself is never on the thread.
type Provenance struct {
	Issuer     string            `avro:"issuer" json:"issuer"`
	Subject    string            `avro:"subject" json:"subject"`
	VerifiedAt time.Time         `avro:"verified_at" json:"verified_at"`
	Claims     map[string]string `avro:"claims" json:"claims,omitempty"`
}

// ArtifactSummary is the bounded summary of an artifact an event carries;
// the artifact itself is referenced by the event's ArtifactID (claim check).
type ArtifactSummary struct {
	ContentType string  `avro:"content_type" json:"content_type"`
	Summary     string  `avro:"summary" json:"summary"`
	Score       float64 `avro:"score" json:"score"`
	SizeBytes   int64   `avro:"size_bytes" json:"size_bytes"`
	LatencyMs   int64   `avro:"latency_ms" json:"latency_ms"`
}

// GateOutcome is the outcome of one gate check.
type GateOutcome struct {
	Name      string  `avro:"name" json:"name"`
	Passed    bool    `avro:"passed" json:"passed"`
	Reason    string  `avro:"reason" json:"reason"`
	Measured  float64 `avro:"measured" json:"measured"`
	Threshold float64 `avro:"threshold" json:"threshold"`
	// Rule is the rule or statistic that decided; PolicyVersion the
	// version of the policy or settings it came from; Evidence the rest
	// (sample sizes, windows, a JSON path).
	Rule          string            `avro:"rule" json:"rule,omitempty"`
	PolicyVersion string            `avro:"policy_version" json:"policy_version,omitempty"`
	Evidence      map[string]string `avro:"evidence" json:"evidence,omitempty"`
}

// Usage is token usage and cost of one execution (V2).
type Usage struct {
	InputTokens  int64   `avro:"input_tokens" json:"input_tokens"`
	OutputTokens int64   `avro:"output_tokens" json:"output_tokens"`
	CostUSD      float64 `avro:"cost_usd" json:"cost_usd"`
}

// RuntimeEvent is the canonical envelope of every event on the thread. Route,
// Priority, Tenant and Attributes exist in V2 only (a V1 record decodes them
// to their defaults); Attempt, Error, Usage and Input are in both versions,
// so a run's retries never depend on its contract version. Input is set on
// run.dispatch only: the run's input on its way to the data plane.
type RuntimeEvent struct {
	EventID       string            `avro:"event_id" json:"event_id"`
	TraceID       string            `avro:"trace_id" json:"trace_id"`
	SpanID        string            `avro:"span_id" json:"span_id"`
	ParentSpanID  string            `avro:"parent_span_id" json:"parent_span_id,omitempty"`
	Actor         string            `avro:"actor" json:"actor"`
	Intent        string            `avro:"intent" json:"intent"`
	ArtifactID    string            `avro:"artifact_id" json:"artifact_id,omitempty"`
	SchemaVersion ContractVersion   `avro:"schema_version" json:"schema_version"`
	Timestamp     time.Time         `avro:"timestamp" json:"timestamp"`
	RunStarted    time.Time         `avro:"run_started" json:"run_started"`
	Phase         Phase             `avro:"phase" json:"phase"`
	EventType     EventType         `avro:"event_type" json:"event_type"`
	State         string            `avro:"state" json:"state"`
	Artifact      *ArtifactSummary  `avro:"artifact" json:"artifact,omitempty"`
	Gate          *GateOutcome      `avro:"gate" json:"gate,omitempty"`
	Route         string            `avro:"route" json:"route,omitempty"`
	Attempt       int32             `avro:"attempt" json:"attempt,omitempty"`
	Error         *string           `avro:"error" json:"error,omitempty"`
	Usage         *Usage            `avro:"usage" json:"usage,omitempty"`
	Priority      int32             `avro:"priority" json:"priority,omitempty"`
	Tenant        string            `avro:"tenant" json:"tenant,omitempty"`
	Attributes    map[string]string `avro:"attributes" json:"attributes,omitempty"`
	Input         string            `avro:"input" json:"input,omitempty"`
	// Provenance is the run's verified caller, nil when none was verified.
	Provenance *Provenance `avro:"provenance" json:"provenance,omitempty"`
	// StateflowVersion is the version of the stateflow the run started
	// under.
	StateflowVersion string `avro:"stateflow_version" json:"stateflow_version,omitempty"`
}
