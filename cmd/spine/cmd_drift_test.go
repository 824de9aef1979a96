package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/schemas/thread"
)

// `spine drift status` prints what spine.drift.status holds; `spine drift
// reset` writes a reset record the monitor reads.
func TestCLIDriftStatusAndReset(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": strings.Join(brokers, ","), "SPINE_TOPIC_PREFIX": kafkatest.Prefix(t), "SPINE_PARTITIONS": "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	l := pipeline.NewLayout(&cfg.Config)
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), l, -1); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		return execute(t.Context(), a, args), out.String(), errb.String()
	}

	if code, out, stderr := run("drift", "status"); code != exitOK || out != "" {
		t.Fatalf("status with none: exit %d out %q err %q", code, out, stderr)
	}
	st := gates.DriftStatus{Kind: "summarize", Route: "canary", Drifted: true, Window: 3, Rule: "ks:score", Measured: 0.4, Threshold: 0.2,
		NRef: 200, NCur: 200, At: time.Now().UTC().Truncate(time.Millisecond)}
	b, _ := json.Marshal(st)
	cl := kafkatest.Client(t, brokers)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: string(l.DriftStatus()), Key: []byte(thread.DriftKey("summarize", "canary")), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run("drift", "status")
	var got gates.DriftStatus
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Kind != "summarize" || !got.Drifted || got.Window != 3 || got.Rule != "ks:score" {
		t.Fatalf("status: exit %d out %q err %q", code, out, stderr)
	}

	code, out, stderr = run("drift", "reset", "summarize", "canary")
	if code != exitOK || !strings.Contains(out, "reset summarize on canary") || !strings.Contains(out, string(l.DriftSamples())) {
		t.Fatalf("reset: exit %d out %q err %q", code, out, stderr)
	}
	rd := kafkatest.Client(t, brokers, kgo.ConsumeTopics(string(l.DriftSamples())), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := rd.PollFetches(t.Context())
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Key) != "summarize/canary" {
		t.Fatalf("samples topic: %v", recs)
	}
	if s, err := drift.DecodeSample(recs[0].Value); err != nil || !s.IsReset() || s.Kind != "summarize" || s.Route != "canary" {
		t.Errorf("reset record decodes as %+v, %v", s, err)
	}
	if code, _, _ := run("drift", "reset", "summarize"); code == exitOK {
		t.Error("reset with one argument succeeded")
	}
}
