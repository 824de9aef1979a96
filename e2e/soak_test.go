package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/verify"
)

// TestSoak is the fault soak: a steady load of intents runs through the
// stack — orchestrator, dataplane, gates and projections, each a `spine run`
// child process, the dataplane calling an OpenAI-compatible server — while
// a seeded schedule of faults plays, then `spine verify` checks the whole
// thread and must find no anomaly. The faults:
//
//   - kill: a processor SIGKILLed at a random moment (mid-transaction, the
//     load never stops) and started again under its instance id;
//   - join / leave: another instance of a processor starts, and later
//     stops (SIGTERM: it leaves its group), each a rebalance;
//   - broker restart (embedded broker): the kfake broker closed and started
//     again on its data directory and port;
//   - kafka kill / kafka pause (Apache Kafka, when KAFKA_BROKERS is set):
//     the broker SIGKILLed and started again on its data
//     (deploy/kafka/restart.sh), or SIGSTOPped for longer than the group
//     session timeout and continued;
//   - exec fail / exec slow: a window in which the model server answers
//     every call with a 500, or slower than SPINE_EXEC_TIMEOUT.
//
// Rebalances are counted from the processors' own "partitions assigned"
// log lines: one distinct group generation (per broker lifetime) is one
// rebalance.
//
// With KAFKA_BROKERS set (`make test-kafka`), or SPINE_SOAK_KAFKA=1 (`make
// soak-kafka`), the soak torments an Apache Kafka broker of its own, never the shared one the other packages test against: the broker
// whose work directory SPINE_SOAK_KAFKA_WORK names (deploy/kafka/start.sh's
// SPINE_KAFKA_WORK: kafka.pid, bootstrap, server.properties), else one it
// starts with deploy/kafka/start.sh and stops at the end.
//
// The knobs (environment): SPINE_SOAK_DURATION (the fault phase, default
// 100s), SPINE_SOAK_SEED (default: the clock; logged), SPINE_SOAK_RATE
// (intents a second, default 10), SPINE_SOAK_KILLS (12),
// SPINE_SOAK_JOINS (joins, each followed by its leave: 10),
// SPINE_SOAK_BROKER_RESTARTS (7), SPINE_SOAK_KAFKA_KILLS (2),
// SPINE_SOAK_KAFKA_PAUSES (1), SPINE_SOAK_EXEC_FAULTS (4),
// SPINE_SOAK_REPORT (a file the report is written to, as well as the test
// log). `make soak` runs the long form.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	sc := soakSettings(t)
	spineBinary(t) // build before the clock starts
	r := newSoak(t, sc)
	r.run()
}

// soakConfig is the soak's knobs.
type soakConfig struct {
	duration   time.Duration
	seed       uint64
	rate       int
	kills      int
	joins      int
	restarts   int // embedded broker restarts
	kafkaKills int
	pauses     int
	execFaults int
	report     string
	apache     bool
}

func soakSettings(t *testing.T) soakConfig {
	t.Helper()
	sc := soakConfig{
		duration:   100 * time.Second,
		seed:       uint64(time.Now().UnixNano()),
		rate:       envInt("SPINE_SOAK_RATE", 10),
		kills:      envInt("SPINE_SOAK_KILLS", 12),
		joins:      envInt("SPINE_SOAK_JOINS", 10),
		restarts:   envInt("SPINE_SOAK_BROKER_RESTARTS", 7),
		kafkaKills: envInt("SPINE_SOAK_KAFKA_KILLS", 2),
		pauses:     envInt("SPINE_SOAK_KAFKA_PAUSES", 1),
		execFaults: envInt("SPINE_SOAK_EXEC_FAULTS", 4),
		report:     os.Getenv("SPINE_SOAK_REPORT"),
		apache:     kafkatest.External() || os.Getenv("SPINE_SOAK_KAFKA") == "1",
	}
	if v := os.Getenv("SPINE_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 20*time.Second {
			t.Fatalf("SPINE_SOAK_DURATION %q: want a duration of at least 20s", v)
		}
		sc.duration = d
	}
	if v := os.Getenv("SPINE_SOAK_SEED"); v != "" {
		var err error
		if sc.seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SPINE_SOAK_SEED: %v", err)
		}
	}
	if sc.apache {
		sc.restarts = 0
	} else {
		sc.kafkaKills, sc.pauses = 0, 0
	}
	return sc
}

// The soak's stack settings: dynamic membership with a short session
// timeout (a killed member's partitions move after it, a rebalance), calls
// that time out and are retried.
const (
	soakSession     = 6 * time.Second
	soakExecTimeout = 4 * time.Second
)

// Fault kinds, as the report names them.
const (
	faultKill          = "kill"
	faultJoin          = "join"
	faultLeave         = "leave"
	faultBrokerRestart = "broker restart"
	faultKafkaKill     = "kafka kill"
	faultKafkaPause    = "kafka pause"
	faultExecFail      = "exec fail"
	faultExecSlow      = "exec slow"
)

// fault is one scheduled fault.
type fault struct {
	at     time.Duration // from the start of the fault phase
	kind   string
	target string        // a processor, an instance
	hold   time.Duration // a pause's or window's length; a broker's downtime
	// done is what happened, filled in when it ran.
	ranAt  time.Duration
	detail string
	outage time.Duration // a broker fault's: from ranAt until it served again
}

// soakParts are the processes the soak runs, each a `spine run` child.
var soakParts = []string{stack.Orchestrator, stack.Dataplane, stack.Gates, stack.Projections}

// schedule draws the faults of sc from its seed: each kind's faults spread
// evenly over the phase, each at a random point of its own slot.
func schedule(sc soakConfig) []*fault {
	rng := rand.New(rand.NewPCG(sc.seed, 12))
	span := sc.duration - 10*time.Second // the last 10s: no new fault
	slots := func(n int, kind string, each func(i int, f *fault)) []*fault {
		var out []*fault
		for i := range n {
			slot := span / time.Duration(n)
			f := &fault{kind: kind, at: 2*time.Second + time.Duration(i)*slot + time.Duration(0.1*float64(slot)+rng.Float64()*0.6*float64(slot))}
			each(i, f)
			out = append(out, f)
		}
		return out
	}
	var fs []*fault
	fs = append(fs, slots(sc.kills, faultKill, func(_ int, f *fault) {
		f.target = soakParts[rng.IntN(len(soakParts))]
	})...)
	for _, j := range slots(sc.joins, faultJoin, func(i int, f *fault) {
		f.target = fmt.Sprintf("%s#j%d", soakParts[rng.IntN(len(soakParts))], i)
		f.hold = time.Duration(3+rng.IntN(5)) * time.Second
	}) {
		fs = append(fs, j, &fault{kind: faultLeave, target: j.target, at: j.at + j.hold})
	}
	fs = append(fs, slots(sc.restarts, faultBrokerRestart, func(_ int, f *fault) {
		f.hold = time.Duration(500+rng.IntN(2500)) * time.Millisecond
	})...)
	// The Apache Kafka faults share one set of slots: a kill and a pause
	// never overlap.
	kafka := slots(sc.kafkaKills+sc.pauses, faultKafkaKill, func(_ int, f *fault) {
		f.hold = time.Duration(1000+rng.IntN(2000)) * time.Millisecond
	})
	for _, i := range rng.Perm(len(kafka))[:sc.pauses] {
		kafka[i].kind = faultKafkaPause
		kafka[i].hold = soakSession + time.Duration(2000+rng.IntN(3000))*time.Millisecond
	}
	fs = append(fs, kafka...)
	fs = append(fs, slots(sc.execFaults, faultExecFail, func(i int, f *fault) {
		if i%2 == 1 {
			f.kind = faultExecSlow
		}
		f.hold = time.Duration(3+rng.IntN(5)) * time.Second
	})...)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].at < fs[j].at })
	// Each fault's random extra delay (a kill lands at a random point of
	// the processor's work) is drawn here too, so the whole schedule is
	// the seed's.
	for _, f := range fs {
		f.at += time.Duration(rng.IntN(500)) * time.Millisecond
	}
	return fs
}

// soak is one soak run.
type soak struct {
	t     *testing.T
	sc    soakConfig
	s     *rig
	emb   *pipeline.Embedded // the embedded broker, nil on Apache Kafka
	kafka string             // Apache Kafka's work directory
	model *soakModel
	logs  string // the children's log files

	mu       sync.Mutex
	children map[string]*child // by instance
	selfExit []string
	epochs   []time.Time // when each broker lifetime began (after the first)

	produced atomic.Int64
	start    time.Time
}

func newSoak(t *testing.T, sc soakConfig) *soak {
	r := &soak{t: t, sc: sc, children: map[string]*child{}, logs: t.TempDir()}
	var brokers []string
	if sc.apache {
		r.kafka, brokers = soakApacheKafka(t)
	} else {
		port := freeLocalPort(t)
		r.emb = pipeline.NewEmbedded(pipeline.EmbeddedConfig{DataDir: t.TempDir(), Port: port,
			CleanerIntervalMs: int(time.Hour.Milliseconds())}) // see embeddedNoCompaction
		if err := r.emb.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.emb.Close)
		brokers = r.emb.Addrs()
	}
	r.model = newSoakModel(t)
	agents := filepath.Join(t.TempDir(), "agents.yaml")
	var b strings.Builder
	b.WriteString("agents:\n")
	for _, k := range orchestrator.DefaultIntentKinds {
		fmt.Fprintf(&b, "  - kind: %s\n    executor: openai\n    base_url: %s/v1\n    model: soak\n    json: true\n", k, r.model.URL)
	}
	if err := os.WriteFile(agents, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r.s = newStack(t, brokers, map[string]string{
		"SPINE_GROUP_SESSION_TIMEOUT":  soakSession.String(),
		"SPINE_EXEC_TIMEOUT":           soakExecTimeout.String(),
		"SPINE_GATE_TIMEOUT":           "20s",
		"SPINE_RETRY_MAX_ATTEMPTS":     "3",
		"SPINE_RETRY_INITIAL_INTERVAL": "500ms",
		"SPINE_AGENTS":                 agents,
		"SPINE_DATAPLANE_CONCURRENCY":  "32",
	})
	return r
}

// freeLocalPort returns a loopback port that was free a moment ago.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// spawn starts `spine run part` as instance, logging JSON at info to a file
// of its own (the rebalance count reads them).
func (r *soak) spawn(part, instance string) *child {
	t := r.t
	cmd := exec.Command(spineBinary(t), "run", part)
	cmd.Env = append(r.s.childEnv(instance), "SPINE_LOG_LEVEL=info", "SPINE_LOG_FORMAT=json")
	f, err := os.OpenFile(filepath.Join(r.logs, instance+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	c := &child{name: part, instance: instance, Proc: spinetest.StartProc(t, "spine run "+part, cmd, func() { f.Close() })}
	r.mu.Lock()
	r.children[instance] = c
	r.mu.Unlock()
	return c
}

// baseInstance is the instance id of a part's always-running instance.
func baseInstance(part string) string { return "soak-" + part }

// reviveDead starts again any always-running instance that exited on its
// own, and records that it did: a processor must survive every fault.
func (r *soak) reviveDead() {
	for _, part := range soakParts {
		r.mu.Lock()
		c := r.children[baseInstance(part)]
		r.mu.Unlock()
		if c != nil && !c.Alive() {
			msg := fmt.Sprintf("%s: spine run %s exited on its own (%v) at %s; its log ends:\n%s", c.instance, part, c.Cmd.ProcessState, r.since(), r.logTail(c.instance, 8))
			r.t.Log(msg)
			r.mu.Lock()
			r.selfExit = append(r.selfExit, msg)
			r.mu.Unlock()
			r.spawn(part, c.instance)
		}
	}
}

// logTail returns the last n lines of an instance's log.
func (r *soak) logTail(instance string, n int) string {
	b, _ := os.ReadFile(filepath.Join(r.logs, instance+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logSize is the size of an instance's log now.
func (r *soak) logSize(instance string) int64 {
	st, err := os.Stat(filepath.Join(r.logs, instance+".log"))
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns an instance's JSON log lines from offset on, each as its
// time, level, message and the attributes that say why, one per line.
func (r *soak) logSince(instance string, offset int64) string {
	b, _ := os.ReadFile(filepath.Join(r.logs, instance+".log"))
	if offset > int64(len(b)) {
		offset = 0
	}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(b[offset:])), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			fmt.Fprintf(&out, "    %s\n", line)
			continue
		}
		fmt.Fprintf(&out, "    %v %v %q", m["time"], m["level"], m["msg"])
		for _, k := range []string{"processor", "err", "timeout", "partitions", "took"} {
			if v, ok := m[k]; ok {
				fmt.Fprintf(&out, " %s=%v", k, v)
			}
		}
		out.WriteString("\n")
	}
	return out.String()
}

// quitReport summarises the log of an instance that answered SIGQUIT: its
// last log lines before the dump, then each goroutine's state and the
// functions on its stack, outermost last, for the goroutines in Spine's or
// franz-go's code.
func (r *soak) quitReport(instance string) string {
	b, _ := os.ReadFile(filepath.Join(r.logs, instance+".log"))
	logPart, dump, ok := strings.Cut(string(b), "SIGQUIT: quit")
	if !ok {
		return "its log ends (no goroutine dump):\n" + r.logTail(instance, 12)
	}
	lines := strings.Split(strings.TrimRight(logPart, "\n"), "\n")
	var out strings.Builder
	fmt.Fprintf(&out, "its log before SIGQUIT ends:\n%s\nits goroutines:\n", strings.Join(lines[max(0, len(lines)-12):], "\n"))
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.Contains(g, "spinerun/spine") && !strings.Contains(g, "franz-go") {
			continue
		}
		gl := strings.Split(strings.TrimSpace(g), "\n")
		out.WriteString(gl[0] + "\n")
		for i := 1; i < len(gl); i += 2 { // function lines; file lines between
			fn := gl[i]
			if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j]
			}
			fmt.Fprintf(&out, "    %s\n", fn)
		}
	}
	return out.String()
}

func (r *soak) since() time.Duration { return time.Since(r.start).Round(time.Millisecond) }

func (r *soak) run() {
	t, sc := r.t, r.sc
	faults := schedule(sc)
	for _, part := range soakParts {
		r.spawn(part, baseInstance(part))
	}
	w := r.s.watch(t)
	t.Logf("soak on %s: SPINE_SOAK_SEED=%d, %s of faults, %d intents/s, %d faults scheduled", r.backend(), sc.seed, sc.duration, sc.rate, len(faults))

	// The load: sc.rate intents a second, every 100ms, until the fault
	// phase ends, through a producer that retries across broker outages.
	cl := kafkatest.Client(t, r.s.brokers, kgo.ProducerLinger(5*time.Millisecond), kgo.RequestRetries(1<<30))
	recs := r.s.encoded(t, "soak", int(sc.duration.Seconds()+120)*sc.rate)
	var produceErrs atomic.Int64
	stopLoad, loadDone := make(chan struct{}), make(chan struct{})
	loadStart := time.Now()
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			due := min(len(recs), int(time.Since(loadStart).Seconds()*float64(sc.rate))+1)
			for ; next < due; next++ {
				r.produced.Add(1)
				cl.Produce(context.Background(), recs[next], func(_ *kgo.Record, err error) {
					if err != nil {
						produceErrs.Add(1)
					}
				})
			}
		}
	}()

	// Wait for the thread to move before the first fault.
	waitFor(t, 90*time.Second, func() bool { _, v := w.counts(); return v > 0 }, func() string { return "the first gate verdict" })
	r.start = time.Now() // the fault phase starts now
	// Each lane plays its faults in order, at their times, beside the
	// others: a broker outage or an executor window does not hold up the
	// kills.
	lanes := map[string][]*fault{}
	for _, f := range faults {
		lanes[laneOf(f.kind)] = append(lanes[laneOf(f.kind)], f)
	}
	var wg sync.WaitGroup
	joined := &sync.Map{} // join target → *child
	for _, lane := range lanes {
		wg.Go(func() {
			for _, f := range lane {
				if d := f.at - time.Since(r.start); d > 0 {
					time.Sleep(d) // the schedule's clock, not a poll
				}
				if laneOf(f.kind) == faultKill {
					r.reviveDead()
				}
				f.ranAt = r.since()
				if err := r.inject(f, joined); err != nil {
					t.Errorf("%s %s at %s: %v", f.kind, f.target, f.ranAt, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A last stretch of load with no new fault, then the load stops.
	time.Sleep(max(0, sc.duration-time.Since(r.start)))
	close(stopLoad)
	<-loadDone
	total := int(r.produced.Load())
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatalf("flush the intents: %v", err)
	}
	r.model.set(modeNormal)
	r.reviveDead()
	phase := r.since()
	if n := produceErrs.Load(); n != 0 {
		t.Errorf("%d intents were not written", n)
	}

	// The checker: `spine verify` until every run has ended; anything but
	// a run still catching up is final.
	rep, attempts := r.verifyUntilDone(total)
	aborted := r.verifyUncommitted()
	r.report(faults, phase, total, rep, attempts, aborted)
}

func (r *soak) backend() string {
	if r.sc.apache {
		return "Apache Kafka (" + r.kafka + ")"
	}
	return "the embedded broker"
}

// laneOf names the lane a fault kind plays in.
func laneOf(kind string) string {
	switch kind {
	case faultJoin, faultLeave:
		return faultJoin
	case faultBrokerRestart, faultKafkaKill, faultKafkaPause:
		return faultBrokerRestart
	case faultExecFail, faultExecSlow:
		return faultExecFail
	}
	return faultKill
}

// inject runs one fault; an error ends its lane.
func (r *soak) inject(f *fault, joined *sync.Map) error {
	t := r.t
	switch f.kind {
	case faultKill:
		r.mu.Lock()
		c := r.children[baseInstance(f.target)]
		r.mu.Unlock()
		pid := c.Cmd.Process.Pid
		c.Kill(t)
		r.spawn(f.target, c.instance)
		f.detail = fmt.Sprintf("SIGKILL pid %d, started again", pid)
	case faultJoin:
		part, _, _ := strings.Cut(f.target, "#")
		c := r.spawn(part, "soak-"+strings.ReplaceAll(f.target, "#", "-"))
		joined.Store(f.target, c)
		f.detail = fmt.Sprintf("pid %d joins for %s", c.Cmd.Process.Pid, f.hold)
	case faultLeave:
		v, _ := joined.Load(f.target)
		c := v.(*child)
		logAt := r.logSize(c.instance)
		_ = c.Cmd.Process.Signal(syscall.SIGTERM)
		began := time.Now()
		select {
		case <-c.Exited:
			took := time.Since(began)
			f.detail = fmt.Sprintf("SIGTERM: left its group and exited in %s", took.Round(time.Millisecond))
			if took > 3*time.Second {
				t.Logf("%s took %s to stop; its log after SIGTERM:\n%s", c.instance, took.Round(time.Millisecond), r.logSince(c.instance, logAt))
			}
		case <-time.After(30 * time.Second):
			// The Go runtime answers SIGQUIT with every goroutine's stack
			// on stderr (the child's log) and exits: where it is stuck.
			_ = c.Cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-c.Exited:
			case <-time.After(5 * time.Second):
			}
			c.Kill(t)
			f.detail = "SIGTERM: still running after 30s, SIGQUIT and SIGKILLed"
			return fmt.Errorf("%s did not stop within 30s of SIGTERM\n%s", c.instance, r.quitReport(c.instance))
		}
	case faultBrokerRestart:
		began := time.Now()
		r.emb.Close()
		time.Sleep(f.hold) // the outage
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := r.emb.Start()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("restart the embedded broker: %w", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		r.newEpoch()
		f.outage = time.Since(began)
		f.detail = fmt.Sprintf("closed, down %s, started again on its data directory (%s in all)", f.hold, f.outage.Round(time.Millisecond))
	case faultKafkaKill:
		pid, err := readPid(r.kafka)
		if err != nil {
			return err
		}
		began := time.Now()
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for syscall.Kill(pid, 0) == nil { // a zombie until the shell that started it reaps it
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) || time.Since(began) > 30*time.Second {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(f.hold)
		out, err := exec.Command("../deploy/kafka/restart.sh").CombinedOutput()
		if err != nil {
			return fmt.Errorf("deploy/kafka/restart.sh: %w\n%s", err, out)
		}
		r.newEpoch()
		npid, _ := readPid(r.kafka)
		f.outage = time.Since(began)
		f.detail = fmt.Sprintf("SIGKILL pid %d, down %s, restarted on its data as pid %d (serving after %s)", pid, f.hold, npid, f.outage.Round(time.Millisecond))
	case faultKafkaPause:
		pid, err := readPid(r.kafka)
		if err != nil {
			return err
		}
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		time.Sleep(f.hold)
		_ = syscall.Kill(pid, syscall.SIGCONT)
		f.outage = f.hold
		f.detail = fmt.Sprintf("SIGSTOP pid %d for %s (session timeout %s), SIGCONT", pid, f.hold, soakSession)
	case faultExecFail, faultExecSlow:
		mode := modeFailing
		if f.kind == faultExecSlow {
			mode = modeSlow
		}
		// The window lasts its scheduled length, longer (up to three
		// times) if the thread stalled and fewer than 5 calls came in it,
		// and up to 30 s while not one call has come in (a window that
		// fell on a broker outage, when nothing is dispatched).
		before := r.model.counts()
		began := time.Now()
		r.model.set(mode)
		time.Sleep(f.hold)
		for {
			c := r.model.counts()
			bitten := c.failed - before.failed + c.slow - before.slow
			if bitten >= 5 || (bitten > 0 && time.Since(began) >= 3*f.hold) || time.Since(began) >= max(3*f.hold, 30*time.Second) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		r.model.set(modeNormal)
		after := r.model.counts()
		f.detail = fmt.Sprintf("%s: %d calls answered 500, %d slower than %s", time.Since(began).Round(time.Millisecond), after.failed-before.failed, after.slow-before.slow, soakExecTimeout)
	}
	t.Logf("%9s  %-15s %-22s %s", f.ranAt, f.kind, f.target, f.detail)
	return nil
}

func (r *soak) newEpoch() {
	r.mu.Lock()
	r.epochs = append(r.epochs, time.Now())
	r.mu.Unlock()
}

// verifyUntilDone runs `spine verify --json` until every one of the total
// intents has its run ended, and returns the last report. A run still in
// flight, or one verify calls lost while it is only late, or a projection
// the projections processor has not caught up with yet, may change on the
// next read; any other anomaly is on the append-only thread for good and
// ends the wait.
func (r *soak) verifyUntilDone(total int) (*verify.Report, int) {
	t := r.t
	transient := map[verify.Kind]bool{verify.LostTerminal: true, verify.LostIntent: true, verify.ProjectionMismatch: true}
	deadline := time.Now().Add(4 * time.Minute)
	for attempt := 1; ; attempt++ {
		rep, out := r.verify()
		done := rep.Intents >= total && rep.Runs >= total && rep.Outcomes["in_flight"] == 0 && rep.Clean
		final := false
		for k, n := range rep.Counts {
			if n > 0 && !transient[k] {
				final = true
			}
		}
		if done || final || time.Now().After(deadline) {
			if !rep.Clean {
				t.Errorf("spine verify found anomalies (attempt %d):\n%s", attempt, out)
				r.dumpAnomalies(rep)
			}
			return rep, attempt
		}
		time.Sleep(3 * time.Second)
	}
}

// verify runs `spine verify --json` on the stack.
func (r *soak) verify(args ...string) (*verify.Report, string) {
	t := r.t
	cmd := exec.Command(spineBinary(t), append([]string{"verify", "--json", "--grace", "10s"}, args...)...)
	cmd.Env = r.s.childEnv("verify")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var rep verify.Report
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		t.Fatalf("spine verify: %v, %v\n%s\n%s", err, jerr, stdout.String(), stderr.String())
	}
	return &rep, stdout.String()
}

// verifyUncommitted reads the thread as a read_uncommitted consumer does
// and returns how many records of aborted transactions it saw: the kills
// and outages that landed mid-transaction.
func (r *soak) verifyUncommitted() int {
	rep, _ := r.verify("--read-uncommitted", "--no-projections")
	return rep.AbortedSeen
}

// rebalances counts, per consumer group, the rebalances the processors
// logged: distinct generations per broker lifetime.
func (r *soak) rebalances() (map[string]int, int) {
	r.mu.Lock()
	epochs := slices.Clone(r.epochs)
	r.mu.Unlock()
	type gen struct {
		group      string
		generation int64
		epoch      int
	}
	seen := map[gen]bool{}
	files, _ := filepath.Glob(filepath.Join(r.logs, "*.log"))
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			r.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(`"partitions assigned"`)) {
				continue
			}
			var l struct {
				Time       time.Time `json:"time"`
				Group      string    `json:"group"`
				Generation int64     `json:"generation"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			e := sort.Search(len(epochs), func(i int) bool { return epochs[i].After(l.Time) })
			seen[gen{l.Group, l.Generation, e}] = true
		}
		f.Close()
	}
	by := map[string]int{}
	n := 0
	for g := range seen {
		// The group's name without the test's topic prefix.
		by[strings.TrimPrefix(g.group, r.s.layout.Prefix)]++
		n++
	}
	return by, n
}

// report prints (and with SPINE_SOAK_REPORT writes) every fault with its
// time, the counts, and the checker's result, and checks the soak did
// what it was asked.
func (r *soak) report(faults []*fault, phase time.Duration, total int, rep *verify.Report, attempts, aborted int) {
	t, sc := r.t, r.sc
	var b strings.Builder
	fmt.Fprintf(&b, "fault soak on %s, SPINE_SOAK_SEED=%d\n", r.backend(), sc.seed)
	fmt.Fprintf(&b, "faults (time from the start of the fault phase):\n")
	byKind := map[string]int{}
	for _, f := range faults {
		fmt.Fprintf(&b, "  %9s  %-15s %-22s %s\n", f.ranAt, f.kind, f.target, f.detail)
		byKind[f.kind]++
	}
	reb, nreb := r.rebalances()
	groups := slices.Sorted(func(yield func(string) bool) {
		for g := range reb {
			if !yield(g) {
				return
			}
		}
	})
	var rebs []string
	for _, g := range groups {
		rebs = append(rebs, fmt.Sprintf("%s=%d", g, reb[g]))
	}
	calls := r.model.counts()
	records := int64(0)
	for _, n := range rep.Records {
		records += n
	}
	fmt.Fprintf(&b, "fault phase: %s; intents: %d at %d/s\n", phase, total, sc.rate)
	fmt.Fprintf(&b, "faults: processor kills %d, joins %d, leaves %d, embedded broker restarts %d, Apache Kafka kills %d, pauses %d, executor windows %d failing + %d slow\n",
		byKind[faultKill], byKind[faultJoin], byKind[faultLeave], byKind[faultBrokerRestart], byKind[faultKafkaKill], byKind[faultKafkaPause], byKind[faultExecFail], byKind[faultExecSlow])
	fmt.Fprintf(&b, "rebalances (group generations the processors logged): %d (%s); joins clear of broker outages: %d\n", nreb, strings.Join(rebs, " "), joinsClearOfOutages(faults))
	fmt.Fprintf(&b, "model calls: %d, answered 500: %d, slow: %d\n", calls.calls, calls.failed, calls.slow)
	fmt.Fprintf(&b, "model calls per 5s of the fault phase: %v\n", r.model.perWindow(r.start, 5*time.Second))
	fmt.Fprintf(&b, "processes that exited on their own: %d\n", len(r.selfExit))
	fmt.Fprintf(&b, "records of aborted transactions (read_uncommitted): %d\n", aborted)
	fmt.Fprintf(&b, "spine verify (attempt %d): clean=%v runs=%d outcomes=%v records=%d dead_letters=%d refused=%d anomalies=%v\n",
		attempts, rep.Clean, rep.Runs, rep.Outcomes, records, rep.DeadLetters, rep.Refused, rep.Counts)
	t.Log("\n" + b.String())
	if sc.report != "" {
		if err := os.WriteFile(sc.report, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}

	// What was asked for happened.
	for _, msg := range r.selfExit {
		t.Errorf("a processor exited on its own: %s", msg)
	}
	if rep.Runs != total || rep.Intents != total {
		t.Errorf("verify saw %d intents and %d runs, %d were written", rep.Intents, rep.Runs, total)
	}
	if clear := joinsClearOfOutages(faults); nreb < 2*clear {
		t.Errorf("%d rebalances logged, want at least %d (a join and a leave each of the %d joins that no broker outage overlapped)", nreb, 2*clear, clear)
	}
	if calls.failed == 0 && sc.execFaults > 0 || calls.slow == 0 && sc.execFaults > 1 {
		t.Errorf("the executor faults did not bite: %d calls answered 500, %d slow", calls.failed, calls.slow)
	}
}

// outageGrace is how long after a broker serves again its clients may take
// to find their coordinators and groups again: the embedded broker is back
// whole at once; Apache Kafka loads its coordinators' logs first.
func outageGrace(kind string) time.Duration {
	if kind == faultBrokerRestart {
		return 2 * time.Second
	}
	return 15 * time.Second
}

// joinsClearOfOutages counts the joins whose stay (from the join to just
// after its leave) no broker outage, nor outageGrace after it, overlapped: a
// group whose coordinator is down cannot rebalance, so only those must.
func joinsClearOfOutages(faults []*fault) int {
	leaves := map[string]*fault{}
	for _, f := range faults {
		if f.kind == faultLeave {
			leaves[f.target] = f
		}
	}
	n := 0
	for _, j := range faults {
		l := leaves[j.target]
		if j.kind != faultJoin || l == nil {
			continue
		}
		from, to := j.ranAt, l.ranAt+2*time.Second // the leave's rebalance is under way by then
		clear := true
		for _, o := range faults {
			if o.outage > 0 && o.ranAt < to && from < o.ranAt+o.outage+outageGrace(o.kind) {
				clear = false
			}
		}
		if clear {
			n++
		}
	}
	return n
}

// dumpAnomalies logs, for the first runs an anomaly names, every record of
// the run's partitions around it as a read_uncommitted reader sees them,
// transaction markers included: which producer (id, epoch) wrote each
// copy, and which transaction marker ended it.
func (r *soak) dumpAnomalies(rep *verify.Report) {
	t := r.t
	r.mu.Lock()
	epochs := slices.Clone(r.epochs)
	r.mu.Unlock()
	var restarts []string
	for _, e := range epochs {
		restarts = append(restarts, e.Format("15:04:05.000"))
	}
	t.Logf("broker lifetimes began at %v", restarts)
	traces := map[string]bool{}
	for _, a := range rep.Anomalies {
		if a.TraceID != "" && len(traces) < 3 {
			traces[a.TraceID] = true
		}
	}
	for trace := range traces {
		var topics []string
		for _, tp := range r.s.layout.ThreadTopics() {
			topics = append(topics, string(tp))
		}
		cl := kafkatest.Client(t, r.s.brokers, kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
			kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		type pp struct {
			topic string
			part  int32
		}
		var lines []string
		type ppid struct {
			pp
			pid int64
		}
		pending := map[ppid]bool{} // a producer's open transaction holding a record of the run
		idle := 0
		for idle < 3 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			fs := cl.PollFetches(ctx)
			cancel()
			n := 0
			fs.EachRecord(func(rec *kgo.Record) {
				n++
				k := ppid{pp{rec.Topic, rec.Partition}, rec.ProducerID}
				ctl := rec.Attrs.IsControl()
				if string(rec.Key) != trace && !(ctl && pending[k]) {
					return
				}
				pending[k] = !ctl
				desc := ""
				if ctl {
					desc = "CONTROL (commit/abort marker)"
					if len(rec.Key) >= 4 && rec.Key[3] == 0 {
						desc = "ABORT marker"
					} else if len(rec.Key) >= 4 {
						desc = "COMMIT marker"
					}
				} else if v, _, err := r.s.codec.Decode(context.Background(), pipeline.Topic(rec.Topic), rec.Value); err == nil {
					desc = fmt.Sprintf("%+v", v)
					if len(desc) > 160 {
						desc = desc[:160]
					}
				}
				lines = append(lines, fmt.Sprintf("%s[%d]@%d %s pid=%d epoch=%d txn=%v %s", strings.TrimPrefix(rec.Topic, r.s.layout.Prefix), rec.Partition, rec.Offset,
					rec.Timestamp.Format("15:04:05.000"), rec.ProducerID, rec.ProducerEpoch, rec.Attrs.IsTransactional(), desc))
			})
			if n == 0 {
				idle++
			}
		}
		t.Logf("run %s, read_uncommitted with markers (and the marker ending each transaction that holds one):\n%s", trace, strings.Join(lines, "\n"))
	}
}
