package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partOffsets maps topic → partition → offset.
type partOffsets map[string]map[int32]int64

func (p partOffsets) set(t string, part int32, o int64) {
	if p[t] == nil {
		p[t] = map[int32]int64{}
	}
	p[t][part] = o
}

// total is the sum of offsets over every partition.
func (p partOffsets) total() int64 {
	var n int64
	for _, ps := range p {
		for _, o := range ps {
			n += o
		}
	}
	return n
}

// endOffsets lists the high watermarks and log start offsets of topics
// (optionally only the given partitions). A listing that misses a topic is
// retried (metadata can lag just after a topic is created); a topic that
// stays missing is an error. A listing that fails (no leader during an
// election, a broker restarting) is retried for up to transientListing.
func endOffsets(ctx context.Context, adm *kadm.Client, topics []string, only func(int32) bool) (end, start partOffsets, err error) {
	deadline := time.Now().Add(transientListing)
	for attempt, missed := 0, 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
		end, start, err = listOffsets(ctx, adm, topics, only)
		if err != nil {
			if ctx.Err() != nil || time.Now().After(deadline) {
				return nil, nil, err
			}
			continue
		}
		var missing []string
		for _, t := range topics {
			if len(end[t]) == 0 || len(start[t]) != len(end[t]) {
				missing = append(missing, t)
			}
		}
		if len(missing) == 0 {
			return end, start, nil
		}
		if missed++; missed == 10 {
			return nil, nil, fmt.Errorf("no offsets listed for %v (do the topics exist? `spine up` creates them)", missing)
		}
	}
}

// transientListing bounds how long endOffsets retries a listing that
// fails: longer than a broker takes to restart or elect leaders.
const transientListing = 30 * time.Second

func listOffsets(ctx context.Context, adm *kadm.Client, topics []string, only func(int32) bool) (partOffsets, partOffsets, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets of %v: %w (is Kafka reachable?)", topics, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %v: %w (is Kafka reachable?)", topics, err)
	}
	end, start := partOffsets{}, partOffsets{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Partition < 0 || (only != nil && !only(o.Partition)) {
			return
		}
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		end.set(o.Topic, o.Partition, o.Offset)
	})
	starts.Each(func(o kadm.ListedOffset) {
		if o.Partition < 0 || (only != nil && !only(o.Partition)) || o.Err != nil {
			return
		}
		start.set(o.Topic, o.Partition, o.Offset)
	})
	return end, start, errors.Join(errs...)
}

// readUntil reads each listed partition from its start, read_committed,
// until it has passed the partition's target offset (exclusive), calling fn
// for every data record below the target in offset order per partition.
// Control records are kept so aborted and committed transactions both
// advance the position; records of a transaction still open at the target
// make it wait until that transaction ends. stall bounds how long no
// progress is tolerated. fn is called from this goroutine only.
func readUntil(ctx context.Context, opts []kgo.Opt, targets partOffsets, stall time.Duration, fn func(*kgo.Record) error) error {
	return readRecords(ctx, opts, targets, stall, false, fn)
}

// readRecords is readUntil, calling fn for the control records below the
// targets too if control.
func readRecords(ctx context.Context, opts []kgo.Opt, targets partOffsets, stall time.Duration, control bool, fn func(*kgo.Record) error) error {
	consume := map[string]map[int32]kgo.Offset{}
	remaining := 0
	for t, ps := range targets {
		for p, o := range ps {
			if o <= 0 {
				continue
			}
			if consume[t] == nil {
				consume[t] = map[int32]kgo.Offset{}
			}
			consume[t][p] = kgo.NewOffset().AtStart()
			remaining++
		}
	}
	if remaining == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("reader client: %w", err)
	}
	defer cl.Close()
	if stall <= 0 {
		stall = time.Minute
	}
	done := map[string]map[int32]bool{}
	last := time.Now()
	for remaining > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("read %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		progressed := false
		var cerr error
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			target := targets[fp.Topic][fp.Partition]
			for _, r := range fp.Records {
				if done[fp.Topic][fp.Partition] {
					return
				}
				progressed = true
				if r.Offset >= target-1 {
					if done[fp.Topic] == nil {
						done[fp.Topic] = map[int32]bool{}
					}
					done[fp.Topic][fp.Partition] = true
					remaining--
					cl.PauseFetchPartitions(map[string][]int32{fp.Topic: {fp.Partition}})
				}
				if r.Offset < target && (control || !r.Attrs.IsControl()) && cerr == nil {
					cerr = fn(r)
				}
			}
		})
		if cerr != nil {
			return cerr
		}
		if progressed {
			last = time.Now()
		} else if time.Since(last) > stall {
			return fmt.Errorf("reading %d partitions: no progress for %s (is a transaction stuck open?)", remaining, stall)
		}
	}
	return nil
}
