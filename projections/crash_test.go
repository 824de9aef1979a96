package projections

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// The crash test runs the projections runner in a child process (this test
// binary, re-executed) and kills it with SIGKILL mid-stream, repeatedly.
const (
	envHelper  = "SPINE_PROJECTIONS_CRASH_HELPER"
	envBrokers = "SPINE_PROJECTIONS_CRASH_BROKERS"
	envPrefix  = "SPINE_PROJECTIONS_CRASH_PREFIX"
	envSR      = "SPINE_PROJECTIONS_CRASH_SR"
)

// TestCrashHelper is the child: it runs the runner until killed. It is
// skipped unless the parent test starts it.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestProjectionsSurviveSIGKILL")
	}
	l := pipeline.Layout{Prefix: os.Getenv(envPrefix), Partitions: testPartitions}
	src, err := sr.NewClient(sr.URLs(os.Getenv(envSR)))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(RunnerConfig{
		Kafka:  []kgo.Opt{kgo.SeedBrokers(strings.Split(os.Getenv(envBrokers), ",")...)},
		Layout: l, Codec: pipeline.NewSchemaCodec(serde, l),
		TransactionTimeout: 5 * time.Second, MaxPollRecords: 40, StaticMembership: true,
		SweepEvery: time.Nanosecond, Retain: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestProjectionsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	e := newEnv(t)
	runs := slices.Concat(synth(41, 300, "baseline", schemas.V1, 9), synth(42, 200, "canary", schemas.V2, 6))
	_, srv := e.view(t)

	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelper+"=1", envBrokers+"="+strings.Join(e.brokers, ","), envPrefix+"="+e.layout.Prefix, envSR+"="+e.srURL)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(43, 44))
	kills := 0
	for i := 0; i < len(runs); i += 100 {
		e.produce(t, runs[i:i+100])
		c := child()
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		if err := c.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.Wait()
		kills++
	}
	last := child()
	t.Cleanup(func() {
		_ = last.Process.Signal(syscall.SIGTERM)
		_ = last.Wait()
	})
	waitTerminals(t, srv.URL, int64(len(runs)))
	t.Logf("%d SIGKILLs", kills)
	waitFolded(t, srv.URL, 300, 200)
	text := replayEqual(t, e, fmt.Sprintf("replay after %d SIGKILLs", kills))
	t.Log(fmt.Sprintf("after %d SIGKILLs: ", kills) + text)
}
