package schemas

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/sr"
)

// ContractLevel is the compatibility level Spine's own contract subjects are
// held to: every version reads every other version's data.
const ContractLevel = sr.CompatFullTransitive

// RegisterContracts registers Spine's contracts with a Confluent-compatible
// registry: for each subject it sets the compatibility level to
// FULL_TRANSITIVE, then registers the contract's V1 and V2 in order. It is
// idempotent: registering again returns the same ids. The result maps each
// subject to the schema id of each version. It stops at the first error,
// which names the subject; ctx bounds every request.
func RegisterContracts(ctx context.Context, cl *sr.Client, subjects map[string]Contract) (map[string]map[ContractVersion]int, error) {
	names := make([]string, 0, len(subjects))
	for s := range subjects {
		names = append(names, s)
	}
	sort.Strings(names)
	out := make(map[string]map[ContractVersion]int, len(subjects))
	for _, subject := range names {
		c := subjects[subject]
		if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: ContractLevel}, subject); r[0].Err != nil {
			return out, fmt.Errorf("set %s compatibility of subject %s: %w (is the schema registry reachable?)", ContractLevel, subject, r[0].Err)
		}
		ids := make(map[ContractVersion]int, len(Versions))
		for _, v := range Versions {
			src, err := Source(c, v)
			if err != nil {
				return out, err
			}
			id, err := cl.RegisterSchema(ctx, subject, sr.Schema{Schema: src, Type: sr.TypeAvro}, -1, -1)
			if err != nil {
				return out, fmt.Errorf("register contract %s %s under subject %s: %w", c, v, subject, err)
			}
			ids[v] = id
		}
		out[subject] = ids
	}
	return out, nil
}
