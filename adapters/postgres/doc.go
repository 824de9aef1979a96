// Package postgres is the database adapter: it folds the thread into
// PostgreSQL tables, exactly once, for queries users write in SQL.
//
// Tables (in the schema SPINE_PG_SCHEMA, default spine, created and
// migrated by the sink itself; see Migrations):
//
//   - events: every RuntimeEvent of the thread topics (spine.control,
//     spine.dataplane, gate.*), append-only, keyed by its topic, partition
//     and offset, with its envelope in columns and whole in body (jsonb;
//     the run's input is kept by its size only).
//   - gates: one row per gate outcome, with its rule, policy version and
//     evidence.
//   - runs: one row per run, recomputed from its events in the transaction
//     that writes them, the way the projections merge a run: kind, actor,
//     provenance, route, contract version, state, attempts, the time of
//     each golden-path hop, the outcome, the artifact id.
//   - artifacts: id, content type, size and, up to
//     SPINE_PG_MAX_ARTIFACT_BYTES, the content (spine.artifacts).
//   - kafka_offsets: per consumer group and partition, the next offset to
//     read.
//
// # Exactly once
//
// Each batch of records and the new offsets of its partitions are written
// in one database transaction; the offsets row is also a fence: it is
// updated only if it still holds the value this instance read when the
// partition was assigned (or last wrote), so an instance that lost a
// partition cannot write it. On start and on every assignment the sink
// reads its offsets from the database (kgo.AdjustFetchOffsetsFn), never
// from Kafka's group offsets, which it does not commit. Records are read
// read_committed. Rows are inserted from a COPY into a temporary table
// with ON CONFLICT DO NOTHING, so even a record written twice would land
// once. One run's events live on several topics whose partitions two
// instances may own: each batch takes transaction advisory locks on its
// runs (bucketed, in one order) before recomputing their rows, so the
// second writer recomputes after the first committed and sees its events.
// Canary analyses and drift windows (trace drift/<kind>/<route>) are about
// no run: their events and gate outcomes are kept, no runs row is made.
//
// # Goroutines and locks
//
// Run runs one session at a time on its own goroutine: the polling loop,
// which owns the batch connection. kgo's group goroutine calls the
// assignment and revoke callbacks; they share the owned-partitions map and
// the lookup connection with the loop under session.mu. With
// kgo.BlockRebalanceOnPoll a rebalance waits for the batch in flight to be
// committed or rolled back. Any error ends the session (the open
// transaction rolls back, the client leaves the group) and a new one
// starts from the database's offsets.
package postgres
