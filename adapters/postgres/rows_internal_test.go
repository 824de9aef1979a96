package postgres

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

// Whatever an event holds, it becomes a row: no version, NaN and ±Inf
// floats, NUL bytes in text, a large input (kept by its size).
func TestEventRowOfOddEvents(t *testing.T) {
	t.Parallel()
	errText := "bad\x00thing"
	ev := &schemas.RuntimeEvent{EventID: "e\x00", TraceID: "t", EventType: "gate.failed", Phase: schemas.PhaseGate,
		Artifact: &schemas.ArtifactSummary{Score: math.NaN()}, Gate: &schemas.GateOutcome{Name: "drift", Measured: math.Inf(1), Threshold: math.NaN()},
		Usage: &schemas.Usage{CostUSD: math.Inf(-1)}, Error: &errText, Input: strings.Repeat("x", 1<<20)}
	rec := &kgo.Record{Topic: "gate.drift", Partition: 1, Offset: 7}
	row, err := eventRow(rec, ev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(row) != len(eventColumns) {
		t.Fatalf("%d values for %d columns", len(row), len(eventColumns))
	}
	body := row[len(row)-1].(string)
	if strings.Contains(body, "xxxx") || strings.Contains(body, "\x00") || strings.Contains(body, `\u0000`) {
		t.Errorf("body keeps the input or a NUL: %.200s", body)
	}
	if row[22] != 1<<20 {
		t.Errorf("input_bytes %v", row[22])
	}
	if !math.IsNaN(ev.Artifact.Score) {
		t.Error("the event itself was changed")
	}
	for in, want := range map[string]string{`"a\u0000b"`: `"ab"`, `"a\\u0000b"`: `"a\\u0000b"`, `"\\\u0000"`: `"\\"`, `"plain"`: `"plain"`} {
		if got := jsonbText([]byte(in)); got != want {
			t.Errorf("jsonbText(%s) = %s, want %s", in, got, want)
		}
	}
	g, err := gateRow(rec, "gate.drift", ev, 0)
	if err != nil || len(g) != len(gateColumns) {
		t.Fatalf("gate row: %v (%d values)", err, len(g))
	}
}

// jsonbText keeps JSON valid and leaves no \u0000 escape, whatever the
// strings marshalled.
func FuzzJSONBText(f *testing.F) {
	for _, s := range []string{"", "a\x00b", `\u0000`, "\\\x00", `"\\`, "\x00\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(map[string]string{s: s})
		if err != nil {
			t.Skip()
		}
		out := jsonbText(b)
		if !json.Valid([]byte(out)) {
			t.Fatalf("jsonbText(%s) = %s: not JSON", b, out)
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				t.Fatalf("jsonbText(%s) = %s keeps a NUL", b, out)
			}
		}
	})
}
