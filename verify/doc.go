// Package verify checks a stack's thread against the invariants Spine
// promises, the way Jepsen's Kafka checker names each anomaly of a
// recorded history: `spine verify` and the tests use it alike.
//
// Run reads the thread (spine.intents, spine.control, spine.dataplane,
// gate.*), the artifacts topic and the DLQ with one read_committed
// consumer, keeping control records, and checks:
//
//   - each intent started a run or was dead-lettered (LostIntent);
//   - each run has exactly one terminal outcome (MultipleTerminals), or is
//     still in flight within its state's timeout or its deadline
//     (LostTerminal);
//   - each run's control events move it only along the stateflow's
//     transitions, in offset order, and none after its end
//     (IllegalTransition);
//   - no event_id appears twice (DuplicateEvent);
//   - no record of an aborted transaction is visible: records of a
//     transaction wait for its marker, and an abort marker with records of
//     its producer still waiting names them (AbortedRead);
//   - every gate.verdict agrees with the gate events on its artifact, and
//     every terminal with its verdict (VerdictMismatch);
//   - every artifact.delivered has its artifact (MissingArtifact);
//   - every dead letter has its headers, a reason, and the original
//     record's bytes, compared with the record at its original offset
//     (BadDeadLetter);
//   - the live projections equal a replay of the thread
//     (ProjectionMismatch, through projections.Replay, concurrently).
//
// The read is one pass, and cheap per record: a RuntimeEvent's envelope is
// read in place from its Avro body (no decode, no allocation) when the
// writer schema has the envelope's layout, checked once per schema id;
// a run's state is a small fixed-size struct in one slice; event ids and
// artifact ids are 64-bit fingerprints in open-addressed tables. The
// stateflow comes in as one function (Config.Legal), so this package
// knows nothing of the orchestrator.
//
// Run is safe for concurrent use; it owns one goroutine (the replay) that
// ends before it returns.
package verify
