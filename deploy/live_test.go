package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spinerun/spine/pipeline/kafkatest"
)

// liveMetrics are the metrics a golden-path run must put on /metrics: the
// series the dashboards and rules are built on (dead letters and the
// blocked gauge appear only when something goes wrong).
var liveMetrics = []string{
	"spine_golden_path_events_total",
	"spine_golden_path_latency_seconds",
	"spine_runs_total",
	"spine_run_duration_seconds",
	"spine_gate_checks_total",
	"spine_processor_records_total",
	"spine_processor_transactions_total",
	"spine_processor_transaction_seconds",
	"spine_kafka_produce_bytes_total",
	"spine_kafka_fetch_bytes_total",
}

// TestLiveMetrics builds the spine binary, runs `spine up` on the test
// broker (kfake, or real Kafka with KAFKA_BROKERS), produces intents with
// `spine produce`, and scrapes /metrics: the golden-path series appear, with
// the hops the rules select, and every metric the dashboards and rules query
// is served (or, for the ones that only count trouble, registered).
func TestLiveMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the spine binary")
	}
	t.Parallel()
	bin := buildSpine(t) // before the clock starts: a cold build under load takes minutes
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	brokers := kafkatest.Brokers(t)
	httpAddr, regAddr := freeAddr(t), freeAddr(t)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX=" + kafkatest.Prefix(t),
		"SPINE_PARTITIONS=2",
		"SPINE_HTTP_ADDR=" + httpAddr,
		"SPINE_REGISTRY_ADDR=" + regAddr,
		"SPINE_DATA_DIR=" + t.TempDir(),
		"SPINE_INSTANCE_ID=live",
		"SPINE_LOG_LEVEL=warn",
	}

	up := startProcess(t, "spine up", bin, []string{"up"}, env)

	base := "http://" + httpAddr
	waitFor(ctx, t, up, "spine up answers /healthz", func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})

	const n = 20
	produce := exec.CommandContext(ctx, bin, "produce", "--count", fmt.Sprint(n))
	produce.Env = append(slices.Clone(env), "SCHEMA_REGISTRY_URL=http://"+regAddr)
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("spine produce: %v\n%s", err, out)
	}

	var families map[string]*dto.MetricFamily
	waitFor(ctx, t, up, fmt.Sprintf("%d runs end on /metrics", n), func() error {
		var err error
		if families, err = scrape(base + "/metrics"); err != nil {
			return err
		}
		var runs float64
		if f := families["spine_runs_total"]; f != nil {
			for _, m := range f.GetMetric() {
				runs += m.GetCounter().GetValue()
			}
		}
		if runs < n {
			return fmt.Errorf("spine_runs_total is %v", runs)
		}
		return nil
	})

	for _, name := range liveMetrics {
		if families[name] == nil {
			t.Errorf("/metrics has no %s after %d runs", name, n)
		}
	}
	hops := map[string]bool{}
	for _, m := range families["spine_golden_path_events_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "hop" {
				hops[l.GetValue()] = true
			}
		}
	}
	for _, hop := range []string{"intent.received", "dataplane.dispatched", "artifact.delivered"} {
		if !hops[hop] {
			t.Errorf("spine_golden_path_events_total has no hop=%q series (the rules select it)", hop)
		}
	}
	if !hops["gate.passed"] && !hops["gate.failed"] {
		t.Error("spine_golden_path_events_total has no gate hop")
	}

	// Every metric the dashboards and rules query is on the live /metrics,
	// except the few that only appear when something goes wrong; those must
	// at least be registered by the binary's collectors.
	onTrouble := map[string]bool{
		"spine_dlq_records_total": true, "spine_processor_blocked": true,
		"spine_kafka_connect_errors_total": true, "spine_kafka_read_errors_total": true,
	}
	known := spineMetrics(t)
	for name, where := range queriedMetrics(t) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && families[b].GetType() == dto.MetricType_HISTOGRAM {
				base = b
			}
		}
		switch {
		case families[base] != nil:
		case onTrouble[base] && known[base]:
		default:
			t.Errorf("%s queries %s, which `spine up` does not serve after %d runs", where, name, n)
		}
	}
}

// queriedMetrics returns the Spine metrics the rules and dashboards read,
// each with one place that reads it.
func queriedMetrics(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	recorded := map[string]bool{}
	var exprs [][2]string
	for file, rf := range loadRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
				exprs = append(exprs, [2]string{file + " " + r.Record + r.Alert, r.Expr})
			}
		}
	}
	paths, err := filepath.Glob(filepath.Join(root, "deploy/grafana/dashboards/*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, pn := range ps {
				walk(pn.Panels)
				for _, tg := range pn.Targets {
					exprs = append(exprs, [2]string{filepath.Base(p) + " panel " + strconv.Quote(pn.Title), expandGrafana(tg.Expr)})
				}
			}
		}
		walk(d.Panels)
	}
	for _, e := range exprs {
		used, err := checkPromQL(e[1])
		if err != nil {
			t.Fatalf("%s: %v", e[0], err)
		}
		for _, m := range used {
			if strings.HasPrefix(m, "spine_") && !recorded[m] {
				out[m] = e[0]
			}
		}
	}
	return out
}

var spineBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// buildSpine builds the spine binary once per test process.
func buildSpine(t *testing.T) string {
	t.Helper()
	spineBin.once.Do(func() {
		spineBin.dir, spineBin.err = os.MkdirTemp("", "spine-deploy-test-")
		if spineBin.err != nil {
			return
		}
		spineBin.path = filepath.Join(spineBin.dir, "spine")
		build := exec.Command("go", "build", "-o", spineBin.path, "./cmd/spine")
		build.Dir = root
		spineBin.out, spineBin.err = build.CombinedOutput()
	})
	if spineBin.err != nil {
		t.Fatalf("go build ./cmd/spine: %v\n%s", spineBin.err, spineBin.out)
	}
	return spineBin.path
}

// TestMain removes the binary buildSpine made.
func TestMain(m *testing.M) {
	code := m.Run()
	if spineBin.dir != "" {
		os.RemoveAll(spineBin.dir)
	}
	os.Exit(code)
}

// scrape fetches and parses a Prometheus text exposition.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// child is a spine process a test started: done closes when it exited,
// and err is then its exit error.
type child struct {
	done chan struct{}
	err  error
}

// startProcess starts bin with args and env, keeping its output. At the
// test's end it is stopped (SIGTERM, SIGKILL after 30s) and, if the test
// failed, its output logged.
func startProcess(t *testing.T, name, bin string, args, env []string) *child {
	t.Helper()
	var logs lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &child{done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
			t.Errorf("%s did not stop within 30s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s (%s) output:\n%s", name, strings.Join(args, " "), logs.String())
		}
	})
	return c
}

// waitFor polls check until it returns nil, the deadline passes, or the
// process c (nil: none) exits.
func waitFor(ctx context.Context, t *testing.T, c *child, what string, check func() error) {
	t.Helper()
	var exited <-chan struct{}
	if c != nil {
		exited = c.done
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v (last: %v)", what, ctx.Err(), err)
		case <-exited:
			t.Fatalf("waiting until %s: the process exited: %v (last: %v)", what, c.err, err)
		case <-tick.C:
		}
	}
}

// freeAddr returns a loopback address with a port that was free just now,
// below Linux's ephemeral range (32768-60999) where the many outgoing
// connections of parallel tests cannot take it before the process binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err == nil {
			defer l.Close()
			return l.Addr().String()
		}
	}
	t.Fatal("no free port in 20000-31999 after 100 tries")
	return ""
}

// lockedBuffer is a bytes.Buffer safe for the child's two output streams.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
