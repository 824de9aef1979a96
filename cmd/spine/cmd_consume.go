package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

type consumeFlags struct {
	offset string
	num    int
	format string
	group  string
}

func newConsumeCmd(a *app) *cobra.Command {
	var f consumeFlags
	cmd := &cobra.Command{
		Use:   "consume <topic-regex>",
		Short: "Consume topics matching an anchored regex (e.g. 'gate.*') as JSON lines",
		Long: `Consume every topic whose whole name matches the regex (anchored: 'gate.*'
matches gate.schema, gate.verdict, ... but not spine.gate) with read_committed
isolation. Values in the Confluent wire format are decoded with the writer's
schema by id, so v1 and v2 records both print; anything else prints raw.

JSON output uses rpk's field names: topic, key, value, headers, timestamp,
partition, offset. The topic prefix (SPINE_TOPIC_PREFIX) is added to the regex.`,
		Example: `  spine consume 'gate.*' -o start -n 10
  spine consume 'gate.verdict' -f text
  spine consume spine.dlq -o -5`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runConsume(cmd.Context(), a, cfg, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.offset, "offset", "o", "start", "where to start: start, end, or -N (the last N records of each partition)")
	fl.IntVarP(&f.num, "num", "n", 0, "stop after this many records (0: follow until Ctrl-C)")
	fl.StringVarP(&f.format, "format", "f", "json", "output format: json or text")
	fl.StringVarP(&f.group, "group", "g", "", "consume in this consumer group and commit offsets (default: no group)")
	return cmd
}

// consumedRecord is one record as printed, with rpk's field names.
type consumedRecord struct {
	Topic     string            `json:"topic"`
	Key       string            `json:"key"`
	Value     any               `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
	Timestamp int64             `json:"timestamp"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	// SchemaID and Contract say how the value was decoded.
	SchemaID    int    `json:"schema_id,omitempty"`
	Contract    string `json:"contract_version,omitempty"`
	DecodeError string `json:"decode_error,omitempty"`
}

func parseStartOffset(s string) (kgo.Offset, error) {
	switch s {
	case "start", "oldest", "beginning":
		return kgo.NewOffset().AtStart(), nil
	case "end", "newest":
		return kgo.NewOffset().AtEnd(), nil
	}
	if strings.HasPrefix(s, "-") {
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err == nil && n >= 0 {
			return kgo.NewOffset().AtEnd().Relative(-n), nil
		}
	}
	return kgo.Offset{}, fmt.Errorf("--offset %q: want start, end or -N", s)
}

func runConsume(ctx context.Context, a *app, cfg *stack.Config, pattern string, f consumeFlags) error {
	if f.format != "json" && f.format != "text" {
		return usageError{fmt.Errorf("--format %q: want json or text", f.format)}
	}
	if f.num < 0 {
		return usageError{errors.New("--num must not be negative")}
	}
	start, err := parseStartOffset(f.offset)
	if err != nil {
		return usageError{err}
	}
	re := "^" + regexp.QuoteMeta(cfg.TopicPrefix) + "(?:" + pattern + ")$"
	if _, err := regexp.Compile(re); err != nil {
		return usageError{fmt.Errorf("topic regex %q: %w", pattern, err)}
	}
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumeRegex(), kgo.ConsumeTopics(re),
		kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.MetadataMinAge(time.Second), // see new gate topics quickly
	)
	if f.group != "" {
		opts = append(opts, kgo.ConsumerGroup(f.group))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	seen := 0
	for f.num == 0 || seen < f.num {
		fs := cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil {
			return nil // Ctrl-C: a normal end
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s[%d]: %w", t, p, err))
		})
		if ferr != nil {
			return fmt.Errorf("%w (is Kafka at %v reachable?)", ferr, cliBrokers(cfg))
		}
		for _, r := range fs.Records() {
			if f.num > 0 && seen >= f.num {
				break
			}
			seen++
			out := decodeRecord(ctx, codec, r)
			if f.format == "text" {
				printText(a, out)
				continue
			}
			if err := enc.Encode(out); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeRecord(ctx context.Context, codec *pipeline.SchemaCodec, r *kgo.Record) consumedRecord {
	out := consumedRecord{
		Topic: r.Topic, Key: printable(r.Key), Timestamp: r.Timestamp.UnixMilli(),
		Partition: r.Partition, Offset: r.Offset,
	}
	if len(r.Headers) > 0 {
		out.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			out.Headers[h.Key] = printable(h.Value)
		}
	}
	if len(r.Value) >= 5 && r.Value[0] == 0 {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, id, ver, err := codec.Serde().Decode(dctx, r.Value)
		cancel()
		if err == nil {
			out.Value, out.SchemaID, out.Contract = v, id, ver.String()
			return out
		}
		out.DecodeError = err.Error()
	}
	out.Value = printable(r.Value)
	return out
}

// printable returns b as text when it is valid UTF-8, else base64.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

func printText(a *app, r consumedRecord) {
	ts := time.UnixMilli(r.Timestamp).UTC().Format("15:04:05.000")
	fmt.Fprintf(a.stdout, "%s %s[%d]@%d key=%s %s\n", ts, r.Topic, r.Partition, r.Offset, r.Key, describe(r.Value))
}

// describe is a one-line human summary of a decoded value.
func describe(v any) string {
	switch v := v.(type) {
	case *schemas.RuntimeEvent:
		s := fmt.Sprintf("%s state=%s %s", v.EventType, v.State, v.SchemaVersion)
		if v.Route != "" {
			s += " route=" + v.Route
		}
		if v.Gate != nil {
			s += fmt.Sprintf(" gate=%s passed=%t measured=%g threshold=%g reason=%q", v.Gate.Name, v.Gate.Passed, v.Gate.Measured, v.Gate.Threshold, v.Gate.Reason)
		}
		if v.Attempt > 0 {
			s += fmt.Sprintf(" attempt=%d", v.Attempt)
		}
		if from, to := v.Attributes[thread.AttrFallbackFrom], v.Attributes[thread.AttrFallbackTo]; to != "" {
			s += fmt.Sprintf(" fallback=%s→%s", from, to)
		}
		if v.EventType == thread.RunDispatch {
			s += " kind=" + v.Intent // a fallback agent's, after run.fallback
		}
		if v.Artifact != nil {
			s += fmt.Sprintf(" artifact=%s %s %dB score=%.3f latency=%dms", v.ArtifactID, v.Artifact.ContentType, v.Artifact.SizeBytes, v.Artifact.Score, v.Artifact.LatencyMs)
		}
		if v.Input != "" {
			s += fmt.Sprintf(" input=%dB", len(v.Input))
		}
		if v.Error != nil {
			s += fmt.Sprintf(" error=%q", *v.Error)
		}
		return s
	case *schemas.Intent:
		return fmt.Sprintf("intent %s kind=%s actor=%s %s", v.IntentID, v.Kind, v.Actor, v.SchemaVersion)
	case string:
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}
