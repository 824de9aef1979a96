package registry_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

// levelCases are subjects (registered under NONE) and a candidate whose
// verdict differs between levels, so each level, and transitive versus
// non-transitive, is told apart.
var levelCases = []struct {
	name      string
	existing  []string
	candidate string
	field     string // the field an incompatible verdict must name
	// compatible under each level
	want map[sr.CompatibilityLevel]bool
}{
	{
		// The candidate requires b: it reads v2 (which has b) but not v1.
		name:      "backward transitive only",
		existing:  []string{rec(fld("a", `"int"`)), rec(fld("a", `"int"`), fld("b", `"string"`, `"default":"x"`))},
		candidate: rec(fld("a", `"int"`), fld("b", `"string"`)),
		field:     "b",
		want: map[sr.CompatibilityLevel]bool{
			sr.CompatBackward: true, sr.CompatBackwardTransitive: false,
			sr.CompatForward: true, sr.CompatForwardTransitive: true,
			sr.CompatFull: true, sr.CompatFullTransitive: false, sr.CompatNone: true,
		},
	},
	{
		// The candidate drops b: v2 (b with default) reads it, v1 (b
		// required) does not.
		name:      "forward transitive only",
		existing:  []string{rec(fld("a", `"int"`), fld("b", `"string"`)), rec(fld("a", `"int"`), fld("b", `"string"`, `"default":"x"`))},
		candidate: rec(fld("a", `"int"`)),
		field:     "b",
		want: map[sr.CompatibilityLevel]bool{
			sr.CompatBackward: true, sr.CompatBackwardTransitive: true,
			sr.CompatForward: true, sr.CompatForwardTransitive: false,
			sr.CompatFull: true, sr.CompatFullTransitive: false, sr.CompatNone: true,
		},
	},
	{
		// int → long: new reads old, old cannot read new.
		name:      "promotion is backward only",
		existing:  []string{rec(fld("a", `"int"`))},
		candidate: rec(fld("a", `"long"`)),
		field:     "a",
		want: map[sr.CompatibilityLevel]bool{
			sr.CompatBackward: true, sr.CompatBackwardTransitive: true,
			sr.CompatForward: false, sr.CompatForwardTransitive: false,
			sr.CompatFull: false, sr.CompatFullTransitive: false, sr.CompatNone: true,
		},
	},
	{
		// An enum symbol removed: old data may hold it.
		name:      "enum symbol removed is forward only",
		existing:  []string{rec(fld("e", `{"type":"enum","name":"E","symbols":["A","B"]}`))},
		candidate: rec(fld("e", `{"type":"enum","name":"E","symbols":["A"]}`)),
		field:     "e",
		want: map[sr.CompatibilityLevel]bool{
			sr.CompatBackward: false, sr.CompatBackwardTransitive: false,
			sr.CompatForward: true, sr.CompatForwardTransitive: true,
			sr.CompatFull: false, sr.CompatFullTransitive: false, sr.CompatNone: true,
		},
	},
	{
		// A changed type breaks every direction against the latest.
		name:      "type change breaks all but NONE",
		existing:  []string{rec(fld("a", `"int"`))},
		candidate: rec(fld("a", `"string"`)),
		field:     "a",
		want: map[sr.CompatibilityLevel]bool{
			sr.CompatBackward: false, sr.CompatBackwardTransitive: false,
			sr.CompatForward: false, sr.CompatForwardTransitive: false,
			sr.CompatFull: false, sr.CompatFullTransitive: false, sr.CompatNone: true,
		},
	},
}

// TestLevels checks every level on every case, through the compatibility
// endpoint (verbose) and through registration (409 or a new version).
func TestLevels(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t)
	for ci, tc := range levelCases {
		for lvl, want := range tc.want {
			t.Run(fmt.Sprintf("%s/%s", tc.name, lvl), func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				cl := in.sr
				subj := fmt.Sprintf("lvl-%d-%s-value", ci, lvl)
				if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subj); r[0].Err != nil {
					t.Fatal(r[0].Err)
				}
				for _, s := range tc.existing {
					if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: s}, -1, -1); err != nil {
						t.Fatalf("register existing: %v", err)
					}
				}
				if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: lvl}, subj); r[0].Err != nil {
					t.Fatal(r[0].Err)
				}
				res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subj, -2, sr.Schema{Schema: tc.candidate})
				if err != nil {
					t.Fatal(err)
				}
				if res.Is != want {
					t.Errorf("is_compatible = %v, want %v; messages %v", res.Is, want, res.Messages)
				}
				if !want && !strings.Contains(strings.Join(res.Messages, " "), "'"+tc.field+"'") {
					t.Errorf("messages do not name field %q: %v", tc.field, res.Messages)
				}
				_, err = cl.RegisterSchema(ctx, subj, sr.Schema{Schema: tc.candidate}, -1, -1)
				switch {
				case want && err != nil:
					t.Errorf("register: %v; want accepted", err)
				case !want && srCode(err) != 409:
					t.Errorf("register: %v; want 409", err)
				}
			})
		}
	}
}

// TestTransitiveIgnoresDeleted: a soft-deleted version no longer takes part
// in a transitive check.
func TestTransitiveIgnoresDeleted(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t)
	ctx := t.Context()
	cl := in.sr
	tc := levelCases[0]
	const subj = "del-value"
	cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subj)
	for _, s := range tc.existing {
		if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: s}, -1, -1); err != nil {
			t.Fatal(err)
		}
	}
	cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackwardTransitive}, subj)
	if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: tc.candidate}, -1, -1); srCode(err) != 409 {
		t.Fatalf("before delete: %v; want 409", err)
	}
	if err := cl.DeleteSchema(ctx, subj, 1, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: tc.candidate}, -1, -1); err != nil {
		t.Errorf("after deleting version 1: %v; want accepted", err)
	}
	// The specific-version endpoint checks one version, whatever the
	// transitivity; a missing version is 40402, a missing subject 40401.
	if _, err := cl.CheckCompatibility(ctx, subj, 1, sr.Schema{Schema: tc.candidate}); srCode(err) != 40402 {
		t.Errorf("check against deleted version: %v; want 40402", err)
	}
	if _, err := cl.CheckCompatibility(ctx, "none-value", 1, sr.Schema{Schema: tc.candidate}); srCode(err) != 40401 {
		t.Errorf("check against missing subject: %v; want 40401", err)
	}
	// Against all versions, or "latest", of a missing subject: compatible
	// (Confluent 7.x, confluentinc/schema-registry#2624).
	for _, v := range []int{-2, -1} {
		if res, err := cl.CheckCompatibility(ctx, "none-value", v, sr.Schema{Schema: tc.candidate}); err != nil || !res.Is {
			t.Errorf("check version %d of a missing subject = %+v, %v; want compatible", v, res, err)
		}
	}
}
