package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

type produceFlags struct {
	count    int
	rate     float64
	contract string
	actor    string
	kind     string
	input    string
	traceID  string
	priority int32
	tenant   string
	batch    int
	quiet    bool
}

func newProduceCmd(a *app) *cobra.Command {
	var f produceFlags
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Produce intents (JSON lines on stdin, one from flags, or N generated with --count)",
		Long: `Produce Avro intents to spine.intents in the Confluent wire format.

Input, in order of precedence:
  --count N        generate N sample intents (actor, kind and input from flags)
  --input TEXT     one intent from the flags
  stdin            one JSON intent per line, e.g.
                   {"actor":"agent-7","kind":"summarize","input":"hello"}
                   (missing intent_id, trace_id and timestamp are filled in)

Each record's topic, partition and offset is printed (use -q for a summary
only). --rate limits records per second; --contract v2 writes the v2 contract.`,
		Example: `  spine produce --count 1000 --rate 200
  echo '{"actor":"me","kind":"summarize","input":"hi"}' | spine produce
  spine produce --input "classify this" --kind classify --contract v2 --priority 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runProduce(cmd.Context(), a, cfg, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&f.count, "count", "c", 0, "generate this many sample intents instead of reading stdin")
	fl.Float64VarP(&f.rate, "rate", "r", 0, "records per second (0: as fast as possible)")
	fl.StringVar(&f.contract, "contract", "v1", "contract version to write: v1 or v2")
	fl.StringVar(&f.actor, "actor", "cli", "actor of generated or flag intents")
	fl.StringVar(&f.kind, "kind", "summarize", "intent kind of generated or flag intents")
	fl.StringVar(&f.input, "input", "", "produce one intent with this input text")
	fl.StringVar(&f.traceID, "trace-id", "", "trace id of the --input intent (default: random)")
	fl.Int32Var(&f.priority, "priority", 0, "priority (v2 only)")
	fl.StringVar(&f.tenant, "tenant", "", "tenant (v2 only)")
	fl.IntVar(&f.batch, "batch", 500, "records per produce batch when --rate is 0")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the summary, not one line per record")
	return cmd
}

func runProduce(ctx context.Context, a *app, cfg *stack.Config, f produceFlags) error {
	v, err := schemas.ParseContractVersion(f.contract)
	if err != nil {
		return usageError{err}
	}
	if f.count < 0 || f.rate < 0 || f.batch < 1 {
		return usageError{errors.New("--count, --rate and --batch must not be negative (batch at least 1)")}
	}
	if err := checkRegistry(ctx, cfg); err != nil {
		return err
	}
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	p, err := pipeline.NewProducer(codec, opts...)
	if err != nil {
		return err
	}
	defer p.Close()
	layout := pipeline.NewLayout(&cfg.Config)

	next, err := intentSource(a.stdin, f, v)
	if err != nil {
		return err
	}
	batch := f.batch
	var tick *time.Ticker
	if f.rate > 0 {
		batch = 1
		tick = time.NewTicker(time.Duration(float64(time.Second) / f.rate))
		defer tick.Stop()
	}
	start := time.Now()
	var sent int
	outs := make([]pipeline.Output, 0, batch)
	flush := func() error {
		if len(outs) == 0 {
			return nil
		}
		res, err := p.Produce(ctx, outs...)
		for i, r := range res {
			if r.Err != nil || f.quiet {
				continue
			}
			fmt.Fprintf(a.stdout, "%s/%d@%d key=%s\n", r.Topic, r.Partition, r.Offset, outs[i].Key)
		}
		if err != nil {
			return fmt.Errorf("produce to %s (is Kafka at %v reachable?): %w", layout.Intents(), cliBrokers(cfg), err)
		}
		sent += len(outs)
		outs = outs[:0]
		return nil
	}
	for {
		in, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		outs = append(outs, pipeline.Output{Topic: layout.Intents(), Key: []byte(in.TraceID), Value: in, Version: v})
		if len(outs) >= batch {
			if tick != nil {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-tick.C:
				}
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(a.stderr, "produced %d intents (%s) to %s in %s (%.0f/s)\n", sent, v, layout.Intents(), el.Round(time.Millisecond), float64(sent)/max(el.Seconds(), 1e-9))
	return nil
}

// intentSource returns an iterator over the intents to produce.
func intentSource(stdin io.Reader, f produceFlags, v schemas.ContractVersion) (func() (*schemas.Intent, error), error) {
	mk := func(input, trace string) *schemas.Intent {
		in := &schemas.Intent{IntentID: newID(), TraceID: trace, Actor: f.actor, Kind: f.kind, Input: input, SchemaVersion: v, Timestamp: time.Now().UTC()}
		if in.TraceID == "" {
			in.TraceID = thread.NewTraceID(in.Timestamp)
		}
		if v == schemas.V2 {
			in.Priority, in.Tenant = f.priority, f.tenant
		}
		return in
	}
	switch {
	case f.count > 0:
		i := 0
		return func() (*schemas.Intent, error) {
			if i >= f.count {
				return nil, io.EOF
			}
			i++
			return mk(fmt.Sprintf("sample intent %d: summarize the quarterly report", i), ""), nil
		}, nil
	case f.input != "":
		done := false
		return func() (*schemas.Intent, error) {
			if done {
				return nil, io.EOF
			}
			done = true
			return mk(f.input, f.traceID), nil
		}, nil
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return nil, usageError{errors.New("no intents: pipe JSON lines on stdin, or use --count N or --input TEXT")}
		}
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), schemas.MaxInputBytes*2)
	line := 0
	return func() (*schemas.Intent, error) {
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			in := mk("", "")
			in.TraceID = ""
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(in); err != nil {
				return nil, usageError{fmt.Errorf("stdin line %d: not a JSON intent: %w", line, err)}
			}
			if in.TraceID == "" {
				in.TraceID = thread.NewTraceID(time.Now())
			}
			if in.IntentID == "" {
				in.IntentID = newID()
			}
			if in.SchemaVersion == 0 {
				in.SchemaVersion = v
			}
			if err := in.Validate(); err != nil {
				return nil, usageError{fmt.Errorf("stdin line %d: %w", line, err)}
			}
			return in, nil
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		if line == 0 {
			return nil, usageError{errors.New("no intents: pipe JSON lines on stdin, or use --count N or --input TEXT")}
		}
		return nil, io.EOF
	}, nil
}

// newID returns a random 128-bit id in hex (an intent id).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
