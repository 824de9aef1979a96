// Package registry is Spine's schema registry: the Confluent Schema Registry
// REST API for Avro, enforcing compatibility, with its state in a compacted
// Kafka topic.
//
// Users evolve contracts through the registry, and the registry is what
// stops an incompatible contract from reaching a topic. Clients written for
// Confluent's registry (franz-go's sr, hamba's registry, the Java serdes)
// work against it unchanged; in production Spine can point at Confluent,
// Redpanda, Apicurio's ccompat API or Karapace instead.
//
// # Compatibility
//
// All seven levels (BACKWARD, the default, BACKWARD_TRANSITIVE, FORWARD,
// FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE). Non-transitive levels
// check a new schema against the latest live version, transitive ones
// against every live version. Avro's resolution rules come from hamba/avro
// with care: a new checker per reader/writer pair, each schema parsed with a
// cache of its own, and identity never from hamba's fingerprint (which
// ignores defaults): schemas are the same when their compacted JSON is.
// Incompatible answers name the field, the version and why.
//
// # Storage
//
// The state is the one-partition compacted topic _schemas (keys and JSON
// values shaped like Confluent's; tombstones on permanent deletes), replayed
// at start. Writes go through one writer at a time, elected by a Kafka
// transactional id: an instance about to write fences the previous writer,
// catches up with the log end, validates, produces in a transaction and
// answers only once it has read its records back. Any instance serves reads
// once it has replayed the topic, so a restart or a second instance sees the
// same ids and versions. Ids are global and never reused: a watermark record
// keeps the highest id across permanent deletes and compaction.
//
// # Goroutines and locks
//
// Run owns one reader goroutine that applies records under Registry.mu
// (write lock); handlers read under mu (read lock). Writes are serialized
// by Registry.wmu, taken before mu, and mu is never held across I/O.
package registry
