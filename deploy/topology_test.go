package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/canary"
)

// TestComposeTopologyRuns runs docker-compose.yml's default profile without
// Docker: every Spine service becomes a `spine` process with the
// environment and command compose gives it, the test broker stands in for
// kafka and Spine's own registry (`spine registry`) for Confluent's (only
// the addresses are rewritten: brokers, registry URL, a free HTTP port per
// service, a topic prefix). Intents produced with `spine produce` must all
// end, both orchestrator and both dataplane instances must take a share of
// the work, and the projections service must see every run.
func TestComposeTopologyRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs seven spine processes")
	}
	t.Parallel()
	bin := buildSpine(t) // before the clock starts: a cold build under load takes minutes
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := loadCompose(t)
	bs := kafkatest.Brokers(t)
	brokers := strings.Join(bs, ",")
	prefix := kafkatest.Prefix(t)
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SPINE_TOPIC_PREFIX=" + prefix}

	regAddr := freeAddr(t)
	start(ctx, t, "registry", bin, []string{"registry"}, append(slices.Clone(base),
		"KAFKA_BROKERS="+brokers, "SPINE_REGISTRY_ADDR="+regAddr, "SPINE_LOG_LEVEL=warn", "SPINE_HTTP_ADDR="+freeAddr(t)),
		"http://"+regAddr+"/subjects")
	registryURL := "http://" + regAddr

	urls := map[string]string{}
	envOf := func(name string) []string {
		env := slices.Clone(base)
		for k, v := range c.Services[name].Environment {
			switch k {
			case "KAFKA_BROKERS":
				v = brokers
			case "SCHEMA_REGISTRY_URL":
				v = registryURL
			case "SPINE_HTTP_ADDR":
				v = freeAddr(t)
				urls[name] = "http://" + v
			}
			env = append(env, k+"="+v)
		}
		return env
	}

	// spine-init first, as compose orders it.
	init := exec.CommandContext(ctx, bin, c.Services["spine-init"].Command...)
	init.Env = envOf("spine-init")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("spine-init (%s): %v\n%s", strings.Join(init.Args[1:], " "), err, out)
	}

	var names []string
	for name, s := range c.Services {
		if s.isSpine() && !s.oneShot() && s.profile() == "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		start(ctx, t, name, bin, c.Services[name].Command, envOf(name), urls[name]+"/healthz")
	}

	// /healthz answers before an instance has joined its consumer group:
	// wait until every instance of the scaled-out processors holds
	// partitions, or the first to join could take every run.
	instances := map[string]int{}
	for _, name := range names {
		if p := c.Services[name].processor(); p == "orchestrator" || p == "dataplane" {
			instances[p]++
		}
	}
	adm := kadm.NewClient(kafkatest.Client(t, bs))
	layout := pipeline.Layout{Prefix: prefix}
	gctx, gcancel := context.WithTimeout(ctx, 60*time.Second)
	defer gcancel()
	waitFor(gctx, t, nil, "every orchestrator and dataplane instance holds partitions", func() error {
		for p, want := range instances {
			group := layout.Group(p)
			gs, err := adm.DescribeGroups(gctx, group)
			if err != nil {
				return err
			}
			g := gs[group]
			if g.Err != nil {
				return fmt.Errorf("group %s: %w", group, g.Err)
			}
			assigned := 0
			for _, m := range g.Members {
				if a, ok := m.Assigned.AsConsumer(); ok && slices.ContainsFunc(a.Topics, func(tp kmsg.ConsumerMemberAssignmentTopic) bool { return len(tp.Partitions) > 0 }) {
					assigned++
				}
			}
			if g.State != "Stable" || assigned != want {
				return fmt.Errorf("group %s is %s with %d of %d instances holding partitions", group, g.State, assigned, want)
			}
		}
		return nil
	})

	const n = 40
	produce := exec.CommandContext(ctx, bin, "produce", "--count", fmt.Sprint(n))
	produce.Env = append(slices.Clone(base), "KAFKA_BROKERS="+brokers, "SCHEMA_REGISTRY_URL="+registryURL)
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("spine produce: %v\n%s", err, out)
	}

	// Every run ends, counted by the orchestrators between them and by the
	// projections service.
	waitFor(ctx, t, nil, fmt.Sprintf("%d runs end", n), func() error {
		var runs float64
		for _, name := range names {
			if c.Services[name].processor() == "orchestrator" {
				runs += sumMetric(t, urls[name], "spine_runs_total", nil)
			}
		}
		if runs != n {
			return fmt.Errorf("orchestrators counted %v terminal runs", runs)
		}
		var rep struct {
			Groups []struct {
				Terminals int64 `json:"terminal_runs"`
			} `json:"groups"`
		}
		resp, err := http.Get(urls["projections"] + "/v1/stats/golden-path")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			return err
		}
		var got int64
		for _, g := range rep.Groups {
			got += g.Terminals
		}
		if got != n {
			return fmt.Errorf("projections show %d terminal runs", got)
		}
		return nil
	})

	// The canary analyzer runs on its own and serves the rollout flag.
	resp, err := http.Get(urls["canary"] + "/v1/flags")
	if err != nil {
		t.Fatal(err)
	}
	var flags struct {
		Rollout canary.Rollout `json:"v2_rollout"`
	}
	err = json.NewDecoder(resp.Body).Decode(&flags)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || flags.Rollout.Phase == "" {
		t.Errorf("canary /v1/flags: %d %+v (%v)", resp.StatusCode, flags, err)
	}

	// Scaling out works: each instance of a processor took a share.
	for _, name := range names {
		p := c.Services[name].processor()
		if p != "orchestrator" && p != "dataplane" {
			continue
		}
		if got := sumMetric(t, urls[name], "spine_processor_records_total", map[string]string{"outcome": "ok"}); got == 0 {
			t.Errorf("%s handled no record: its consumer group did not share the partitions", name)
		}
	}
}

// start runs one spine process until the test ends and waits until ready
// (a GET of it answers 200).
func start(ctx context.Context, t *testing.T, name, bin string, args, env []string, ready string) {
	t.Helper()
	c := startProcess(t, name, bin, args, env)
	waitFor(ctx, t, c, name+" answers "+ready, func() error {
		resp, err := http.Get(ready)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
}

// sumMetric scrapes base/metrics and sums the named counter's series whose
// labels include match.
func sumMetric(t *testing.T, base, name string, match map[string]string) float64 {
	t.Helper()
	fams, err := scrape(base + "/metrics")
	if err != nil {
		return 0
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if labelsMatch(m, match) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		ok := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
