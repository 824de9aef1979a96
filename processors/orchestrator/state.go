package orchestrator

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// runState is one run's state, keyed by trace id. It is encoded in a
// compact binary form (encodeRun, about 150 bytes); the JSON names are those
// of the earlier JSON encoding, still decoded. Timestamps are Unix
// milliseconds, 0 meaning unset.
type runState struct {
	Trace    string                  `json:"t"`
	IntentID string                  `json:"i,omitempty"`
	Actor    string                  `json:"a"`
	Kind     string                  `json:"k"`
	Tenant   string                  `json:"tn,omitempty"`
	Route    string                  `json:"r"`
	Version  schemas.ContractVersion `json:"v"`
	Priority int32                   `json:"p,omitempty"`
	State    State                   `json:"s"`
	// Seq is the next step index; event ids derive from it.
	Seq     uint32 `json:"n"`
	Attempt int32  `json:"at,omitempty"`
	Started int64  `json:"st"`
	// Deadline is the current state's timeout, RetryAt a pending retry's
	// due time, RunDeadline the end-to-end deadline.
	Deadline    int64 `json:"dl,omitempty"`
	RetryAt     int64 `json:"ra,omitempty"`
	RunDeadline int64 `json:"rd,omitempty"`
	// Span is the span of the last state-entry event: the parent of the next.
	Span string `json:"sp,omitempty"`
	// Dispatch is the span of the current run.dispatch; data-plane events
	// whose parent is not it are stale.
	Dispatch string `json:"ds,omitempty"`
	// Delivered is the span of the artifact.delivered the gates judge.
	Delivered string `json:"dv,omitempty"`
	Artifact  string `json:"ar,omitempty"`
	// Waiting: an arbitration slot is asked for; Admitted: one is held.
	Waiting  bool `json:"w,omitempty"`
	Admitted bool `json:"ad,omitempty"`
	// Attrs are the intent's v2 attributes, passed on with run.dispatch
	// (so a policy gate can read, say, verified claims).
	Attrs map[string]string `json:"x,omitempty"`
	// Early is a gate.verdict read before the artifact.delivered it judges:
	// the two travel on different topics (gate.verdict, spine.dataplane),
	// and Kafka orders records only within a partition, so the orchestrator
	// may read the verdict first. It is applied (or found stale) when the
	// artifact arrives.
	Early *schemas.RuntimeEvent `json:"ev,omitempty"`
	// Input is the intent's input, kept until the run ends so that every
	// run.dispatch (a retry's too) carries it to the data plane.
	Input string `json:"in,omitempty"`
	// Prov is the run's verified caller, nil for none: on intent.received
	// and every run.dispatch, so the data plane and the gates see it.
	Prov *schemas.Provenance `json:"pv,omitempty"`
	// Flow is the version of the stateflow the run started under; it
	// finishes under it (empty in states of earlier builds: the current).
	Flow string `json:"fv,omitempty"`
	// Agent is the agent running the intent when it is a fallback agent,
	// "" for the intent's own kind.
	Agent string `json:"ag,omitempty"`
}

// agent is the agent running the intent: the fallback agent, else the
// intent's kind.
func (r *runState) agent() string {
	if r.Agent != "" {
		return r.Agent
	}
	return r.Kind
}

// ledgerState is an actor's arbitration ledger, keyed by thread.ActorKey.
type ledgerState struct {
	Ledger  bool       `json:"L"`
	Running []string   `json:"run,omitempty"`
	Queue   []queueEnt `json:"q,omitempty"`
	Seq     uint64     `json:"n,omitempty"`
}

type queueEnt struct {
	Trace    string `json:"t"`
	Priority int32  `json:"p,omitempty"`
	Seq      uint64 `json:"n"`
	Route    string `json:"r,omitempty"`
}

// decodeRun decodes a stored run state, binary or JSON; intern is the
// current stateflow version (see decodeRunBinary).
func decodeRun(b []byte, intern string) (*runState, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var r *runState
	var err error
	if b[0] == runMagic {
		r, err = decodeRunBinary(b, intern)
	} else {
		r = new(runState)
		err = json.Unmarshal(b, r)
	}
	if err != nil {
		return nil, &pipeline.RejectError{Code: CodeBadState, Reason: fmt.Sprintf("run state does not decode: %v", err)}
	}
	if r.Trace == "" || !r.Version.Valid() {
		return nil, &pipeline.RejectError{Code: CodeBadState, Reason: "run state has no trace id or contract version"}
	}
	return r, nil
}

func decodeLedger(b []byte) (*ledgerState, error) {
	l := new(ledgerState)
	if len(b) == 0 {
		return l, nil
	}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, &pipeline.RejectError{Code: CodeBadState, Reason: fmt.Sprintf("ledger state does not decode: %v", err)}
	}
	return l, nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }
