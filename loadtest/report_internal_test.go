package loadtest

import (
	"strings"
	"testing"

	"github.com/spinerun/spine/projections"
)

// The chain is compared with Spine only at the test's own paced rate: a
// paced test's throughput is the asked rate, not a ceiling.
func TestRawComparisonOnlyAtTheSameRate(t *testing.T) {
	t.Parallel()
	lat := map[string]*projections.Histogram{"baseline": {}, "canary": {}}
	for _, v := range []int64{10, 20, 30} {
		lat["baseline"].Record(v)
	}
	lat["canary"].Record(400)
	for _, tc := range []struct {
		name  string
		chain *ChainResult
		want  bool
	}{
		{"paced at the test's rate", &ChainResult{Rate: 100, Latency: projections.Percentiles{P50: 5, P99: 9}}, true},
		{"unpaced (a throughput ceiling)", &ChainResult{Rate: 0}, false},
		{"paced at another rate", &ChainResult{Rate: 50}, false},
		{"no chain", nil, false},
	} {
		got := compareRaw(100, lat, tc.chain)
		if (got != nil) != tc.want {
			t.Errorf("%s: comparison %+v, want one: %v", tc.name, got, tc.want)
			continue
		}
		if got == nil {
			continue
		}
		// Every route's runs count: the canary's 400 ms is the p99.
		if got.Spine.P50 != 20 || got.Spine.P99 < 390 || got.Raw.P99 != 9 || !strings.Contains(got.Label, "same paced rate (100/s)") {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
	if got := compareRaw(100, map[string]*projections.Histogram{}, &ChainResult{Rate: 100}); got != nil {
		t.Errorf("no finished runs, yet a comparison %+v", got)
	}
}
