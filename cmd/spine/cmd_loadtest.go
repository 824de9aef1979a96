package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/loadtest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/schemas"
)

// loadtestOpts are the flags of `spine loadtest`.
type loadtestOpts struct {
	rate          float64
	duration      time.Duration
	drain         time.Duration
	canary        float64
	v2LatencyMs   float64
	v2FailureRate float64
	v2ScoreShift  float64
	out           string
	interval      time.Duration
	stepWeight    float64
	maxWeight     float64
	minSamples    int64
	failureLimit  int
	rawRecords    int
	actors        int
	external      bool
	embedded      bool
	partitions    int32
	untilDecided  time.Duration
}

func newLoadtestCmd(a *app) *cobra.Command {
	var o loadtestOpts
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Drive intents through the stack with canary routing and write a report",
		Long: `Drive intents through Spine at a fixed rate with a share routed to the v2
canary, show progress once a second on stderr (sent, completed, rate, canary
weight), let the canary analyzer step the weight up, promote or roll back, and
end with a report — throughput achieved against asked, per-route latency
histograms, gate pass rates, the canary decisions over time, and the
end-to-end latency of a raw franz-go transactional 3-hop chain run on the
same broker at the same rate — written as loadtest-<id>.json and
loadtest-<id>.html (one self-contained page with charts) in the working
directory, or in --out.

It drives the stack you run: when a broker and a schema registry answer at
the configured addresses (those 'spine up' uses: SPINE_KAFKA_PORT and
SPINE_REGISTRY_ADDR, or KAFKA_BROKERS and SCHEMA_REGISTRY_URL), the runs go
to that stack, so they show on its dashboard, and the first line says so.
With --embedded (or when nothing answers on the embedded defaults) it starts
a private stack in this process instead (like 'spine up', on free ports,
with a throw-away data directory); only there do the --v2-* executor knobs
and --partitions apply: a running stack's canary executor is set by its own
SPINE_CANARY_* variables, and the knobs are refused against it.`,
		Example: `  spine loadtest --rate 500 --duration 30s --canary 10
  spine loadtest --embedded --rate 300 --duration 40s --canary 20 --v2-latency-ms 200    # slower v2: rolled back
  spine loadtest --embedded --rate 300 --duration 40s --canary 20 --v2-failure-rate 0.3  # flakier v2: rolled back
  spine loadtest --rate 300 --duration 60s --canary 10 --interval 5s --out /tmp  # equal v2: promoted step by step`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.rate <= 0 || o.duration <= 0 {
				return usageError{errors.New("--rate and --duration must be positive")}
			}
			if o.canary < 0 || o.canary > 100 || o.maxWeight <= 0 || o.maxWeight > 100 || o.stepWeight <= 0 || o.stepWeight > 100 {
				return usageError{errors.New("--canary, --step-weight and --max-weight are percentages (0..100; step and max above 0)")}
			}
			if cmd.Flags().Changed("v2-failure-rate") && (o.v2FailureRate < 0 || o.v2FailureRate > 1) {
				return usageError{errors.New("--v2-failure-rate must be in 0..1")}
			}
			if !cmd.Flags().Changed("v2-failure-rate") {
				o.v2FailureRate = -1
			}
			if o.embedded && o.external {
				return usageError{errors.New("--embedded starts a private stack, --external drives the running one: give one of them")}
			}
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runLoadtest(cmd.Context(), a, cfg, o)
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.rate, "rate", 200, "intents per second to send")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "how long to send")
	f.DurationVar(&o.drain, "drain", 30*time.Second, "how long to wait for outstanding runs after sending")
	f.Float64Var(&o.canary, "canary", 10, "initial canary weight, percent of runs routed to v2")
	f.Float64Var(&o.v2LatencyMs, "v2-latency-ms", 0, "mean latency of the v2 synthetic executor in ms (0: as v1; private stack only)")
	f.Float64Var(&o.v2FailureRate, "v2-failure-rate", 0, "failure rate of the v2 synthetic executor, 0..1 (default: as v1; private stack only)")
	f.Float64Var(&o.v2ScoreShift, "v2-score-shift", 0, "shift of the v2 artifact score mean (drift), e.g. -0.3 (private stack only)")
	f.StringVar(&o.out, "out", ".", "directory for the JSON and HTML report")
	f.DurationVar(&o.interval, "interval", 5*time.Second, "canary analysis interval")
	f.Float64Var(&o.stepWeight, "step-weight", 10, "percent added to the weight after each passing analysis")
	f.Float64Var(&o.maxWeight, "max-weight", 50, "percent at which a passing analysis promotes")
	f.Int64Var(&o.minSamples, "min-samples", 100, "finished runs each route needs before an analysis decides")
	f.IntVar(&o.failureLimit, "failure-limit", 2, "failed analyses that roll back")
	f.IntVar(&o.rawRecords, "raw-records", 20000, "at most this many records through the raw franz-go chain, paced at --rate for up to 5 s (0 skips it)")
	f.IntVar(&o.actors, "actors", 1000, "distinct actors the intents come from")
	f.BoolVar(&o.external, "external", false, "drive the running stack at the configured addresses, and fail if none answers")
	f.BoolVar(&o.embedded, "embedded", false, "start a private stack in this process, even when one runs at the configured addresses")
	f.Int32Var(&o.partitions, "partitions", 0, "partitions of the private stack's topics (default SPINE_PARTITIONS; --embedded only)")
	f.DurationVar(&o.untilDecided, "until-decided", 0, "keep sending after --duration until the rollout is promoted or rolled back, for at most this long in all")
	return cmd
}

// freePort returns a TCP port free on 127.0.0.1 right now, preferably
// below Linux's ephemeral range (32768-60999), where outgoing connections
// (the stack's own Kafka clients among them) cannot take it before the
// stack binds it.
func freePort() (int, error) {
	for range 50 {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))); err == nil {
			defer l.Close()
			return l.Addr().(*net.TCPAddr).Port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startLoadtestStack starts the whole stack in this process on free ports
// with a fresh data directory, and returns its config (addresses included),
// a stop function, and a channel that yields runUp's result.
func startLoadtestStack(ctx context.Context, a *app, base *stack.Config, o loadtestOpts) (*stack.Config, func(), error) {
	c := *base
	// Private: its own embedded broker and registry, whatever the
	// configuration names.
	c.Brokers, c.RegistryURL = nil, ""
	dir, err := os.MkdirTemp("", "spine-loadtest-")
	if err != nil {
		return nil, nil, err
	}
	c.DataDir = dir
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, nil, err
		}
	}
	c.KafkaPort = ports[0]
	c.RegistryAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	c.HTTPAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
	c.MetricsAddr = ""
	if o.partitions > 0 {
		c.Partitions = o.partitions
	}
	if o.v2LatencyMs > 0 {
		mean := time.Duration(o.v2LatencyMs * float64(time.Millisecond))
		c.Synthetic.CanaryLatencyMean = mean
		// The baseline's shape: p99 as many times the mean as v1's.
		ratio := 4.0
		if c.Synthetic.LatencyMean > 0 && c.Synthetic.LatencyP99 > c.Synthetic.LatencyMean {
			ratio = float64(c.Synthetic.LatencyP99) / float64(c.Synthetic.LatencyMean)
		}
		c.Synthetic.CanaryLatencyP99 = time.Duration(float64(mean) * ratio)
	}
	if o.v2FailureRate >= 0 {
		c.Synthetic.CanaryFailureRate = o.v2FailureRate
	}
	c.Synthetic.CanaryScoreShift = o.v2ScoreShift
	// The stack logs errors only, so the progress lines stay readable.
	lvl := slog.LevelError
	sub := &app{stdin: a.stdin, stdout: io.Discard, stderr: a.stderr, cfg: &c, log: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runUp(sctx, sub, &c) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				a.log.Warn("in-process stack stopped with an error", "err", err)
			}
		case <-time.After(c.ShutdownTimeout + 5*time.Second):
			a.log.Warn("in-process stack did not stop in time")
		}
		_ = os.RemoveAll(dir)
	}
	// Ready once /healthz answers (every part is wired by then).
	url := "http://" + c.HTTPAddr + "/healthz"
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			_ = os.RemoveAll(dir)
			return nil, nil, fmt.Errorf("in-process stack: %w", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, nil, fmt.Errorf("in-process stack did not become healthy at %s", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &c, stop, nil
}

func runLoadtest(ctx context.Context, a *app, cfg *stack.Config, o loadtestOpts) error {
	rep, err := loadtestReport(ctx, a, cfg, o)
	if err != nil {
		return err
	}
	jp, hp, err := rep.Write(o.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "drove the %s\n", rep.Params.Target)
	fmt.Fprintf(a.stdout, "asked %.0f intents/s, sent %.0f/s, finished %.0f runs/s (%d of %d; %d unfinished); canary share %.2f%%; final weight %s %s\n",
		rep.AskedRate, rep.SentRate, rep.FinishedRate, rep.Finished, rep.Sent, rep.Unfinished, rep.CanarySharePct, strconv.FormatFloat(float64(rep.FinalWeightBP)/100, 'f', -1, 64)+"%", rep.FinalPhase)
	for _, n := range rep.RouteNames() {
		rr := rep.Routes[n]
		fmt.Fprintf(a.stdout, "  %-8s runs %6d  success %.4f  p50 %d ms  p99 %d ms  executor p99 %d ms  exec failures %d/%d\n",
			n, rr.Runs, rr.SuccessRate, rr.Latency.P50, rr.Latency.P99, rr.ExecLatency.P99, rr.ExecFailed, rr.Executions)
	}
	for _, d := range rep.Decisions {
		fmt.Fprintf(a.stdout, "  +%5.1fs %-12s %s\n", d.At.Sub(rep.Started).Seconds(), d.Action, d.Reason)
	}
	if c := rep.RawComparison; c != nil {
		fmt.Fprintf(a.stdout, "  %s: Spine runs p50 %d ms, p99 %d ms (intent sent to terminal event); raw franz-go 3-hop chain p50 %d ms, p99 %d ms (source write to third hop committed)\n",
			c.Label, c.Spine.P50, c.Spine.P99, c.Raw.P50, c.Raw.P99)
	}
	fmt.Fprintf(a.stdout, "report: %s\n        %s\n", hp, jp)
	return nil
}

// loadtestReport starts the stack if asked, runs the load test and
// returns its report.
func loadtestReport(ctx context.Context, a *app, cfg *stack.Config, o loadtestOpts) (*loadtest.Report, error) {
	// The stack you run, unless --embedded: the first line says which.
	running := false
	if !o.embedded {
		var err error
		if running, err = stackAnswers(ctx, cfg); err != nil {
			return nil, err
		}
	}
	var target string
	switch {
	case running:
		if knobs := o.privateKnobs(); len(knobs) > 0 {
			verb := "applies"
			if len(knobs) > 1 {
				verb = "apply"
			}
			return nil, usageError{fmt.Errorf("%s %s to a private stack only (add --embedded): the running stack at %v sets its canary executor with its own SPINE_CANARY_* variables",
				strings.Join(knobs, ", "), verb, cliBrokers(cfg))}
		}
		target = fmt.Sprintf("running stack at kafka %v, registry %s", cliBrokers(cfg), cliRegistryURL(cfg))
		if cfg.Embedded() {
			target += ", dashboard " + localURL(cfg, cfg.HTTPAddr) + "/"
		}
		fmt.Fprintf(a.stderr, "driving the %s: its runs show there\n", target)
	case !o.embedded && (o.external || !cfg.Embedded()):
		return nil, fmt.Errorf("no stack answers at kafka %v and registry %s: start it ('make run' or 'spine up'), or add --embedded for a private one", cliBrokers(cfg), cliRegistryURL(cfg))
	default:
		why := "--embedded"
		if !o.embedded {
			why = fmt.Sprintf("no stack answers at kafka %v", cliBrokers(cfg))
		}
		fmt.Fprintf(a.stderr, "starting a private stack in this process (%s); its runs show on its own dashboard only\n", why)
		c, stop, err := startLoadtestStack(ctx, a, cfg, o)
		if err != nil {
			return nil, err
		}
		defer stop()
		cfg = c
		target = fmt.Sprintf("private in-process stack (%d partitions, synthetic executor)", cfg.Partitions)
		fmt.Fprintf(a.stderr, "stack up: kafka %v, registry %s, http http://%s/\n", cliBrokers(cfg), cliRegistryURL(cfg), cfg.HTTPAddr)
	}
	external := running

	layout := pipeline.NewLayout(&cfg.Config)
	kopts, err := cliKafkaOpts(cfg)
	if err != nil {
		return nil, err
	}
	srcl, err := newSRClient(cfg, cliRegistryURL(cfg))
	if err != nil {
		return nil, err
	}
	serde, err := schemas.NewSerde(srcl)
	if err != nil {
		return nil, err
	}
	codec := pipeline.NewSchemaCodec(serde, layout)

	flags := canary.NewRollouts(kopts, layout, pipeline.WithFlagsLogger(a.log))
	fctx, stopFlags := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() { fdone <- flags.Run(fctx) }()
	defer func() { stopFlags(); <-fdone }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = flags.WaitReady(wctx)
	cancel()
	if err != nil {
		return nil, err
	}

	r := flags.Rollout()
	r.Weight = int(o.canary*100 + 0.5)
	r.StepWeight = int(o.stepWeight*100 + 0.5)
	r.MaxWeight = int(o.maxWeight*100 + 0.5)
	r.Interval = canary.Duration(o.interval)
	r.MinSamples = o.minSamples
	r.FailureLimit = o.failureLimit
	r.Phase, r.PauseReason, r.Failures, r.CanaryRunsAtLast = canary.PhaseProgressing, "", 0, 0
	if err := r.Validate(); err != nil {
		return nil, usageError{err}
	}

	lcfg := loadtest.Config{
		Rate: o.rate, Duration: o.duration, Drain: o.drain, Rollout: r, UntilDecided: o.untilDecided,
		Kafka: kopts, Layout: layout, Codec: codec, Flags: flags, Actors: o.actors,
		Progress: a.stderr, Logger: a.log,
		Params: loadtest.Params{
			Rate: o.rate, Duration: o.duration.String(), CanaryPct: o.canary,
			V2LatencyMs: o.v2LatencyMs, V2FailureRate: max(o.v2FailureRate, 0), V2ScoreShift: o.v2ScoreShift,
			Partitions: layout.Partitions, Target: target,
		},
	}
	if !external {
		lcfg.Memory = loadtest.ProcessMemory
	}
	if o.rawRecords > 0 {
		// Paced at the test's rate, for about 5 s: its latency is
		// comparable with the runs' (Report.RawComparison).
		lcfg.Chain = &loadtest.ChainConfig{Records: min(o.rawRecords, max(100, int(o.rate*5))), Partitions: layout.Partitions, Rate: o.rate}
	}
	return loadtest.Run(ctx, lcfg)
}

// privateKnobs names the flags given that only a private stack takes.
func (o loadtestOpts) privateKnobs() []string {
	var knobs []string
	if o.v2LatencyMs > 0 {
		knobs = append(knobs, "--v2-latency-ms")
	}
	if o.v2FailureRate >= 0 {
		knobs = append(knobs, "--v2-failure-rate")
	}
	if o.v2ScoreShift != 0 {
		knobs = append(knobs, "--v2-score-shift")
	}
	if o.partitions > 0 {
		knobs = append(knobs, "--partitions")
	}
	return knobs
}

// stackAnswers reports whether a Kafka broker and a schema registry answer
// at cfg's addresses, each asked for at most 2 s; one without the other is
// an error that names both.
func stackAnswers(ctx context.Context, cfg *stack.Config) (bool, error) {
	brokers, registry := cliBrokers(cfg), cliRegistryURL(cfg)
	kafkaErr := func() error {
		kopts, err := cliKafkaOpts(cfg)
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(kopts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return cl.Ping(pctx)
	}()
	regErr := func() error {
		cl, err := newSRClient(cfg, registry)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = cl.Subjects(pctx)
		return err
	}()
	switch {
	case kafkaErr == nil && regErr == nil:
		return true, nil
	case kafkaErr != nil && regErr != nil:
		return false, nil
	case kafkaErr == nil:
		return false, fmt.Errorf("a Kafka broker answers at %v but no schema registry at %s (%v): start the whole stack ('spine up'), set SCHEMA_REGISTRY_URL, or add --embedded", brokers, registry, regErr)
	default:
		return false, fmt.Errorf("a schema registry answers at %s but no Kafka broker at %v (%v): set KAFKA_BROKERS or SPINE_KAFKA_PORT, or add --embedded", registry, brokers, kafkaErr)
	}
}
