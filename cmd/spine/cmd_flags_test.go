package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/canary"
)

// testApp returns an app configured for a test broker and topic prefix.
func testApp(t *testing.T) func(args ...string) (int, string, string) {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":      strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX": kafkatest.Prefix(t),
		"SPINE_PARTITIONS":   "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), pipeline.NewLayout(&cfg.Config), -1); err != nil {
		t.Fatal(err)
	}
	return func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		code := execute(t.Context(), a, args)
		return code, out.String(), errb.String()
	}
}

func TestCLIFlagsSetGetHistory(t *testing.T) {
	t.Parallel()
	run := testApp(t)
	code, out, stderr := run("flags", "get")
	if code != exitOK || !strings.Contains(out, `"never set"`) {
		t.Fatalf("get before any set: exit %d out %q err %q", code, out, stderr)
	}
	if code, _, stderr = run("flags", "set", "v2_rollout", "weight=12.5%", "interval=2s", "--who", "alice", "--why", "start v2"); code != exitOK {
		t.Fatalf("set: exit %d: %s", code, stderr)
	}
	if code, _, stderr = run("flags", "set", "v2_rollout", "max_weight=80", "--who", "bob"); code != exitOK {
		t.Fatalf("set: exit %d: %s", code, stderr)
	}
	code, out, _ = run("flags", "get", "v2_rollout")
	var c pipeline.FlagChange
	if err := json.Unmarshal([]byte(out), &c); err != nil || code != exitOK {
		t.Fatalf("get: exit %d, %v: %q", code, err, out)
	}
	r, err := canary.RolloutOf(c)
	if err != nil || r.Weight != 1250 || r.MaxWeight != 8000 || c.Rev != 2 || c.Who != "bob" {
		t.Fatalf("current: rev %d who %s rollout %+v (%v)", c.Rev, c.Who, r, err)
	}
	code, out, _ = run("flags", "history")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.Contains(lines[1], "alice") || !strings.Contains(lines[1], "12.5%") || !strings.Contains(lines[1], "start v2") || !strings.Contains(lines[2], "bob") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	code, out, _ = run("flags", "history", "-f", "json")
	if code != exitOK || strings.Count(out, "\n") != 2 {
		t.Fatalf("history json: exit %d\n%s", code, out)
	}
}

func TestCLIFlagsRejectsBadSettings(t *testing.T) {
	t.Parallel()
	run := testApp(t)
	for _, args := range [][]string{
		{"flags", "set", "v2_rollout", "weight=150"},
		{"flags", "set", "v2_rollout", "colour=red"},
		{"flags", "set", "v2_rollout", "weight"},
		{"flags", "set", "other_flag", "weight=1"},
		{"flags", "set", "v2_rollout", "phase=done"},
	} {
		code, _, stderr := run(args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and a reason", args, code, stderr)
		}
	}
	if code, out, _ := run("flags", "history"); code != exitOK || strings.Count(out, "\n") != 1 {
		t.Errorf("a refused setting was recorded:\n%s", out)
	}
}

func TestFlagsHandlerServesRolloutAndHistory(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	l := pipeline.Layout{Prefix: kafkatest.Prefix(t), Partitions: 1}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), l, -1); err != nil {
		t.Fatal(err)
	}
	f := canary.NewRollouts([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r := canary.DefaultRollout()
	r.Weight = 300
	if _, err := f.SetRollout(t.Context(), r, "carol", "try"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stack.FlagsHandler(f))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Rollout canary.Rollout        `json:"v2_rollout"`
		Current pipeline.FlagChange   `json:"current"`
		History []pipeline.FlagChange `json:"history"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Rollout.Weight != 300 || body.Current.Who != "carol" || len(body.History) != 1 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("body %+v", body)
	}
}
