// Command kafkawait waits until a Kafka broker is ready for Spine's test
// suite: it answers metadata, has the wanted transaction.version finalized,
// and its group and transaction coordinators are loaded (so the first test
// does not pay for creating __consumer_offsets and __transaction_state).
// deploy/kafka/start.sh runs it after starting the broker.
//
//	go run ./deploy/kafka/kafkawait -brokers 127.0.0.1:19092 -timeout 120s
//
// It exits 0 when ready, 1 when the deadline passes or the broker process
// (-pid) dies first, printing what it last saw.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait")
	pid := flag.Int("pid", 0, "broker process id: give up as soon as it exits (0: don't watch)")
	wantTV := flag.Int("transaction-version", 2, "minimum finalized transaction.version (0: don't check)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := wait(ctx, strings.Split(*brokers, ","), *pid, int16(*wantTV)); err != nil {
		fmt.Fprintf(os.Stderr, "kafkawait: %s not ready: %v\n", *brokers, err)
		os.Exit(1)
	}
}

// errExited reports that the watched broker process is gone.
var errExited = errors.New("broker process exited")

func wait(ctx context.Context, brokers []string, pid int, wantTV int16) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.RetryTimeout(2*time.Second), kgo.RequestRetries(1),
		kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	start := time.Now()
	last := errors.New("no answer yet")
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid > 0 && syscall.Kill(pid, 0) != nil {
			return fmt.Errorf("%w (last: %v)", errExited, last)
		}
		if last = ready(ctx, cl, adm, wantTV); last == nil {
			fmt.Fprintf(os.Stderr, "kafkawait: %s ready after %s\n", strings.Join(brokers, ","), time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// ready returns nil when the cluster answers and serves transactions.
func ready(ctx context.Context, cl *kgo.Client, adm *kadm.Client, wantTV int16) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	bs, err := adm.ListBrokers(rctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(bs) == 0 {
		return errors.New("metadata lists no broker")
	}
	if wantTV > 0 {
		resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(rctx, cl)
		if err != nil {
			return fmt.Errorf("api versions: %w", err)
		}
		var tv int16 = -1
		for _, f := range resp.FinalizedFeatures {
			if f.Name == "transaction.version" {
				tv = f.MaxVersionLevel
			}
		}
		if tv < wantTV {
			return fmt.Errorf("finalized transaction.version is %d, want %d", tv, wantTV)
		}
	}
	if err := adm.FindGroupCoordinators(rctx, "spine-kafkawait").Error(); err != nil {
		return fmt.Errorf("group coordinator: %w", err)
	}
	if err := adm.FindTxnCoordinators(rctx, "spine-kafkawait").Error(); err != nil {
		return fmt.Errorf("transaction coordinator: %w", err)
	}
	return nil
}
