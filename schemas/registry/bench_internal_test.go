package registry

import (
	"testing"

	"github.com/spinerun/spine/schemas"
)

// BenchmarkCheckFullTransitive measures one FULL_TRANSITIVE registration
// check of RuntimeEvent v2 against v1 and v2 (parse included, as the
// request path does).
func BenchmarkCheckFullTransitive(b *testing.B) {
	v1, _ := Parse(schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V1))
	v2, _ := Parse(schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2))
	existing := []checkVersion{{1, v1}, {2, v2}}
	src := schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2)
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse(src)
		if err != nil {
			b.Fatal(err)
		}
		if rs := check(FullTransitive, c, existing); rs != nil {
			b.Fatal(rs)
		}
	}
}
