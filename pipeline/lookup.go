package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrKeyNotFound is returned by FindKey when no committed record has the
// key in the range it read.
var ErrKeyNotFound = errors.New("no record with this key")

// Found is a record FindKey found, with what it read to find it.
type Found struct {
	Record *kgo.Record
	// Read is the number of records read; From the offset it started at.
	Read int
	From int64
}

// FindKey returns the first committed record of topic whose key is key,
// reading only the partition key hashes to (Kafka's murmur2, as every Spine
// producer partitions) from the first offset whose timestamp is at or after
// since, up to the partition's last stable offset as it is when FindKey starts. It never
// scans the topic: what it reads is the records written to one partition
// since then. A zero since reads the partition from its start. ctx bounds
// the whole lookup. It is safe for concurrent use; each call uses a client
// of its own built from opts (seed brokers, SASL, TLS).
func FindKey(ctx context.Context, opts []kgo.Opt, topic Topic, key []byte, since time.Time) (Found, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return Found{}, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	t := string(topic)
	td, err := adm.ListTopics(ctx, t)
	if err != nil {
		return Found{}, fmt.Errorf("describe %s (is Kafka reachable?): %w", t, err)
	}
	d, ok := td[t]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return Found{}, fmt.Errorf("topic %s does not exist", t)
	}
	part := int32(kgo.StickyKeyPartitioner(nil).ForTopic(t).Partition(&kgo.Record{Key: key}, len(d.Partitions)))
	ends, err := adm.ListCommittedOffsets(ctx, t) // the last stable offset: what read_committed can read
	if err != nil {
		return Found{}, fmt.Errorf("list end offsets of %s: %w", t, err)
	}
	end, ok := ends.Lookup(t, part)
	if !ok || end.Err != nil {
		return Found{}, fmt.Errorf("end offset of %s[%d]: %v", t, part, end.Err)
	}
	start := kgo.NewOffset().AtStart()
	from := int64(0)
	if !since.IsZero() {
		offs, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), t)
		if err != nil {
			return Found{}, fmt.Errorf("offset of %s[%d] at %s: %w", t, part, since.Format(time.RFC3339Nano), err)
		}
		o, ok := offs.Lookup(t, part)
		if !ok || o.Err != nil {
			return Found{}, fmt.Errorf("offset of %s[%d] at %s: %v", t, part, since.Format(time.RFC3339Nano), o.Err)
		}
		if o.Offset >= end.Offset {
			return Found{From: o.Offset}, ErrKeyNotFound
		}
		from = o.Offset
		start = kgo.NewOffset().At(o.Offset)
	}
	if end.Offset <= from {
		return Found{From: from}, ErrKeyNotFound
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t: {part: start}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // a transaction marker at the end still tells how far the read got
	)...)
	if err != nil {
		return Found{}, err
	}
	defer cl.Close()
	f := Found{From: from}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return f, fmt.Errorf("find key in %s[%d] from offset %d: %w", t, part, from, err)
		}
		var hit *kgo.Record
		var last int64 = -1
		fs.EachError(func(_ string, _ int32, e error) {
			if err == nil {
				err = e
			}
		})
		if err != nil {
			return f, fmt.Errorf("read %s[%d]: %w", t, part, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			if r.Attrs.IsControl() || hit != nil {
				return
			}
			f.Read++
			if string(r.Key) == string(key) {
				hit = r
			}
		})
		if hit != nil {
			f.Record = hit
			return f, nil
		}
		if last >= end.Offset-1 {
			return f, ErrKeyNotFound
		}
	}
}
