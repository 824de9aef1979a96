// Package thread is the vocabulary of Spine's event thread, defined once
// here and imported by every other package: the event types (a
// schemas.EventType each), the golden-path hops and terminal outcomes, the
// routes, the names of the processors, of the thread-level gates and of the
// projections, the base names of every topic, the deterministic event and
// span ids, and the golden-path metrics that follow the one path
// intent.received → dataplane.dispatched → artifact.delivered → gate.*.
//
// Ids are derived from the trace id and the step that produced them, never
// from a clock or a random source, so a transaction the pipeline retries or a
// run replayed from the thread reproduces exactly the same ids: event_id is
// the idempotency key downstream.
//
// No other non-test file spells an event type as a string literal; a test
// of this package checks the whole module for it.
package thread
