package loadtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
)

// ChainConfig configures the raw franz-go chain.
type ChainConfig struct {
	// Kafka reaches the cluster. Required.
	Kafka []kgo.Opt
	// Prefix names the chain's topics (<prefix>rawchain.0 … .3), groups and
	// transactional ids; use a fresh one per run.
	Prefix string
	// Partitions of each chain topic (default 1).
	Partitions int32
	// Records is the number of records pushed through (default 20000).
	Records int
	// Rate paces the source in records/s; 0 pushes as fast as it can
	// (throughput).
	Rate float64
}

// ChainResult is what the raw chain measured.
type ChainResult struct {
	Hops    int `json:"hops"`
	Records int `json:"records"`
	// Rate is the source's pace in records/s; 0: unpaced (a throughput
	// ceiling).
	Rate float64 `json:"rate_per_s,omitempty"`
	// Events counts the records written by the hops (Records × Hops).
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
	// EventsPerSec is Events / Seconds: transactional hop outputs per
	// second.
	EventsPerSec float64 `json:"events_per_s"`
	// Latency is from the source write to the last hop's committed output,
	// in ms.
	Latency projections.Percentiles `json:"latency"`
}

// Chain measures a raw franz-go transactional chain of three hops on the
// same cluster: a source writes Records records to topic 0; each hop is a
// GroupTransactSession that consumes topic i (read_committed) and produces
// each record to topic i+1 in a transaction with its offsets, flushing
// before it ends each transaction (ProducerLinger 0), like Spine's loop. It
// is the scale Spine's golden path is compared with: the same broker and
// guarantees without decoding, state or handlers.
func Chain(ctx context.Context, cfg ChainConfig) (ChainResult, error) {
	const hops = 3
	if cfg.Records <= 0 {
		cfg.Records = 20000
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if len(cfg.Kafka) == 0 {
		return ChainResult{}, errors.New("raw chain: no Kafka options")
	}
	topic := func(i int) string { return cfg.Prefix + "rawchain." + strconv.Itoa(i) }
	admCl, err := kgo.NewClient(cfg.Kafka...)
	if err != nil {
		return ChainResult{}, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	names := make([]string, hops+1)
	for i := range names {
		names[i] = topic(i)
	}
	if _, err := adm.CreateTopics(ctx, cfg.Partitions, -1, nil, names...); err != nil {
		return ChainResult{}, fmt.Errorf("raw chain: create topics: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, names...)
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	err = pipeline.WaitLeaders(wctx, adm, names...)
	wcancel()
	if err != nil {
		return ChainResult{}, fmt.Errorf("raw chain: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, hops+2)
	for i := range hops {
		sess, err := kgo.NewGroupTransactSession(append(slices.Clone(cfg.Kafka),
			kgo.ConsumeTopics(topic(i)),
			kgo.ConsumerGroup(cfg.Prefix+"rawchain-hop"+strconv.Itoa(i)),
			kgo.TransactionalID(cfg.Prefix+"rawchain-hop"+strconv.Itoa(i)),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.ProducerLinger(0),
			kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.DefaultProduceTopic(topic(i+1)),
		)...)
		if err != nil {
			return ChainResult{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sess.Close()
			for ctx.Err() == nil {
				fs := sess.PollFetches(ctx)
				if ctx.Err() != nil {
					return
				}
				if err := sess.Begin(); err != nil {
					errc <- fmt.Errorf("hop %d begin: %w", i, err)
					return
				}
				fs.EachRecord(func(r *kgo.Record) {
					sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value}, nil)
				})
				if err := sess.Client().Flush(ctx); err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("hop %d flush: %w", i, err)
					return
				}
				if _, err := sess.End(ctx, kgo.TryCommit); err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("hop %d end: %w", i, err)
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	// The sink: read the last topic, read_committed, from the start.
	sink, err := kgo.NewClient(append(slices.Clone(cfg.Kafka),
		kgo.ConsumeTopics(topic(hops)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return ChainResult{}, err
	}
	defer sink.Close()
	src, err := kgo.NewClient(append(slices.Clone(cfg.Kafka), kgo.DefaultProduceTopic(topic(0)), kgo.ProducerLinger(time.Millisecond))...)
	if err != nil {
		return ChainResult{}, err
	}
	defer src.Close()

	var lat projections.Histogram
	var got atomic.Int64
	sinkDone := make(chan error, 1)
	go func() {
		for got.Load() < int64(cfg.Records) {
			fs := sink.PollFetches(ctx)
			if ctx.Err() != nil {
				sinkDone <- ctx.Err()
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) >= 8 {
					sent := time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))
					lat.Record(now.Sub(sent).Milliseconds())
				}
				got.Add(1)
			})
		}
		sinkDone <- nil
	}()

	start := time.Now()
	for i := range cfg.Records {
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		v := make([]byte, 64)
		binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
		src.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("source: %w", err):
				default:
				}
			}
		})
	}
	select {
	case err := <-sinkDone:
		if err != nil {
			return ChainResult{}, fmt.Errorf("raw chain: %d of %d records through: %w", got.Load(), cfg.Records, err)
		}
	case err := <-errc:
		return ChainResult{}, fmt.Errorf("raw chain: %w", err)
	}
	el := time.Since(start).Seconds()
	res := ChainResult{Hops: hops, Records: cfg.Records, Rate: cfg.Rate, Events: int64(cfg.Records) * hops, Seconds: el, Latency: projections.PercentilesOf(&lat)}
	res.EventsPerSec = float64(res.Events) / el
	return res, nil
}
