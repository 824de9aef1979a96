package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas/thread"
)

// fullStack wires the whole stack as `spine up` does (registry, processors,
// projections) on a test broker and returns a CLI runner that talks to it.
func fullStack(t *testing.T) func(stdin string, args ...string) (int, string, string) {
	t.Helper()
	run, _, _ := fullStackCfg(t)
	return run
}

// fullStackCfg is fullStack that also returns the CLI's config and the
// registry URL.
func fullStackCfg(t *testing.T) (func(stdin string, args ...string) (int, string, string), *stack.Config, string) {
	t.Helper()
	run, cfg := stackWith(t, nil)
	return run, cfg, cfg.RegistryURL
}

// stackWith starts the whole stack on a test broker, with env over the
// test's settings, and returns a CLI runner that talks to it and the CLI's
// config (the registry's URL and the API's address filled in).
func stackWith(t *testing.T, env map[string]string) (func(stdin string, args ...string) (int, string, string), *stack.Config) {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	m := map[string]string{
		"KAFKA_BROKERS":       strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX":  kafkatest.Prefix(t),
		"SPINE_PARTITIONS":    "2",
		"SPINE_REGISTRY_ADDR": "127.0.0.1:0",
	}
	maps.Copy(m, env)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(m))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.EnsureTopics(t.Context(), kadm.NewClient(kafkatest.Client(t, brokers)), pipeline.NewLayout(&cfg.Config), -1); err != nil {
		t.Fatal(err)
	}
	log, metrics := slog.New(slog.DiscardHandler), prometheus.NewRegistry()
	url, runRegistry, err := upRegistry(t.Context(), cfg, brokers, log, metrics, nil)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: brokers, RegistryURL: url, Log: log, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, runRegistry, st.Run)
	// The projections API, where `spine trace` finds a run's window.
	api := httptest.NewServer(st.Routes)
	t.Cleanup(api.Close)
	cliCfg := *cfg
	cliCfg.RegistryURL = url
	cliCfg.HTTPAddr = api.Listener.Addr().String()
	return func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, cfg: &cliCfg, log: slog.New(slog.DiscardHandler)}
		code := execute(t.Context(), a, args)
		return code, out.String(), errb.String()
	}, &cliCfg
}

// The README's tour: produce intents, consume gate.*, trace one run.
func TestCLIProduceConsumeTrace(t *testing.T) {
	t.Parallel()
	run := fullStack(t)

	// Generated intents, v2.
	code, out, stderr := run("", "produce", "--count", "8", "--contract", "v2", "--priority", "3")
	if code != exitOK {
		t.Fatalf("produce --count: exit %d: %s", code, stderr)
	}
	if n := strings.Count(out, "spine.intents/"); n != 8 {
		t.Errorf("produce printed %d topic/partition@offset lines, want 8:\n%s", n, out)
	}
	// Their trace ids are minted with the time first.
	_, minted, _ := strings.Cut(strings.SplitN(out, "\n", 2)[0], "key=")
	if at, ok := thread.TraceTime(minted, time.Now()); !ok || time.Since(at) > time.Minute {
		t.Errorf("produce minted trace id %q, whose time is %s, %v", minted, at, ok)
	}
	// JSON lines on stdin, v1; the second's id has a time that is not
	// its own (an hour ahead, by chance), the third's none.
	stranger := thread.TraceIDAt(time.Now().Add(30*time.Minute), [12]byte{11: 1})
	stdin := `{"actor":"alice","kind":"classify","input":"is this spam?","trace_id":"trace-cli-1"}
{"actor":"bob","kind":"summarize","input":"a long text","trace_id":"` + stranger + `"}
{"actor":"bob","kind":"summarize","input":"a long text"}
`
	if code, _, stderr = run(stdin, "produce"); code != exitOK {
		t.Fatalf("produce stdin: exit %d: %s", code, stderr)
	}
	// Bad stdin is a usage error naming the line.
	if code, _, stderr = run("{\"actor\":\"x\",\"nope\":1}\n", "produce"); code != exitUsage || !strings.Contains(stderr, "line 1") {
		t.Errorf("bad stdin: exit %d, %q", code, stderr)
	}

	// Every run ends with a verdict on gate.verdict, read with 'gate.*'.
	deadline := time.Now().Add(60 * time.Second)
	verdicts := map[string]bool{}
	for len(verdicts) < 11 && time.Now().Before(deadline) {
		code, out, stderr = run("", "consume", "gate.*", "-o", "start", "-n", "30")
		if code != exitOK {
			t.Fatalf("consume: exit %d: %s", code, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Topic     string          `json:"topic"`
				Key       string          `json:"key"`
				Value     json.RawMessage `json:"value"`
				Partition *int32          `json:"partition"`
				Offset    *int64          `json:"offset"`
				Timestamp int64           `json:"timestamp"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("consume line not JSON: %v: %q", err, line)
			}
			if !strings.Contains(r.Topic, "gate.") || r.Partition == nil || r.Offset == nil || r.Timestamp == 0 {
				t.Fatalf("consume line lacks rpk fields: %q", line)
			}
			if strings.HasSuffix(r.Topic, "gate.verdict") {
				verdicts[r.Key] = true
			}
		}
		if len(verdicts) < 11 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if len(verdicts) != 11 {
		t.Fatalf("saw verdicts for %d runs, want 11", len(verdicts))
	}
	if !verdicts["trace-cli-1"] {
		t.Fatal("no verdict for trace-cli-1")
	}

	// The run's timeline, in FSM order, from intent to completion. The
	// verdict is seen, but run.completed follows it in the orchestrator's
	// next transaction (and run.gating may come after the verdict), so the
	// trace is read again until it holds the whole run.
	for deadline := time.Now().Add(60 * time.Second); ; {
		code, out, stderr = run("", "trace", "trace-cli-1")
		if code != exitOK {
			t.Fatalf("trace: exit %d: %s", code, stderr)
		}
		if strings.Contains(out, "run.completed") && strings.Contains(out, "run.gating") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace-cli-1 never showed run.completed and run.gating:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The orchestrator's and the data plane's own events are causally
	// ordered; the gates' verdict runs concurrently with run.gating (it may
	// even overtake it), but follows the artifact and precedes completion.
	pos := func(step string) int {
		i := strings.Index(out, step)
		if i < 0 {
			t.Fatalf("trace lacks %q:\n%s", step, out)
		}
		return i
	}
	order := []string{"intent ", "intent.received", "run.routed", "run.dispatch", "dataplane.dispatched", "artifact.delivered", "run.completed"}
	for i := 1; i < len(order); i++ {
		if pos(order[i-1]) > pos(order[i]) {
			t.Fatalf("trace shows %q before %q:\n%s", order[i], order[i-1], out)
		}
	}
	if v := pos("gate.verdict"); v < pos("artifact.delivered") || v > pos("run.completed") {
		t.Fatalf("gate.verdict is not between artifact.delivered and run.completed:\n%s", out)
	}
	if g := pos("run.gating"); g < pos("artifact.delivered") || g > pos("run.completed") {
		t.Fatalf("run.gating is not between artifact.delivered and run.completed:\n%s", out)
	}
	// The read is one partition per topic (the trace id's), within the
	// run's window from the view; --scan reads those partitions from their
	// start and finds the same records.
	p := partitionOf([]byte("trace-cli-1"), "", 2)
	var viewOut string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, viewOut, stderr = run("", "trace", "trace-cli-1")
		if code == exitOK && strings.Contains(stderr, "run window from the projections view") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace never read within the view's window: exit %d: %s", code, stderr)
		}
	}
	for _, f := range strings.Fields(stderr[strings.LastIndex(stderr, ": ")+2:]) {
		if !strings.Contains(f, fmt.Sprintf("/%d@", p)) {
			t.Errorf("trace read %s, not partition %d only: %s", f, p, stderr)
		}
	}
	code, scanOut, scanErr := run("", "trace", "--scan", "trace-cli-1")
	if code != exitOK || !strings.Contains(scanErr, "from the partitions' start") {
		t.Fatalf("trace --scan: exit %d: %s", code, scanErr)
	}
	if strings.Count(scanOut, "\n") != strings.Count(viewOut, "\n") {
		t.Errorf("trace --scan found other records than the windowed read:\n%s\n%s\n%s\n%s", scanErr, scanOut, stderr, viewOut)
	}
	t.Logf("trace: %s", stderr)
	t.Logf("trace --scan: %s", scanErr)
	// Without the view, a minted id's time is where the read starts; an id
	// whose time is not its own is read again from the start.
	const noView = "http://127.0.0.1:1"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, out, stderr = run("", "trace", "--api", noView, minted)
		if code == exitOK && strings.Contains(out, "run.completed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s never showed run.completed: exit %d:\n%s\n%s", minted, code, stderr, out)
		}
	}
	if !strings.Contains(stderr, "run window from the time in the trace id") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("trace %s without the view did not read from its id's time:\n%s", minted, stderr)
	}
	_, scanOut, _ = run("", "trace", "--scan", minted)
	if strings.Count(scanOut, "\n") != strings.Count(out, "\n") {
		t.Errorf("trace --scan %s found other records than the read from its id's time:\n%s\n%s", minted, scanOut, out)
	}
	code, out, stderr = run("", "trace", "--api", noView, stranger)
	if code != exitOK || !strings.Contains(out, "intent.received") || !strings.Contains(stderr, "nothing of the run from the time in its id") {
		t.Errorf("trace %s (an id whose time is not its own): exit %d:\n%s\n%s", stranger, code, stderr, out)
	}
	if code, _, stderr = run("", "trace", "no-such-trace"); code != exitError || !strings.Contains(stderr, "no record of trace") {
		t.Errorf("unknown trace: exit %d, %q", code, stderr)
	}
	// Text format names the gate outcome.
	code, out, _ = run("", "consume", "gate.verdict", "-n", "1", "-f", "text")
	if code != exitOK || !strings.Contains(out, "gate.verdict") || !strings.Contains(out, "passed=") {
		t.Errorf("consume -f text: exit %d, %q", code, out)
	}
}

func TestCLIConsumeRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"consume", "gate.*", "-o", "middle"},
		{"consume", "gate.*", "-f", "xml"},
		{"consume", "gate.(", "-n", "1"},
		{"consume"},
		{"produce", "--contract", "v9", "--count", "1"},
	} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}
