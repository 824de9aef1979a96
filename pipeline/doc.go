// Package pipeline knows Kafka, and only Kafka: the configuration of the
// clients, the topic layout and the process (config.go), client options
// (client.go), the embedded kfake broker (embedded.go), topic creation
// (topics.go), the wire codec over the schema registry (codec.go), a plain
// producer (producer.go), an HTTP server with a clean shutdown
// (httpserve.go), and the transactional consume→process→produce
// loop every processor runs on: its options (loop_options.go), its
// sessions, assignment and restore (loop.go, state.go), one transaction
// (loop_transact.go), timers (timers.go), work run outside transactions
// for Async handlers (loop_async.go), dead letters (dlq.go), metrics
// (metrics.go), and the same loop for a BatchHandler, which folds a whole
// batch into records of its own topics and keeps no changelog (batch.go:
// BatchHandler, Record and the optional Settler and Revoker; loop_batch.go:
// NewBatchProcessor and its transaction) — the projections run on it. Beside the loop: a generic flag store over a compacted
// topic (flags.go; what a flag means lives with its user, as the canary's
// v2_rollout in processors/canary) and the leader election (leader.go). What a processor does lives in its
// Handler (handler.go), outside this package; DESIGN.md describes the
// goroutines and locks.
package pipeline
