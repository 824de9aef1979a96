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
// Runner runs the projections on the pipeline's transactional loop as a
// pipeline.BatchHandler (projector.go): it consumes every RuntimeEvent
// topic of the thread, folds each polled batch, and the loop writes each
// changed cell once to its compacted spine.proj.<name> topic, on the
// cell's source partition, in the same transaction as the input offsets
// (exactly once). It restores cells from those topics, not from the thread,
// when it first sees a source partition (and again after an aborted
// transaction or a rebalance). It keeps in memory only what can
// still change: a finished run's parts are spilled at the next sweep (kept
// as the bytes their last transaction wrote, a third of their decoded
// size, for RunnerConfig.Retain of event time, so that a stale result
// decodes its part back), windows older than Retain are evicted, and an
// event for an evicted cell restores its source partition first
// (Folder.Plan names the cells an event touches), so eviction never
// changes a cell. Which cells it evicted it remembers for
// RunnerConfig.ForgetEvicted of event time; past that, an event of a run
// older than what it forgot, for a cell not in memory, restores the
// source too, so this memory is bounded as well. Undecodable records go to spine.dlq in the
// same transaction, through the loop's dead-letter writer; a registry
// outage is retried, never dead-lettered.
// Store is a view that reads the projection topics into memory; API serves
// it as JSON and the dashboard as a page. Live, fed by the runner once a
// batch commits, keeps the last LiveSpan in per-second buckets and the
// recent runs' events for the dashboard (served live as server-sent
// events, GET /v1/stream); DeadLetters tails the DLQ for it. Replay rebuilds every projection from
// the thread into memory and diffs it with the live topics, up to the
// offsets the live runner committed, one partition number at a time (the
// cells of thread partition p are on projection partition p), so that it
// holds one partition's cells, not the thread's.
//
// # Goroutines and locks
//
// The loop goroutine of Runner.Run owns the cells (HandleBatch, Committed,
// Aborted); the group's revoke and lost callbacks (Revoked) only queue the
// partitions to forget, under projector.mu. Store.Run
// applies records under Store.mu (write); queries take it for reading.
// Live.observe runs on the loop goroutine (from Committed) under Live.mu;
// snapshots take Live.cacheMu, then Live.mu. DeadLetters.Run applies
// records under DeadLetters.mu; Snapshot reads under it. Each /v1/stream
// client is one handler goroutine sharing the API's encoded snapshot
// (under API.snaps.mu).
// Replay runs on the caller's goroutine with, while it runs, a fold of each
// partition number read alongside its live cells, one fold worker per CPU
// (each owns its cells), one comparison worker per fold worker and a
// progress printer; all have ended when it returns.
package projections
