package projections

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

// cellFormat is the first byte of every encoded cell; it changes when the
// encoding does.
const cellFormat byte = 1

// Cell is one record of a projection: a run's part seen on one thread
// topic, or one aggregate window of one source partition. Cells of the same
// kind merge at query time.
type Cell interface {
	// Projection names the projection the cell belongs to.
	Projection() string
}

// Source is where events come from: a thread topic, named without the
// layout prefix (for example "spine.control", "gate.schema"), and a
// partition. Every aggregate cell belongs to exactly one source partition,
// so exactly one consumer owns it whatever the group's assignment.
type Source struct {
	Topic     string
	Partition int32
}

func (s Source) String() string { return s.Topic + "/" + strconv.Itoa(int(s.Partition)) }

// Key is a parsed projection key. Runs keys are runs|<topic>|<partition>|<trace_id>;
// aggregate keys are <projection>|<topic>|<partition>|<version>|<route>|<window ms>.
type Key struct {
	Projection string
	Source     Source
	TraceID    string // runs only
	Version    string // aggregates: "V1", "V2"
	Route      string // aggregates: "baseline", "canary"
	Window     time.Time
}

func keyPart(s string) string { return strings.ReplaceAll(s, "|", "_") }

// String encodes the key.
func (k Key) String() string {
	if k.Projection == thread.ProjRuns {
		return thread.ProjRuns + "|" + keyPart(k.Source.Topic) + "|" + strconv.Itoa(int(k.Source.Partition)) + "|" + k.TraceID
	}
	return strings.Join([]string{
		k.Projection, keyPart(k.Source.Topic), strconv.Itoa(int(k.Source.Partition)),
		keyPart(k.Version), keyPart(k.Route), strconv.FormatInt(k.Window.UnixMilli(), 10),
	}, "|")
}

// ParseKey parses an encoded key.
func ParseKey(s string) (Key, error) {
	proj, rest, ok := strings.Cut(s, "|")
	if !ok {
		return Key{}, fmt.Errorf("%w: %q", ErrBadKey, s)
	}
	switch proj {
	case thread.ProjRuns:
		f := strings.SplitN(rest, "|", 3)
		if len(f) != 3 || f[0] == "" || f[2] == "" {
			return Key{}, fmt.Errorf("%w: %q", ErrBadKey, s)
		}
		p, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || p < 0 {
			return Key{}, fmt.Errorf("%w: partition in %q", ErrBadKey, s)
		}
		return Key{Projection: proj, Source: Source{Topic: f[0], Partition: int32(p)}, TraceID: f[2]}, nil
	case thread.ProjGolden, thread.ProjGates, thread.ProjArtifacts:
		f := strings.Split(rest, "|")
		if len(f) != 5 || f[0] == "" {
			return Key{}, fmt.Errorf("%w: %q", ErrBadKey, s)
		}
		p, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || p < 0 {
			return Key{}, fmt.Errorf("%w: partition in %q", ErrBadKey, s)
		}
		w, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return Key{}, fmt.Errorf("%w: window in %q", ErrBadKey, s)
		}
		return Key{Projection: proj, Source: Source{Topic: f[0], Partition: int32(p)}, Version: f[2], Route: f[3], Window: time.UnixMilli(w).UTC()}, nil
	}
	return Key{}, fmt.Errorf("%w: unknown projection in %q", ErrBadKey, s)
}

// GateResult is the last outcome of one gate for one run.
type GateResult struct {
	Passed    bool      `json:"passed"`
	Reason    string    `json:"reason,omitempty"`
	Measured  float64   `json:"measured"`
	Threshold float64   `json:"threshold"`
	At        time.Time `json:"at"`
}

// RunPart is what one thread topic says about one run. The parts of a run
// merge into its Run (see MergeRun).
type RunPart struct {
	TraceID    string    `json:"trace_id"`
	Actor      string    `json:"actor,omitempty"`
	Intent     string    `json:"intent,omitempty"`
	Route      string    `json:"route,omitempty"`
	Version    string    `json:"contract_version,omitempty"`
	Tenant     string    `json:"tenant,omitempty"`
	RunStarted time.Time `json:"run_started,omitzero"`
	// State is the stateflow state of the last control-plane event; only
	// the orchestrator's topic sets it.
	State     string    `json:"state,omitempty"`
	LastEvent string    `json:"last_event,omitempty"`
	LastAt    time.Time `json:"last_at,omitzero"`
	// Outcome is the terminal outcome (completed, rejected, failed,
	// timed_out), set by the terminal event.
	Outcome   string    `json:"outcome,omitempty"`
	OutcomeAt time.Time `json:"outcome_at,omitzero"`
	// Hops maps each event type to the timestamp of its first occurrence.
	Hops       map[string]time.Time  `json:"hops,omitempty"`
	Gates      map[string]GateResult `json:"gates,omitempty"`
	ArtifactID string                `json:"artifact_id,omitempty"`
	Score      *float64              `json:"score,omitempty"`
	Attempt    int32                 `json:"attempt,omitempty"`
	Error      string                `json:"error,omitempty"`
	Events     int64                 `json:"events"`
	// Illegal counts refused transitions recorded for the run.
	Illegal int64 `json:"illegal_transitions,omitempty"`
}

// Projection implements Cell.
func (*RunPart) Projection() string { return thread.ProjRuns }

// Stat is a count and a latency histogram in milliseconds.
type Stat struct {
	Count   int64     `json:"count"`
	Latency Histogram `json:"latency_ms"`
}

// GoldenCell is one window of golden-path traffic of one source partition,
// one contract version and one route.
type GoldenCell struct {
	// Hops maps a golden-path hop (intent.received, dataplane.dispatched,
	// artifact.delivered, gate.passed, gate.failed) to its count and its
	// latency from run_started.
	Hops map[string]*Stat `json:"hops,omitempty"`
	// Outcomes maps a terminal outcome to its count and its end-to-end
	// duration from run_started.
	Outcomes map[string]*Stat `json:"outcomes,omitempty"`
	// Events counts every event type seen.
	Events map[string]int64 `json:"events,omitempty"`
}

// Projection implements Cell.
func (*GoldenCell) Projection() string { return thread.ProjGolden }

// GateStat counts the outcomes of one gate; Reasons counts failures by
// normalized reason.
type GateStat struct {
	Passed  int64            `json:"passed"`
	Failed  int64            `json:"failed"`
	Reasons map[string]int64 `json:"reasons,omitempty"`
}

// GatesCell is one window of gate outcomes of one source partition, version
// and route, by gate name.
type GatesCell struct {
	Gates map[string]*GateStat `json:"gates,omitempty"`
}

// Projection implements Cell.
func (*GatesCell) Projection() string { return thread.ProjGates }

// ArtifactsCell is one window of delivered artifacts of one source
// partition, version and route.
type ArtifactsCell struct {
	Count int64 `json:"count"`
	Bytes int64 `json:"bytes"`
	// Failed counts dataplane.failed events (executions without artifact).
	Failed int64 `json:"failed"`
	// Score is the distribution of artifact scores in units of 1e-4
	// (score 0.5 is 5000), for drift analysis.
	Score Histogram `json:"score_e4"`
	// ExecLatency is the executor-reported latency in milliseconds.
	ExecLatency Histogram `json:"exec_latency_ms"`
}

// Projection implements Cell.
func (*ArtifactsCell) Projection() string { return thread.ProjArtifacts }

// EncodeCell encodes a cell: a format byte and deterministic JSON.
func EncodeCell(c Cell) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(cellFormat)
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode %s cell: %w", c.Projection(), err)
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil // drop the encoder's newline
}

// DecodeCell decodes the value of the projection record with key key.
func DecodeCell(key string, b []byte) (Cell, error) {
	k, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	return decodeCell(k.Projection, b)
}

func decodeCell(proj string, b []byte) (Cell, error) {
	if len(b) == 0 || b[0] != cellFormat {
		return nil, fmt.Errorf("%w: %s cell: unknown format byte", ErrCorruptState, proj)
	}
	var c Cell
	switch proj {
	case thread.ProjRuns:
		c = &RunPart{}
	case thread.ProjGolden:
		c = &GoldenCell{}
	case thread.ProjGates:
		c = &GatesCell{}
	case thread.ProjArtifacts:
		c = &ArtifactsCell{}
	default:
		return nil, fmt.Errorf("%w: unknown projection %q", ErrBadKey, proj)
	}
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %s cell: %v", ErrCorruptState, proj, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s cell: trailing data", ErrCorruptState, proj)
	}
	if err := validateCell(c); err != nil {
		return nil, err
	}
	return c, nil
}

func validateCell(c Cell) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s cell: %s", ErrCorruptState, c.Projection(), fmt.Sprintf(format, args...))
	}
	stats := func(m map[string]*Stat) error {
		for k, s := range m {
			if s == nil || s.Count < 0 || s.Latency.Count() > s.Count {
				return bad("stat %q inconsistent", k)
			}
		}
		return nil
	}
	switch c := c.(type) {
	case *RunPart:
		if c.TraceID == "" || c.Events < 0 || c.Illegal < 0 {
			return bad("missing trace id or negative counts")
		}
	case *GoldenCell:
		if err := stats(c.Hops); err != nil {
			return err
		}
		if err := stats(c.Outcomes); err != nil {
			return err
		}
		for k, n := range c.Events {
			if n < 0 {
				return bad("event count %q negative", k)
			}
		}
	case *GatesCell:
		for k, g := range c.Gates {
			if g == nil || g.Passed < 0 || g.Failed < 0 {
				return bad("gate %q inconsistent", k)
			}
			var sum int64
			for _, n := range g.Reasons {
				if n <= 0 {
					return bad("gate %q reason count", k)
				}
				sum += n
			}
			if sum > g.Failed {
				return bad("gate %q has more reasons than failures", k)
			}
		}
	case *ArtifactsCell:
		if c.Count < 0 || c.Bytes < 0 || c.Failed < 0 || c.Score.Count() > c.Count || c.ExecLatency.Count() > c.Count {
			return bad("negative or inconsistent counts")
		}
	}
	return nil
}
