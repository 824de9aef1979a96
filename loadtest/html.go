package loadtest

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"

	"github.com/spinerun/spine/projections"
)

// The report page is one self-contained HTML file: CSS inline, charts as
// inline SVG drawn here, no script and nothing fetched from elsewhere.

var routeColor = map[string]string{"baseline": "#2b6cb0", "canary": "#dd6b20"}

func colorOf(route string) string {
	if c, ok := routeColor[route]; ok {
		return c
	}
	return "#718096"
}

var actionColor = map[string]string{"step": "#38a169", "promote": "#2f855a", "hold": "#d69e2e", "rollback": "#e53e3e", "inconclusive": "#a0aec0"}

// series is one line of a line chart.
type series struct {
	Name  string
	Color string
	X, Y  []float64
	Step  bool
}

// chart is a frame with axes; it maps data to pixels.
type chart struct {
	W, H                  float64
	L, R, T, B            float64 // margins
	X0, X1, Y0, Y1        float64
	b                     strings.Builder
	xLabel, yLabel, title string
}

func newChart(title, xLabel, yLabel string, x0, x1, y0, y1 float64) *chart {
	if x1 <= x0 {
		x1 = x0 + 1
	}
	if y1 <= y0 {
		y1 = y0 + 1
	}
	return &chart{W: 560, H: 270, L: 56, R: 16, T: 46, B: 40, X0: x0, X1: x1, Y0: y0, Y1: y1, title: title, xLabel: xLabel, yLabel: yLabel}
}

func (c *chart) px(x float64) float64 { return c.L + (x-c.X0)/(c.X1-c.X0)*(c.W-c.L-c.R) }
func (c *chart) py(y float64) float64 { return c.H - c.B - (y-c.Y0)/(c.Y1-c.Y0)*(c.H-c.T-c.B) }

func esc(s string) string { return template.HTMLEscapeString(s) }

// niceTicks returns about n round tick values spanning [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	if span <= 0 {
		return []float64{lo}
	}
	step := math.Pow(10, math.Floor(math.Log10(span/float64(n))))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= float64(n) {
			step *= m
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtNum(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case math.Abs(v) >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func (c *chart) axes(xticks bool) {
	fmt.Fprintf(&c.b, `<text x="%.0f" y="18" class="ct">%s</text>`, c.L, esc(c.title))
	for _, v := range niceTicks(c.Y0, c.Y1, 5) {
		y := c.py(v)
		fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/><text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>`,
			c.L, y, c.W-c.R, y, c.L-6, y+4, fmtNum(v))
	}
	if xticks {
		for _, v := range niceTicks(c.X0, c.X1, 6) {
			x := c.px(v)
			fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%s</text>`, x, c.H-c.B+16, fmtNum(v))
		}
	}
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="axis"/>`, c.L, c.H-c.B, c.W-c.R, c.H-c.B)
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="axis"/>`, c.L, c.T, c.L, c.H-c.B)
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="lbl" text-anchor="middle">%s</text>`, (c.L+c.W-c.R)/2, c.H-6, esc(c.xLabel))
	fmt.Fprintf(&c.b, `<text x="12" y="%.1f" class="lbl" text-anchor="middle" transform="rotate(-90 12 %.1f)">%s</text>`, (c.T+c.H-c.B)/2, (c.T+c.H-c.B)/2, esc(c.yLabel))
}

// legend draws the items in a row under the title.
func (c *chart) legend(items [][2]string) {
	x := c.L
	for _, it := range items {
		name, color := it[0], it[1]
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="25" width="10" height="10" fill="%s"/><text x="%.1f" y="34" class="tick">%s</text>`, x, color, x+14, esc(name))
		x += float64(len(name))*6.5 + 26
	}
}

func (c *chart) svg() template.HTML {
	return template.HTML(fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img">%s</svg>`, c.W, c.H, c.W, c.H, c.b.String()))
}

func lineChart(title, xLabel, yLabel string, ss []series, yMax float64) template.HTML {
	x1, y1 := 1.0, yMax
	for _, s := range ss {
		for i := range s.X {
			x1 = math.Max(x1, s.X[i])
			if yMax <= 0 {
				y1 = math.Max(y1, s.Y[i]*1.1)
			}
		}
	}
	c := newChart(title, xLabel, yLabel, 0, x1, 0, y1)
	c.axes(true)
	var leg [][2]string
	for _, s := range ss {
		if len(s.X) == 0 {
			continue
		}
		var pts []string
		for i := range s.X {
			if s.Step && i > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.X[i]), c.py(s.Y[i-1])))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.X[i]), c.py(s.Y[i])))
		}
		fmt.Fprintf(&c.b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
		leg = append(leg, [2]string{s.Name, s.Color})
	}
	c.legend(leg)
	return c.svg()
}

// weightChart draws the canary weight over time with a marker per decision.
func weightChart(r *Report) template.HTML {
	var s series
	s.Name, s.Color, s.Step = "canary weight %", "#dd6b20", true
	for _, p := range r.Series {
		s.X = append(s.X, p.T)
		s.Y = append(s.Y, float64(p.WeightBP)/100)
	}
	xMax := 1.0
	if n := len(r.Series); n > 0 {
		xMax = r.Series[n-1].T
	}
	c := newChart("Canary weight and decisions", "seconds since start", "weight %", 0, xMax, 0, 100)
	c.axes(true)
	if len(s.X) > 0 {
		var pts []string
		for i := range s.X {
			if i > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.X[i]), c.py(s.Y[i-1])))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.X[i]), c.py(s.Y[i])))
		}
		fmt.Fprintf(&c.b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
	}
	seen := map[string]bool{}
	for _, d := range r.Decisions {
		t := d.At.Sub(r.Started).Seconds()
		if t < 0 || t > xMax*1.05 {
			continue
		}
		col := actionColor[d.Action]
		if col == "" {
			col = "#4a5568"
		}
		seen[d.Action] = true
		fmt.Fprintf(&c.b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s" stroke="#fff"><title>%s</title></circle>`,
			c.px(math.Min(t, xMax)), c.py(float64(d.WeightAfter)/100), col, esc(d.Action+": "+d.Reason))
	}
	var leg [][2]string
	for _, a := range []string{"step", "promote", "hold", "rollback", "inconclusive"} {
		if seen[a] {
			leg = append(leg, [2]string{a, actionColor[a]})
		}
	}
	c.legend(leg)
	return c.svg()
}

// latency bins for the histogram chart, in ms (upper bounds).
var latBins = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, math.Inf(1)}

func binLabel(i int) string {
	if math.IsInf(latBins[i], 1) {
		return ">" + fmtNum(latBins[i-1])
	}
	return "≤" + fmtNum(latBins[i])
}

// latencyChart draws each route's end-to-end latency distribution as the
// share of its runs per bin.
func latencyChart(r *Report, title string, pick func(*RouteReport) []projections.Bucket) template.HTML {
	names := r.RouteNames()
	shares := map[string][]float64{}
	last := 0
	for _, n := range names {
		rr := r.Routes[n]
		sh := make([]float64, len(latBins))
		var tot float64
		for _, b := range pick(rr) {
			mid := float64(b.Lo+b.Hi) / 2
			i := slices.IndexFunc(latBins, func(ub float64) bool { return mid <= ub })
			sh[i] += float64(b.Count)
			tot += float64(b.Count)
		}
		for i := range sh {
			if tot > 0 {
				sh[i] = 100 * sh[i] / tot
			}
			if sh[i] > 0 {
				last = max(last, i)
			}
		}
		shares[n] = sh
	}
	first := len(latBins)
	for _, sh := range shares {
		for i, v := range sh {
			if v > 0 {
				first = min(first, i)
				break
			}
		}
	}
	if first > last {
		first, last = 0, len(latBins)-1
	}
	nb := last - first + 1
	yMax := 10.0
	for _, sh := range shares {
		for _, v := range sh {
			yMax = math.Max(yMax, v*1.1)
		}
	}
	c := newChart(title, "latency ms", "% of the route's runs", 0, float64(nb), 0, math.Min(100, yMax))
	c.axes(false)
	slot := (c.W - c.L - c.R) / float64(nb)
	bw := slot * 0.8 / float64(max(len(names), 1))
	var leg [][2]string
	for k, n := range names {
		for i := first; i <= last; i++ {
			v := shares[n][i]
			x := c.L + float64(i-first)*slot + slot*0.1 + float64(k)*bw
			fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s ms: %.1f%%</title></rect>`,
				x, c.py(v), bw, c.py(0)-c.py(v), colorOf(n), esc(n), esc(binLabel(i)), v)
		}
		leg = append(leg, [2]string{n, colorOf(n)})
	}
	for i := first; i <= last; i++ {
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%s</text>`, c.L+(float64(i-first)+0.5)*slot, c.H-c.B+16, esc(binLabel(i)))
	}
	c.legend(leg)
	return c.svg()
}

// gatesChart draws each gate's pass rate per route.
func gatesChart(r *Report) template.HTML {
	names := r.RouteNames()
	var gates []string
	for _, n := range names {
		for g := range r.Routes[n].Gates {
			if !slices.Contains(gates, g) {
				gates = append(gates, g)
			}
		}
	}
	slices.Sort(gates)
	gates = append(gates, "success")
	c := newChart("Gate pass rate and run success rate per route", "", "% passed", 0, float64(len(gates)), 0, 112)
	c.axes(false)
	slot := (c.W - c.L - c.R) / float64(len(gates))
	bw := slot * 0.7 / float64(max(len(names), 1))
	var leg [][2]string
	for k, n := range names {
		rr := r.Routes[n]
		for i, g := range gates {
			var v float64
			var label string
			if g == "success" {
				v, label = 100*rr.SuccessRate, fmt.Sprintf("%d runs", rr.Runs)
			} else if gr := rr.Gates[g]; gr != nil {
				v, label = 100*gr.PassRate, fmt.Sprintf("%d of %d", gr.Passed, gr.Passed+gr.Failed)
			} else {
				continue
			}
			x := c.L + float64(i)*slot + slot*0.15 + float64(k)*bw
			fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.2f%% (%s)</title></rect>`,
				x, c.py(v), bw, c.py(0)-c.py(v), colorOf(n), esc(n), esc(g), v, esc(label))
			fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%.1f</text>`, x+bw/2, c.py(v)-3, v)
		}
		leg = append(leg, [2]string{n, colorOf(n)})
	}
	for i, g := range gates {
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%s</text>`, c.L+(float64(i)+0.5)*slot, c.H-c.B+16, esc(g))
	}
	c.legend(leg)
	return c.svg()
}

// rawChart sets Spine's run latency beside the raw chain's at the same
// paced rate (Report.RawComparison); no chart without one.
func rawChart(r *Report) template.HTML {
	rc := r.RawComparison
	if rc == nil {
		return ""
	}
	vals := []struct {
		name string
		v    float64
		col  string
	}{
		{"Spine runs p50 (ms)", float64(rc.Spine.P50), "#2b6cb0"},
		{"Spine runs p99 (ms)", float64(rc.Spine.P99), "#2b6cb0"},
		{"raw franz-go 3-hop chain p50 (ms)", float64(rc.Raw.P50), "#718096"},
		{"raw franz-go 3-hop chain p99 (ms)", float64(rc.Raw.P99), "#718096"},
	}
	top := 1.0
	for _, v := range vals {
		top = math.Max(top, v.v)
	}
	c := newChart("Raw franz-go chain: "+rc.Label, "milliseconds", "", 0, top*1.15, 0, 2)
	c.H, c.L, c.T = 240, 16, 36
	for i, v := range vals {
		y := c.T + float64(i)*45
		w := c.px(v.v) - c.px(0)
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" class="tick">%s: %s</text><rect x="%.1f" y="%.1f" width="%.1f" height="22" fill="%s"/>`,
			c.px(0), y+10, esc(v.name), fmtNum(math.Round(v.v)), c.px(0), y+14, math.Max(w, 1), v.col)
	}
	fmt.Fprintf(&c.b, `<text x="%.0f" y="18" class="ct">%s</text>`, c.L, esc(c.title))
	return c.svg()
}

func throughputChart(r *Report) template.HTML {
	var sent, done, base, can series
	sent.Name, sent.Color = "sent/s", "#a0aec0"
	done.Name, done.Color = "finished/s", "#2d3748"
	base.Name, base.Color = "baseline/s", routeColor["baseline"]
	can.Name, can.Color = "canary/s", routeColor["canary"]
	for i := 1; i < len(r.Series); i++ {
		p, q := r.Series[i-1], r.Series[i]
		dt := q.T - p.T
		if dt <= 0 {
			continue
		}
		for _, s := range []*series{&sent, &done, &base, &can} {
			s.X = append(s.X, q.T)
		}
		sent.Y = append(sent.Y, float64(q.Sent-p.Sent)/dt)
		done.Y = append(done.Y, float64(q.Done-p.Done)/dt)
		base.Y = append(base.Y, float64(q.Baseline-p.Baseline)/dt)
		can.Y = append(can.Y, float64(q.Canary-p.Canary)/dt)
	}
	return lineChart("Throughput over time", "seconds since start", "runs per second", []series{sent, done, base, can}, 0)
}

const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spine load test {{.R.ID}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1a202c;background:#f7fafc}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.sub{color:#4a5568;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts figure{margin:0;background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}
.ct{font-size:13px;font-weight:600;fill:#1a202c}.tick{font-size:11px;fill:#4a5568}.lbl{font-size:11px;fill:#4a5568}
.grid{stroke:#edf2f7}.axis{stroke:#a0aec0}
.step{color:#38a169}.promote{color:#2f855a;font-weight:600}.hold{color:#b7791f}.rollback{color:#e53e3e;font-weight:600}.inconclusive{color:#718096}
</style></head><body>
<h1>Spine load test {{.R.ID}}</h1>
<div class="sub">{{.R.Started.Format "2006-01-02 15:04:05 MST"}} · {{.R.Params.Target}} · asked {{printf "%.0f" .R.AskedRate}} intents/s for {{.R.Params.Duration}}, canary {{printf "%g" .R.Params.CanaryPct}}%{{if .V2}} · v2: {{.V2}}{{end}}</div>
<div class="cards">
<div class="card">asked<b>{{printf "%.0f" .R.AskedRate}}/s</b></div>
<div class="card">sent<b>{{printf "%.0f" .R.SentRate}}/s</b>{{.R.Sent}} intents</div>
<div class="card">finished<b>{{printf "%.0f" .R.FinishedRate}}/s</b>{{.R.Finished}} runs{{if .R.Unfinished}}, {{.R.Unfinished}} unfinished{{end}}</div>
<div class="card">thread events<b>{{printf "%.0f" .R.EventsPerSec}}/s</b>{{.R.ThreadEvents}} events</div>
<div class="card">canary share<b>{{printf "%.2f" .R.CanarySharePct}}%</b>measured</div>
<div class="card">final rollout<b>{{.FinalWeight}}</b>{{.R.FinalPhase}}</div>
{{with .R.RawComparison}}<div class="card">latency at the same rate<b>p99 {{.Spine.P99}} ms</b>raw franz-go chain p99 {{.Raw.P99}} ms at {{printf "%.0f" .RatePerSec}}/s</div>{{end}}
{{if .R.RSSPeakBytes}}<div class="card">stack RSS<b>{{mib .R.RSSLastBytes}} MiB</b>first {{mib .R.RSSFirstBytes}}, peak {{mib .R.RSSPeakBytes}} MiB</div>{{end}}
{{if .R.DeadLettered}}<div class="card">dead-lettered<b>{{.R.DeadLettered}}</b></div>{{end}}
</div>
<h2>Charts</h2>
<div class="charts">
<figure>{{.Throughput}}</figure>
{{if .Memory}}<figure>{{.Memory}}</figure>{{end}}
<figure>{{.Weight}}</figure>
<figure>{{.Latency}}</figure>
<figure>{{.Exec}}</figure>
<figure>{{.Gates}}</figure>
{{if .Raw}}<figure>{{.Raw}}</figure>{{end}}
</div>
<h2>Routes</h2>
<table><tr><th>route</th><th>runs</th><th>outcomes</th><th>success</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>executor p50 / p99 ms</th><th>exec failures</th><th>score mean</th><th>gates</th></tr>
{{range .Routes}}<tr><td>{{.Name}}</td><td>{{.R.Runs}}</td><td>{{range $k, $v := .R.Outcomes}}{{$k}} {{$v}}<br>{{end}}</td><td>{{printf "%.2f" (pct100 .R.SuccessRate)}}%</td>
<td>{{.R.Latency.P50}}</td><td>{{.R.Latency.P95}}</td><td>{{.R.Latency.P99}}</td><td>{{.R.Latency.Max}}</td><td>{{.R.ExecLatency.P50}} / {{.R.ExecLatency.P99}}</td><td>{{.R.ExecFailed}} of {{.R.Executions}}</td><td>{{printf "%.3f" .R.ScoreMean}}</td>
<td>{{range $k, $v := .R.Gates}}{{$k}} {{printf "%.2f" (pct100 $v.PassRate)}}% ({{$v.Passed}}/{{add $v.Passed $v.Failed}})<br>{{end}}</td></tr>{{end}}
</table>
<h2>Canary decisions (gate.canary)</h2>
{{if .R.Decisions}}<table><tr><th>t</th><th>decision</th><th>weight</th><th>phase</th><th>samples (canary / baseline)</th><th>reason</th></tr>
{{range .Decisions}}<tr><td>+{{.T}}s</td><td class="{{.D.Action}}">{{.D.Action}}</td><td>{{.Before}} → {{.After}}</td><td>{{.D.Phase}}</td><td>{{.D.CanaryRuns}} / {{.D.BaselineRuns}}</td><td>{{.D.Reason}}</td></tr>{{end}}
</table>{{else}}<p>No canary analysis ran during the test (the analysis interval may be longer than the test).</p>{{end}}
<h2>Rollout flag changes (spine.flags)</h2>
<table><tr><th>rev</th><th>at</th><th>who</th><th>weight</th><th>phase</th><th>why</th></tr>
{{range .R.FlagChanges}}<tr><td>{{.Rev}}</td><td>{{.At.Format "15:04:05.000"}}</td><td>{{.Who}}</td><td>{{bp .WeightBP}}</td><td>{{.Phase}}</td><td>{{.Why}}</td></tr>{{end}}
</table>
{{if .R.Raw}}<h2>Raw franz-go baseline</h2>
<p>A raw franz-go transactional chain of {{.R.Raw.Hops}} hops (GroupTransactSession, read_committed, flush before commit) pushed {{.R.Raw.Records}} records through on the same broker before the load{{if .R.Raw.Rate}}, paced at {{printf "%.0f" .R.Raw.Rate}} records/s{{else}}, unpaced{{end}}:
p50 {{.R.Raw.Latency.P50}} ms, p99 {{.R.Raw.Latency.P99}} ms from the source's write to the third hop's committed output.
{{with .R.RawComparison}}At the same rate, Spine's runs took p50 {{.Spine.P50}} ms, p99 {{.Spine.P99}} ms from the intent's send to the run's terminal event (about a dozen transactional events per run, against the chain's three hops).{{end}}
The load test is paced, so its throughput is the rate asked for, not a ceiling, and it is not set against the chain's; unpaced throughput against the same chain is BenchmarkGoldenPath's (README, Performance).</p>{{end}}
<p class="sub">Generated by <code>spine loadtest</code>. The same data is in loadtest-{{.R.ID}}.json.</p>
</body></html>`

var pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct100": func(v float64) float64 { return 100 * v },
	"add":    func(a, b int64) int64 { return a + b },
	"bp":     pct,
	"mib":    func(b int64) int64 { return b >> 20 },
}).Parse(page))

// memoryChart draws the stack's resident memory and Go heap over time, or
// nothing when the report has no samples (an external stack).
func memoryChart(r *Report) template.HTML {
	rss := series{Name: "resident (RSS) MiB", Color: "#2b6cb0"}
	heap := series{Name: "Go heap MiB", Color: "#38a169"}
	for _, p := range r.Series {
		if p.RSSBytes == 0 {
			continue
		}
		rss.X, rss.Y = append(rss.X, p.T), append(rss.Y, float64(p.RSSBytes)/(1<<20))
		heap.X, heap.Y = append(heap.X, p.T), append(heap.Y, float64(p.HeapBytes)/(1<<20))
	}
	if len(rss.X) == 0 {
		return ""
	}
	return lineChart("Stack memory over time (in-process stack)", "seconds since start", "MiB", []series{rss, heap}, 0)
}

// HTML renders the report as one self-contained page.
func (r *Report) HTML() ([]byte, error) {
	type route struct {
		Name string
		R    *RouteReport
	}
	type dec struct {
		D             Decision
		T             string
		Before, After string
	}
	data := struct {
		R                                             *Report
		V2, FinalWeight                               string
		Throughput, Weight, Latency, Exec, Gates, Raw template.HTML
		Memory                                        template.HTML
		Routes                                        []route
		Decisions                                     []dec
	}{R: r, FinalWeight: pct(r.FinalWeightBP)}
	var v2 []string
	if r.Params.V2LatencyMs > 0 {
		v2 = append(v2, fmt.Sprintf("latency %g ms", r.Params.V2LatencyMs))
	}
	if r.Params.V2FailureRate > 0 {
		v2 = append(v2, fmt.Sprintf("failure rate %g", r.Params.V2FailureRate))
	}
	if r.Params.V2ScoreShift != 0 {
		v2 = append(v2, fmt.Sprintf("score shift %+g", r.Params.V2ScoreShift))
	}
	data.V2 = strings.Join(v2, ", ")
	data.Throughput, data.Weight, data.Gates, data.Raw = throughputChart(r), weightChart(r), gatesChart(r), rawChart(r)
	data.Memory = memoryChart(r)
	data.Latency = latencyChart(r, "End-to-end latency per route (intent → terminal, from the thread)", func(rr *RouteReport) []projections.Bucket { return rr.Histogram })
	data.Exec = latencyChart(r, "Executor-reported latency per route (artifact.delivered)", func(rr *RouteReport) []projections.Bucket { return rr.ExecHistogram })
	for _, n := range r.RouteNames() {
		data.Routes = append(data.Routes, route{n, r.Routes[n]})
	}
	for _, d := range r.Decisions {
		data.Decisions = append(data.Decisions, dec{D: d, T: fmt.Sprintf("%.1f", d.At.Sub(r.Started).Seconds()), Before: pct(d.WeightBefore), After: pct(d.WeightAfter)})
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return buf.Bytes(), nil
}
