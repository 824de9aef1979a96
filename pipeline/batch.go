package pipeline

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BatchHandler is a processor whose effects are per batch, not per record:
// it folds a whole polled batch at once and returns the records the batch
// changed, already encoded, which the loop writes in the batch's
// transaction with its input offsets. The projections are one: their state
// is their own compacted topics, not a changelog of the loop, and a cell
// that many events of a batch changed is written once.
//
// A processor built with NewBatchProcessor keeps no state changelog,
// restores nothing on assignment and fires no timers; the handler keeps
// what it needs itself (Settler and Revoker tell it when to commit or drop
// it). The loop decodes every record first: poison is dead-lettered by the
// loop (in the same transaction, as for a Handler) and never reaches the
// handler; a transient decode error is retried in place, then blocks. Then
// HandleBatch is called once with the rest, in poll order (each
// partition's records in offset order), from the loop goroutine. Any error
// it returns, a panic included, is transient: the transaction is aborted
// (Settler.Aborted), the loop backs off and polls the same records again.
//
// HandleBatch may do I/O of its own (reading its topics to restore what it
// holds): ctx ends with Run's (the batch is aborted: a stopping processor
// does not wait for a slow restore) and expires after BatchHandleTimeout; a
// batch handled before Run's ctx ended is still committed. Nothing of the
// transaction reaches the broker before HandleBatch returns: its records,
// the dead letters and the offsets are sent together, one batch per
// partition, when the transaction ends.
type BatchHandler interface {
	HandleBatch(ctx context.Context, batch []Input) ([]Record, error)
}

// BatchHandlerFunc adapts a function to BatchHandler.
type BatchHandlerFunc func(ctx context.Context, batch []Input) ([]Record, error)

// HandleBatch calls f.
func (f BatchHandlerFunc) HandleBatch(ctx context.Context, batch []Input) ([]Record, error) {
	return f(ctx, batch)
}

// BatchHandleTimeout bounds one HandleBatch call.
const BatchHandleTimeout = 30 * time.Second

// Record is one encoded record a BatchHandler writes in its batch's
// transaction, to exactly the partition it names (which must exist), with
// its Headers (nil: none). A nil Value is a tombstone.
type Record struct {
	Topic     Topic
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
}

// BatchCommit describes a committed transaction of a BatchHandler.
type BatchCommit struct {
	// Inputs is how many inputs HandleBatch was given (0 when it was not
	// called: every record was poison or passed over).
	Inputs int
	// DeadLettered is how many records the loop dead-lettered in it.
	DeadLettered int
	// Took is the time from beginning the transaction to its commit.
	Took time.Duration
}

// Settler is implemented by a BatchHandler that keeps what HandleBatch
// changed in memory: it learns how each transaction ended, so it keeps
// the changes of a committed one and drops those of an aborted one (which
// the loop polls again). Exactly one of its methods is called after every
// transaction of the processor ends, whether or not HandleBatch was called
// in it, from the loop goroutine.
type Settler interface {
	Committed(c BatchCommit)
	// Aborted: the transaction did not commit (a transient error, a
	// rebalance, a failed client); its records will be polled again.
	Aborted()
}

// Revoker is implemented by a BatchHandler that keeps memory per input
// partition (what it restored). Revoked is
// called with the input partitions the processor no longer owns, revoked
// or lost in a rebalance, from the Kafka client's group goroutine while no
// batch is handled (BlockRebalanceOnPoll), so it must only note them under
// a lock of its own; and with nil, meaning every partition, from the loop
// goroutine once a client closed (Run rebuilds a failed client and gets
// its partitions anew).
type Revoker interface {
	Revoked(partitions []int32)
}
