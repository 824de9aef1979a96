package stack

import (
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// Grants is least privilege on a cluster with an authorizer: one Kafka
// principal per part of the stack, named as the part (`spine run <part>`
// runs with KAFKA_SASL_USERNAME set to it), allowed to write only the
// topics that part produces and to read only those it consumes. The
// dataplane's principal, for one, cannot write gate.verdict or
// spine.control. Topic creation, the registry's _schemas and ACLs
// themselves are the admin's (a superuser). The README's Security
// section prints this table (pipeline.GrantTable).
func Grants(l pipeline.Layout) []pipeline.Grant {
	gate := func(names ...string) []pipeline.Topic {
		ts := make([]pipeline.Topic, len(names))
		for i, n := range names {
			ts[i] = l.Gate(n)
		}
		return ts
	}
	cat := func(parts ...[]pipeline.Topic) []pipeline.Topic {
		var out []pipeline.Topic
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	processor := func(name string, read, write []pipeline.Topic) pipeline.Grant {
		state := l.State(name)
		return pipeline.Grant{
			Principal:        name,
			Read:             append(read, state),
			Write:            append(write, state, l.DLQ()),
			Groups:           []string{l.Group(name)},
			TransactionalIDs: []string{l.Group(name)},
		}
	}
	var projections []pipeline.Topic
	for _, n := range thread.ProjectionNames {
		projections = append(projections, l.Projection(n))
	}
	return []pipeline.Grant{
		{Principal: Ingress, Write: []pipeline.Topic{l.Intents()}},
		processor(Orchestrator,
			cat([]pipeline.Topic{l.Intents(), l.Control(), l.Dataplane(), l.Flags()}, gate(thread.VerdictGate)),
			cat([]pipeline.Topic{l.Control()}, gate(thread.PolicyGate))),
		processor(Dataplane,
			[]pipeline.Topic{l.Control(), l.Flags()},
			[]pipeline.Topic{l.Dataplane(), l.Artifacts()}),
		processor(Gates,
			[]pipeline.Topic{l.Dataplane(), l.Artifacts(), l.DriftStatus(), l.Flags()},
			cat(gate(thread.SchemaGate, thread.PerformanceGate, thread.PolicyGate, thread.DriftGate, thread.VerdictGate), []pipeline.Topic{l.DriftSamples()})),
		processor(Drift,
			[]pipeline.Topic{l.DriftSamples()},
			cat(gate(thread.DriftGate), []pipeline.Topic{l.DriftStatus()})),
		{
			Principal:        Projections,
			Read:             cat(l.ThreadTopics(), []pipeline.Topic{l.Artifacts(), l.DLQ(), l.Flags()}, projections),
			Write:            projections,
			Groups:           []string{l.Group(Projections)},
			TransactionalIDs: []string{l.Group(Projections)},
		},
	}
}
