package pipeline

import (
	"context"
	"fmt"

	"github.com/spinerun/spine/schemas"
)

// SchemaCodec is the production Codec: a *schemas.Serde with Spine's topic
// layout. Record values use TopicNameStrategy subjects ("<topic>-value"),
// and a topic of the layout only accepts its own contract: Intent on the
// intents topic, RuntimeEvent on every other thread topic. A record of the
// other contract is a DecodeError with code wrong_contract (poison, dead-
// lettered); topics outside the thread accept either contract.
//
// SchemaCodec is safe for concurrent use; it calls the registry only on the
// serde's cache misses, with the caller's ctx.
type SchemaCodec struct {
	serde     *schemas.Serde
	contracts map[Topic]schemas.Contract
	subjects  map[Topic]string // the layout's topics' value subjects, made once
}

var _ Codec = (*SchemaCodec)(nil)

// NewSchemaCodec returns a Codec on serde for the topics of layout. It does
// no I/O.
func NewSchemaCodec(serde *schemas.Serde, layout Layout) *SchemaCodec {
	contracts := map[Topic]schemas.Contract{}
	for _, t := range layout.ThreadTopics() {
		contracts[t] = schemas.ContractRuntimeEvent
	}
	contracts[layout.Intents()] = schemas.ContractIntent
	subjects := make(map[Topic]string, len(contracts))
	for t := range contracts {
		subjects[t] = schemas.ValueSubject(string(t))
	}
	return &SchemaCodec{serde: serde, contracts: contracts, subjects: subjects}
}

// subject returns topic's value subject, without building it again for a
// topic of the layout (Encode runs for every record written).
func (c *SchemaCodec) subject(topic Topic) string {
	if s, ok := c.subjects[topic]; ok {
		return s
	}
	return schemas.ValueSubject(string(topic))
}

// Serde returns the serde underneath.
func (c *SchemaCodec) Serde() *schemas.Serde { return c.serde }

// Decode decodes a record value of topic into *schemas.Intent or
// *schemas.RuntimeEvent and returns the writer's contract version.
func (c *SchemaCodec) Decode(ctx context.Context, topic Topic, b []byte) (any, schemas.ContractVersion, error) {
	value, id, writer, err := c.serde.Decode(ctx, b)
	if err != nil {
		return nil, writer, err
	}
	if want, ok := c.contracts[topic]; ok {
		if got, _ := schemas.ContractOf(value); got != want {
			return nil, writer, &schemas.DecodeError{Code: schemas.CodeWrongContract, ID: id,
				Err: fmt.Errorf("topic %s carries %s, the record is %s", topic, want, got)}
		}
	}
	return value, writer, nil
}

// Encode encodes value for topic with contract version v (0 means V1, as
// Output documents) under the subject "<topic>-value".
func (c *SchemaCodec) Encode(ctx context.Context, topic Topic, v schemas.ContractVersion, value any) ([]byte, error) {
	if v == 0 {
		v = schemas.V1
	}
	if want, ok := c.contracts[topic]; ok {
		if got, _ := schemas.ContractOf(value); got != "" && got != want {
			return nil, &schemas.EncodeError{Code: schemas.CodeUnsupportedType, Subject: c.subject(topic), Version: v,
				Err: fmt.Errorf("topic %s carries %s, not %s", topic, want, got)}
		}
	}
	return c.serde.Encode(ctx, c.subject(topic), v, value)
}
