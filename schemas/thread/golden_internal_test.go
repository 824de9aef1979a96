package thread

import (
	"slices"
	"testing"
)

// TestGoldenPathTablesFollowVocabulary: GoldenPath's tables are indexed by
// the same hops and outcomes the vocabulary lists.
func TestGoldenPathTablesFollowVocabulary(t *testing.T) {
	if !slices.Equal(goldenHops[:], GoldenHops) {
		t.Errorf("goldenHops %v, GoldenHops %v", goldenHops, GoldenHops)
	}
	if !slices.Equal(outcomes[:], Outcomes) {
		t.Errorf("outcomes %v, Outcomes %v", outcomes, Outcomes)
	}
	for i, h := range goldenHops {
		if j, ok := hopIndex(h); !ok || j != i {
			t.Errorf("hopIndex(%s) = %d, %v; want %d", h, j, ok, i)
		}
	}
	for _, typ := range EventTypes {
		o, isOutcome := Outcome(typ)
		i, ok := outcomeIndex(typ)
		if ok != isOutcome || ok && outcomes[i] != o {
			t.Errorf("outcomeIndex(%s) = %d, %v; Outcome says %q, %v", typ, i, ok, o, isOutcome)
		}
		if _, ok := hopIndex(typ); ok != IsGoldenHop(typ) {
			t.Errorf("hopIndex(%s) ok=%v, IsGoldenHop says %v", typ, ok, IsGoldenHop(typ))
		}
	}
}
