package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
)

func newFlagsCmd(a *app) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "flags",
		Short: "Get, set and show the history of feature flags",
		Long: `Feature flags live on the compacted topic spine.flags. Every change is a
record with who changed it, why and when; every Spine process applies it
within a second, without a restart. The flag v2_rollout holds the canary
rollout: its weight, how the analyzer steps it, the thresholds and the phase.

Weights are percentages ("10", "12.5%") or basis points ("1000bp").

Settings of v2_rollout: ` + strings.Join(canary.RolloutSettings, ", ") + `.`,
		Example: `  spine flags get
  spine flags set v2_rollout weight=10% step_weight=10% max_weight=50% interval=30s --why "start v2"
  spine flags set v2_rollout latency_p99_max_ratio=1.2 min_samples=100
  spine flags set v2_rollout phase=paused --why "incident 42"
  spine flags history`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for Kafka")

	flagArg := func(args []string) (string, error) {
		if len(args) == 0 {
			return canary.FlagV2Rollout, nil
		}
		if args[0] != canary.FlagV2Rollout {
			return "", usageError{fmt.Errorf("unknown flag %q (known: %s)", args[0], canary.FlagV2Rollout)}
		}
		return args[0], nil
	}

	get := &cobra.Command{
		Use:   "get [flag]",
		Short: "Print a flag's current value (default v2_rollout) as JSON",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := flagArg(args)
			if err != nil {
				return err
			}
			return withFlags(cmd.Context(), a, timeout, func(ctx context.Context, f *canary.Rollouts) error {
				c, ok := f.Get(name)
				if !ok {
					raw, _ := json.Marshal(canary.DefaultRollout())
					c = pipeline.FlagChange{Flag: name, Value: raw, Who: "default", Why: "never set"}
				}
				return printJSON(a.stdout, c)
			})
		},
	}

	var who, why string
	set := &cobra.Command{
		Use:   "set <flag> <setting>=<value>...",
		Short: "Change settings of a flag; the change is recorded with --who and --why",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := flagArg(args[:1])
			if err != nil {
				return err
			}
			type kv struct{ k, v string }
			var kvs []kv
			for _, s := range args[1:] {
				k, v, ok := strings.Cut(s, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("%q is not setting=value (settings: %s)", s, strings.Join(canary.RolloutSettings, ", "))}
				}
				kvs = append(kvs, kv{strings.TrimSpace(k), v})
			}
			if who == "" {
				who = defaultWho()
			}
			if why == "" {
				why = "spine flags set " + strings.Join(args[1:], " ")
			}
			return withFlags(cmd.Context(), a, timeout, func(ctx context.Context, f *canary.Rollouts) error {
				r := f.Rollout()
				now := time.Now()
				if _, ok := f.Get(name); !ok {
					r.Started = now.UTC()
				}
				for _, p := range kvs {
					if err := r.Apply(p.k, p.v, now); err != nil {
						return usageError{err}
					}
				}
				if err := r.Validate(); err != nil {
					return usageError{err}
				}
				c, err := f.SetRollout(ctx, r, who, why)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "%s rev %d written to %s at offset %d\n", name, c.Rev, pipeline.NewLayout(&a.cfg.Config).Flags(), c.Offset)
				return printJSON(a.stdout, c)
			})
		},
	}
	set.Flags().StringVar(&who, "who", "", "who makes the change (default $USER@host)")
	set.Flags().StringVar(&why, "why", "", "why, in a sentence (default: the command line)")

	var format string
	history := &cobra.Command{
		Use:   "history [flag]",
		Short: "List every change of a flag, oldest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := flagArg(args)
			if err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("-f %q is not text or json", format)}
			}
			return withFlags(cmd.Context(), a, timeout, func(ctx context.Context, f *canary.Rollouts) error {
				return printHistory(a.stdout, f.History(name), format)
			})
		},
	}
	history.Flags().StringVarP(&format, "format", "f", "text", "text or json (one change per line)")

	cmd.AddCommand(get, set, history)
	return cmd
}

// withFlags runs a flag store against the configured cluster until it has
// read the whole flag topic, then calls fn.
func withFlags(ctx context.Context, a *app, timeout time.Duration, fn func(context.Context, *canary.Rollouts) error) error {
	cfg, err := a.config(ctx)
	if err != nil {
		return err
	}
	opts, err := cfg.KafkaOpts(cliBrokers(cfg)...)
	if err != nil {
		return err
	}
	f := canary.NewRollouts(opts, pipeline.NewLayout(&cfg.Config), pipeline.WithFlagsLogger(a.log))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(rctx) }()
	defer func() { stop(); <-done }()
	if err := f.WaitReady(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w; with no KAFKA_BROKERS the flags command talks to the embedded broker of a running `spine up` on 127.0.0.1:%d", err, cfg.KafkaPort)
		}
		return err
	}
	return fn(ctx, f)
}

func defaultWho() string {
	u := os.Getenv("USER")
	if u == "" {
		u = "unknown"
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return u + "@" + h
	}
	return u
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printHistory(w io.Writer, hist []pipeline.FlagChange, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, c := range hist {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REV\tAT\tWHO\tWEIGHT\tPHASE\tFAILURES\tWHY")
	for _, c := range hist {
		r, err := canary.RolloutOf(c)
		if err != nil {
			fmt.Fprintf(tw, "%d\t%s\t%s\t?\t?\t?\t%s (value does not decode: %v)\n", c.Rev, c.At.Format(time.RFC3339), c.Who, c.Why, err)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Rev, c.At.Format("2006-01-02T15:04:05.000Z07:00"), c.Who,
			strconv.FormatFloat(float64(r.Weight)/100, 'f', -1, 64)+"%", r.Phase, r.Failures, c.Why)
	}
	return tw.Flush()
}
