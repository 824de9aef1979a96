package postgres

import (
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/textclip"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// The translation of the thread into rows: one function per table, from
// canonical types to column values in the order of the table's columns.

var eventColumns = []string{"topic", "partition", "kafka_offset", "event_id", "trace_id", "span_id", "parent_span_id",
	"event_type", "phase", "state", "actor", "kind", "tenant", "route", "contract_version", "attempt", "artifact_id", "error",
	"at", "run_started", "provenance_issuer", "provenance_subject", "input_bytes", "body"}

var gateColumns = []string{"topic", "partition", "kafka_offset", "event_id", "trace_id", "gate", "event_type", "passed",
	"reason", "measured", "threshold", "rule", "policy_version", "evidence", "route", "contract_version", "kind", "at"}

var artifactColumns = []string{"artifact_id", "trace_id", "content_type", "size_bytes", "content", "content_truncated",
	"topic", "partition", "kafka_offset", "written_at"}

// routeOf is the event's route, "baseline" when a v1 event has none (as
// the projections count it).
func routeOf(ev *schemas.RuntimeEvent) string {
	if r := strings.TrimSpace(ev.Route); r != "" {
		return textclip.Clip(r, 32)
	}
	return thread.RouteBaseline
}

// versionOf is the event's contract version, else the writer's, else V1.
func versionOf(ev *schemas.RuntimeEvent, writer schemas.ContractVersion) string {
	switch {
	case ev.SchemaVersion.Valid():
		return ev.SchemaVersion.String()
	case writer.Valid():
		return writer.String()
	}
	return schemas.V1.String()
}

// msTime is t at millisecond precision in UTC, nil when t is unset.
func msTime(t time.Time) any {
	if t.IsZero() || t.UnixMilli() <= 0 {
		return nil
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// textOf strips the NUL bytes PostgreSQL text cannot hold.
func textOf(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return strings.ReplaceAll(s, "\x00", "")
	}
	return s
}

// finite maps NaN and ±Inf to 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// eventRow is the events row of ev read at rec.
func eventRow(rec *kgo.Record, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) ([]any, error) {
	body := *ev
	body.Input = "" // up to 4 MiB on run.dispatch: kept by its size only
	if !body.SchemaVersion.Valid() {
		// An event without a valid version cannot be marshalled: it gets
		// the version it is counted under.
		body.SchemaVersion, _ = schemas.ParseContractVersion(versionOf(ev, writer))
	}
	// JSON has no NaN or ±Inf: such a float is kept as 0.
	if a := body.Artifact; a != nil {
		c := *a
		c.Score = finite(c.Score)
		body.Artifact = &c
	}
	if g := body.Gate; g != nil {
		c := *g
		c.Measured, c.Threshold = finite(c.Measured), finite(c.Threshold)
		body.Gate = &c
	}
	if u := body.Usage; u != nil {
		c := *u
		c.CostUSD = finite(c.CostUSD)
		body.Usage = &c
	}
	b, err := json.Marshal(&body)
	if err != nil {
		return nil, err
	}
	at := msTime(ev.Timestamp)
	if at == nil {
		at = time.UnixMilli(0).UTC()
	}
	var issuer, subject any
	if p := ev.Provenance; p != nil {
		issuer, subject = textOf(p.Issuer), textOf(p.Subject)
	}
	var errText any
	if ev.Error != nil {
		errText = textOf(*ev.Error)
	}
	return []any{rec.Topic, rec.Partition, rec.Offset, textOf(ev.EventID), textOf(ev.TraceID), textOf(ev.SpanID), textOf(ev.ParentSpanID),
		textOf(string(ev.EventType)), textOf(string(ev.Phase)), textOf(ev.State), textOf(ev.Actor), textOf(ev.Intent), textOf(ev.Tenant), textOf(routeOf(ev)),
		versionOf(ev, writer), ev.Attempt, textOf(ev.ArtifactID), errText,
		at, msTime(ev.RunStarted), issuer, subject, len(ev.Input), jsonbText(b)}, nil
}

// jsonbText is JSON text jsonb takes: without the \u0000 escape it refuses
// (a NUL inside a string is dropped).
func jsonbText(b []byte) string {
	const nul = `\u0000`
	s := string(b)
	if !strings.Contains(s, nul) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '\\' {
			if strings.HasPrefix(s[i:], nul) {
				i += len(nul)
				continue
			}
			out.WriteString(s[i : i+2]) // an escape and what it escapes
			i += 2
			continue
		}
		out.WriteByte(s[i])
		i++
	}
	return out.String()
}

// isGate reports whether ev is a gate outcome, as the projections count
// them: a gate on the gate phase or a gate.* topic.
func isGate(ev *schemas.RuntimeEvent, logicalTopic string) bool {
	return ev.Gate != nil && (ev.Phase == schemas.PhaseGate || strings.HasPrefix(logicalTopic, thread.TopicGatePrefix))
}

// gateRow is the gates row of ev's gate outcome.
func gateRow(rec *kgo.Record, logicalTopic string, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) ([]any, error) {
	g := ev.Gate
	name := textclip.Clip(g.Name, 64)
	if name == "" {
		name = strings.TrimPrefix(logicalTopic, thread.TopicGatePrefix)
	}
	if thread.IsDriftTrace(ev.TraceID) {
		// A drift window's outcome, apart from the runs' drift gate (as
		// /v1/gates counts it).
		name = thread.DriftWindowStat
	}
	evidence := g.Evidence
	if evidence == nil {
		evidence = map[string]string{}
	}
	b, err := json.Marshal(evidence)
	if err != nil {
		return nil, err
	}
	at := msTime(ev.Timestamp)
	if at == nil {
		at = time.UnixMilli(0).UTC()
	}
	return []any{rec.Topic, rec.Partition, rec.Offset, textOf(ev.EventID), textOf(ev.TraceID), textOf(name), textOf(string(ev.EventType)),
		g.Passed, textOf(g.Reason), finite(g.Measured), finite(g.Threshold), textOf(g.Rule), textOf(g.PolicyVersion), jsonbText(b),
		textOf(routeOf(ev)), versionOf(ev, writer), textOf(ev.Intent), at}, nil
}

// artifactRow is the artifacts row of a record of the artifacts topic, nil
// for a tombstone. Content larger than limit is left out.
func artifactRow(rec *kgo.Record, limit int) []any {
	if rec.Value == nil || len(rec.Key) == 0 {
		return nil
	}
	var ctype, trace string
	for _, h := range rec.Headers {
		switch h.Key {
		case thread.HeaderContentType:
			ctype = string(h.Value)
		case thread.HeaderTraceID:
			trace = string(h.Value)
		}
	}
	var content any
	truncated := len(rec.Value) > limit
	if !truncated {
		content = rec.Value
	}
	return []any{textOf(string(rec.Key)), textOf(trace), textOf(ctype), int64(len(rec.Value)), content, truncated,
		rec.Topic, rec.Partition, rec.Offset, rec.Timestamp.UTC()}
}
