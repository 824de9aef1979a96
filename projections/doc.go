// Package projections is Spine's read side: materialized views folded from
// the thread, their query API and dashboard, and replay.
//
// # Folds
//
// Folder.Fold turns one RuntimeEvent into changes of projection cells. The
// folds are pure and deterministic (no clock, no I/O):
//
//   - runs: a run's status by trace_id — state, route, contract version,
//     the time of each hop, gate results and terminal outcome;
//   - golden: golden-path counts and latency (event timestamp minus
//     run_started) per hop and end to end, per contract version, route and
//     window (DefaultWindow, 10s), in mergeable Histograms;
//   - gates: gate passes and failures by gate and normalized reason;
//   - artifacts: artifact count, bytes, score distribution and executor
//     latency.
//
// Every cell belongs to one source partition (a thread topic and
// partition): runs cells are keyed runs|<topic>|<partition>|<trace_id>,
// aggregate cells <projection>|<topic>|<partition>|<version>|<route>|<window>.
// So a cell has exactly one writer whatever the consumer group's assignment,
// depends only on that partition's events in offset order (which is what
// makes a replay equal), and aggregates merge across partitions at query
// time — exactly, because histogram buckets are fixed.
//
// # Processing
//
// Runner consumes every RuntimeEvent topic of the thread in a
// GroupTransactSession and writes each changed cell to its compacted
// spine.proj.<name> topic, in the same transaction as the input offsets
// (exactly once). It restores cells from those topics, not from the thread,
// when it first sees a source partition. It keeps in memory only what can
// still change: finished runs and windows older than RunnerConfig.Retain
// are evicted, and an event for an evicted cell restores its source
// partition first (Folder.Plan names the cells an event touches), so
// eviction never changes a cell. Undecodable records go to spine.dlq in the
// same transaction; a registry outage is retried, never dead-lettered.
// Store is a view that reads the projection topics into memory; API serves
// it as JSON and Dashboard as a page. Replay rebuilds every projection from
// the thread into memory and diffs it with the live topics, up to the
// offsets the live runner committed.
//
// # Goroutines and locks
//
// Runner.Run owns its cells on one goroutine; the group's revoke and lost
// callbacks only queue the sources to forget, under Runner.mu. Store.Run
// applies records under Store.mu (write); queries take it for reading.
// Replay runs on the caller's goroutine plus one progress printer.
package projections
