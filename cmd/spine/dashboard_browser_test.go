package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas/thread"
)

// chromiumPath finds a Chromium binary (Debian's chromium package, or a
// headless shell), "" when there is none.
func chromiumPath() (string, []string) {
	names := []string{"chromium", "chromium-browser", "chromium-headless-shell", "google-chrome", "google-chrome-stable"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, names
		}
	}
	return "", names
}

// screenshotDir is where the dashboard's screenshots go: $SPINE_SCREENSHOTS,
// or testdata-out/dashboard beside this test (ignored by git).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("SPINE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata-out", "dashboard")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// TestDashboardInBrowser drives the dashboard `spine up` serves in headless
// Chromium, after real traffic on the embedded stack: a v2 rollout whose
// canary fails and is rolled back, a policy that rejects some runs at
// admission and some artifacts, the drift monitor observing, and a poison
// record produced while the page is open. The page must load without a
// console error or exception; its figures must equal the /v1 API's; a
// run's view (reached by clicking its trace id, and by the search box)
// must list the run's events in order with its artifact fetched by id; the
// dead letter must appear, live; and every view is screenshotted.
func TestDashboardInBrowser(t *testing.T) {
	chrome, names := chromiumPath()
	if chrome == "" {
		t.Skipf("SKIPPED: no Chromium binary found (looked for %s in PATH); install Debian's chromium package (.ci/run does) to run the browser test", strings.Join(names, ", "))
	}
	t.Parallel()
	shots := screenshotDir(t)
	t.Logf("screenshots go to %s", shots)

	policy := writeFile(t, `version: 1
default: allow
rules:
  - name: no-mallory
    stage: admission
    effect: deny
    when: "intent.actor == 'mallory'"
    message: "mallory may not start runs"
  - name: low-score
    stage: artifact
    effect: deny
    when: "artifact.score < 0.62"
    message: "the artifact scored below 0.62"
`)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"SPINE_DATA_DIR":               t.TempDir(),
		"SPINE_KAFKA_PORT":             fmt.Sprint(testPort(t)),
		"SPINE_REGISTRY_ADDR":          fmt.Sprintf("127.0.0.1:%d", testPort(t)),
		"SPINE_HTTP_ADDR":              fmt.Sprintf("127.0.0.1:%d", testPort(t)),
		"SPINE_PARTITIONS":             "2",
		"SPINE_SHUTDOWN_TIMEOUT":       "10s",
		"SPINE_POLICY":                 policy,
		"SPINE_DRIFT_MODE":             "enforce",
		"SPINE_DRIFT_WINDOW":           "20",
		"SPINE_SYNTHETIC_FAILURE_RATE": "0.05",
		"SPINE_CANARY_FAILURE_RATE":    "0.6",
		"SPINE_RETRY_MAX_ATTEMPTS":     "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	stopUp := upOnce(t, cfg)
	base := "http://" + cfg.HTTPAddr
	run := func(ctx context.Context, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: cfg, log: slog.New(slog.DiscardHandler)}
		return execute(ctx, a, args), out.String(), errb.String()
	}

	// Traffic: a canary at 50 % that fails most of its calls, analysed
	// every second until it is rolled back; a few intents policy denies.
	if code, _, stderr := run(t.Context(), "flags", "set", "v2_rollout", "weight=50", "step_weight=25", "max_weight=100",
		"interval=1s", "min_samples=15", "failure_limit=1", "--who", "browser-test", "--why", "try v2 on half the traffic"); code != exitOK {
		t.Fatalf("flags set: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t.Context(), "produce", "--count", "5", "--actor", "mallory", "-q"); code != exitOK {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	traffic, stopTraffic := context.WithCancel(t.Context())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for traffic.Err() == nil {
			run(traffic, "produce", "--count", "100", "--rate", "40", "-q")
		}
	}()
	deadline := time.Now().Add(120 * time.Second)
	for {
		code, out, stderr := run(t.Context(), "flags", "get", "v2_rollout")
		var c pipeline.FlagChange
		if code != exitOK || json.Unmarshal([]byte(out), &c) != nil {
			t.Fatalf("flags get: exit %d: %s %s", code, out, stderr)
		}
		r, err := canary.RolloutOf(c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Phase == canary.PhaseRolledBack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary was not rolled back within 120s: %+v", r)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Some baseline-only traffic after the rollback.
	time.Sleep(5 * time.Second)
	stopTraffic()
	<-produced
	// The newest run completed, to open in the run view: on a loaded
	// machine the performance gate (a 2 s budget) can reject every run
	// of a stretch, and the drift gate (enforcing) every run until its
	// window clears; the page lists only the newest.
	runDeadline := time.Now().Add(2 * time.Minute)
	for try := 1; ; try++ {
		id := thread.NewTraceID(time.Now())
		if code, _, stderr := run(t.Context(), "produce", "--input", "a run to open", "--trace-id", id, "-q"); code != exitOK {
			t.Fatalf("produce: exit %d: %s", code, stderr)
		}
		var r struct {
			Outcome string `json:"outcome"`
			Gates   map[string]struct {
				Passed bool   `json:"passed"`
				Reason string `json:"reason"`
			} `json:"gates"`
		}
		getJSONT(t, base+"/v1/runs/"+id+"?wait=30s", &r)
		if r.Outcome == "completed" {
			break
		}
		var why []string
		for name, g := range r.Gates {
			if !g.Passed {
				why = append(why, name+": "+g.Reason)
			}
		}
		t.Logf("run %d (%s) ended %q: %s", try, id, r.Outcome, strings.Join(why, "; "))
		if time.Now().After(runDeadline) {
			t.Fatalf("no run produced one after another for 2 minutes completed (%d tried; the last: %q, %v)", try, r.Outcome, why)
		}
	}

	// The live view settles: every run received is finished, and its
	// counts equal the projections' (the 10 s windows, all time).
	var live projections.LiveSnapshot
	waitFor(t, 60*time.Second, "the live view to settle and equal /v1/stats/golden-path", func() (bool, string) {
		getJSONT(t, base+"/v1/live?last=15m", &live)
		var golden projections.GoldenReport
		getJSONT(t, base+"/v1/stats/golden-path", &golden)
		var rec, term, grec, gterm int64
		for _, g := range live.Groups {
			rec += g.Counts["intent.received"]
			for _, o := range []string{"completed", "failed", "rejected", "timed_out"} {
				term += g.Counts[o]
			}
		}
		for _, g := range golden.Groups {
			grec += g.Hops["intent.received"].Count
			gterm += g.Terminals
		}
		return rec > 0 && rec == term && rec == grec && term == gterm, fmt.Sprintf("live received %d finished %d; API received %d finished %d", rec, term, grec, gterm)
	})

	// The browser, with every console message and exception recorded.
	actx, cancelA := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1440, 1000), chromedp.Flag("disable-gpu", true))...)
	defer cancelA()
	var mu sync.Mutex
	var problems []string
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		// Called on the browser's reading goroutine: record and return.
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	}))
	defer cancelB()
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium %s: %v", chrome, err)
	}
	shoot := func(name string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", p, len(png))
	}
	text := func(sel string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ""; })()`, sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	num := func(n int64) string { return commas(n) }

	// Overview: the KPIs, the groups and the funnel equal /v1/live.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#overview"), chromedp.WaitVisible(chromedp.CSS("#kpi-received .v")), chromedp.WaitVisible(chromedp.CSS("#chart-tp .uplot"))); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}
	waitFor(t, 30*time.Second, "the overview to show the /v1/live figures", func() (bool, string) {
		getJSONT(t, base+"/v1/live?last=5m", &live)
		want := map[string]string{
			"#kpi-received .v":  num(live.Totals["intent.received"]),
			"#kpi-completed .v": num(live.Totals["completed"]),
			"#kpi-failed .v":    num(live.Totals["failed"]),
			"#kpi-rejected .v":  num(live.Totals["rejected"]),
			"#kpi-timed_out .v": num(live.Totals["timed_out"]),
		}
		for _, g := range live.Groups {
			row := fmt.Sprintf(`#groups tr[data-group="%s|%s"]`, g.Route, g.Version)
			want[row+" .received"] = num(g.Counts["intent.received"])
			want[row+" .completed"] = num(g.Counts["completed"])
			want[row+" .p99"] = num(g.Latency.P99)
		}
		for _, f := range live.Funnel {
			want[fmt.Sprintf(`#funnel .row[data-stage="%s"] .reached`, f.Stage)] = num(f.Reached)
		}
		for sel, v := range want {
			if got := text(sel); got != v {
				return false, fmt.Sprintf("%s shows %q, the API says %q", sel, got, v)
			}
		}
		return true, ""
	})
	if live.Totals["rejected"] == 0 || live.Totals["completed"] == 0 || len(live.Groups) < 2 {
		t.Fatalf("traffic without rejections, completions or a canary group: %+v", live.Totals)
	}
	// The screenshot over the last minute, which the traffic fills better.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?last=1m#overview"), chromedp.WaitVisible(chromedp.CSS("#chart-lat .uplot"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the overview over 1m", func() (bool, string) {
		got := text("#kpi-received .v")
		return got != "" && got != "0", "received " + got
	})
	shoot("1-overview")

	// The run view, by clicking a completed run's trace id: its events in
	// order, as /v1/runs/{id}/events lists them, and its artifact.
	var trace string
	for _, r := range live.Recent {
		if r.Outcome == "completed" {
			trace = r.TraceID
			break
		}
	}
	if trace == "" {
		t.Fatal("no completed run among the recent runs")
	}
	var evs projections.RunEvents
	getJSONT(t, base+"/v1/runs/"+trace+"/events", &evs)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#recent a.trace[data-trace="%s"]`, trace))),
		chromedp.WaitVisible(chromedp.CSS("#artifact-content"))); err != nil {
		t.Fatalf("open run %s: %v", trace, err)
	}
	types, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#waterfall .row.ev")].map((r) => r.dataset.type)`))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range evs.Events {
		want = append(want, e.EventType)
	}
	if !slices.Equal(types, want) {
		t.Fatalf("run view of %s lists %v; the API %v", trace, types, want)
	}
	if len(types) < 5 || types[0] != "intent.received" || types[len(types)-1] != "run.completed" || !slices.Contains(types, "artifact.delivered") || !slices.Contains(types, "gate.verdict") {
		t.Fatalf("run %s: events %v, want intent.received … artifact.delivered … gate.verdict … run.completed", trace, types)
	}
	var run1 projections.Run
	getJSONT(t, base+"/v1/runs/"+trace, &run1)
	resp, err := http.Get(base + "/v1/artifacts/" + run1.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	art, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := text("#artifact-content"); got == "" || got != strings.TrimSpace(string(art)) {
		t.Fatalf("artifact shown %q, served %q", got, art)
	}
	shoot("2-run-completed")

	// The search box opens a run too: one that failed, after its retry.
	var other string
	for _, f := range live.Funnel {
		for _, r := range f.Reasons {
			if other == "" && r.Example != "" && strings.HasPrefix(r.Reason, "failed") {
				other = r.Example
			}
		}
	}
	if other == "" {
		t.Fatalf("no example of a failed run in the funnel: %+v", live.Funnel)
	}
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#q"), other), chromedp.SendKeys(chromedp.CSS("#q"), "\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the searched run's view", func() (bool, string) {
		got := text("#run-trace")
		// SPINE_RETRY_MAX_ATTEMPTS=2: the synthetic failure is retried once.
		return got == other && text("#run-outcome .v") == "failed" && text("#run-attempts .v") == "2" && strings.Contains(text("#run-retries"), "run.retry_scheduled"),
			fmt.Sprintf("run view shows %q (%s, %s attempts): %s", got, text("#run-outcome .v"), text("#run-attempts .v"), text("#run-retries"))
	})
	shoot("3-run-failed")

	// Dead letters: a poison record produced while the page is open
	// appears with its code, source and bytes.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#dlq"), chromedp.WaitVisible(chromedp.CSS("#dlq-kpis"))); err != nil {
		t.Fatal(err)
	}
	poison := []byte("not avro: \x00\x01\x02 browser-test poison")
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:" + fmt.Sprint(cfg.KafkaPort)))
	if err != nil {
		t.Fatal(err)
	}
	layout := pipeline.NewLayout(&cfg.Config)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: string(layout.Intents()), Key: []byte("poison-trace"), Value: poison}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	var dl projections.DeadLettersSnapshot
	waitFor(t, 30*time.Second, "the dead letter on the page", func() (bool, string) {
		getJSONT(t, base+"/v1/dead-letters", &dl)
		if dl.Total == 0 || !strings.Contains(dl.Latest[0].Text, "browser-test poison") {
			return false, fmt.Sprintf("API: %d dead letters", dl.Total)
		}
		got := text("#dlq-list details:first-of-type pre.text")
		return got == strings.TrimSpace(dl.Latest[0].Text) && text("#dlq-total .v") == num(dl.Total), fmt.Sprintf("page shows %q, total %s", got, text("#dlq-total .v"))
	})
	if d := dl.Latest[0]; d.Hex != hex.EncodeToString(poison) || d.Topic != string(layout.Intents()) || d.Code == "" || d.Reason == "" {
		t.Fatalf("dead letter %+v: want the poison's bytes from %s with a code and a reason", d, layout.Intents())
	}
	var shown strings.Builder // the hex dump without its offsets
	for _, line := range strings.Split(text("#dlq-list details:first-of-type pre.hex"), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			shown.WriteString(strings.Join(f[1:], ""))
		}
	}
	if shown.String() != hex.EncodeToString(poison) {
		t.Fatalf("hex shown %q, want %x", shown.String(), poison)
	}
	shoot("4-dead-letters")

	// Canary: rolled back, every analysis listed.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#canary"), chromedp.WaitVisible(chromedp.CSS("#chart-weight .uplot"))); err != nil {
		t.Fatal(err)
	}
	getJSONT(t, base+"/v1/live?last=5m", &live)
	waitFor(t, 15*time.Second, "the canary view", func() (bool, string) {
		rows, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#analyses tr").length - 1`))
		return text("#canary-phase .v") == "rolled_back" && rows == min(len(live.Canary), 30) && strings.Contains(text("#analyses"), "rollback"),
			fmt.Sprintf("phase %q, %d analyses shown of %d", text("#canary-phase .v"), rows, len(live.Canary))
	})
	shoot("5-canary")

	// Gates: each gate's counts equal the API's.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?last=1m#gates"), chromedp.WaitVisible(chromedp.CSS("#chart-gates .uplot"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the gates view to show the /v1/live figures", func() (bool, string) {
		getJSONT(t, base+"/v1/live?last=1m", &live)
		for _, g := range live.Gates {
			row := fmt.Sprintf(`#gates tr[data-gate="%s"]`, g.Name)
			if p, f := text(row+" .passed"), text(row+" .failed"); p != num(g.Passed) || f != num(g.Failed) {
				return false, fmt.Sprintf("gate %s shows %s/%s, the API %d/%d", g.Name, p, f, g.Passed, g.Failed)
			}
		}
		if len(live.Drift) == 0 || !strings.Contains(text("#drift"), "drift windows") {
			var names []string
			for _, g := range live.Gates {
				names = append(names, fmt.Sprintf("%s %d/%d", g.Name, g.Passed, g.Failed))
			}
			return false, fmt.Sprintf("%d drift windows (gates %s); the page: %s", len(live.Drift), strings.Join(names, ", "), text("#drift"))
		}
		return len(live.Gates) > 0 && strings.HasPrefix(text("#policy-version"), "sha256:"), "policy version " + text("#policy-version")
	})
	shoot("6-gates")

	mu.Lock()
	if len(problems) > 0 {
		t.Fatalf("the page logged %d console errors or exceptions:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	mu.Unlock()

	// An open page does not hold the shutdown: its event stream ends with
	// the process, well before SPINE_SHUTDOWN_TIMEOUT (10s).
	if took := stopUp(); took > 8*time.Second {
		t.Fatalf("spine up took %s to stop with the dashboard open", took)
	}
}

// commas prints n as the page does (en-US grouping).
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

func getJSONT(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
