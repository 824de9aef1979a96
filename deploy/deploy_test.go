package deploy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"go.yaml.in/yaml/v3"

	"github.com/spinerun/spine/cmd/spine/stack"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// ---- docker-compose.yml

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Hostname    string         `yaml:"hostname"`
	Command     []string       `yaml:"command"`
	Environment envMap         `yaml:"environment"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	Profiles    []string       `yaml:"profiles"`
	DependsOn   dependsOn      `yaml:"depends_on"`
	Healthcheck map[string]any `yaml:"healthcheck"`
}

// dependsOn is a service's depends_on in either compose form: a list of
// service names or a mapping from name to condition.
type dependsOn map[string]any

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := map[string]any{}
	switch n.Kind {
	case yaml.MappingNode:
		if err := n.Decode(&out); err != nil {
			return err
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			out[s] = nil
		}
	default:
		return fmt.Errorf("line %d: depends_on is neither a mapping nor a list", n.Line)
	}
	*d = out
	return nil
}

// envMap is a service's environment in either compose form: a mapping or a
// list of KEY=VALUE.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	out := map[string]string{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		out = m
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment is neither a mapping nor a list", n.Line)
	}
	*e = out
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	return c
}

// isSpine reports whether a service runs the spine image built here.
func (s composeService) isSpine() bool { return s.Build != nil || strings.HasPrefix(s.Image, "spine:") }

// processor is what `spine run <processor>` runs, "up" for `spine up`.
func (s composeService) processor() string {
	if len(s.Command) == 2 && s.Command[0] == "run" {
		return s.Command[1]
	}
	if len(s.Command) == 1 && s.Command[0] == "up" {
		return "up"
	}
	return ""
}

// oneShot reports whether a Spine service runs a command to completion
// (`spine schemas register`) rather than a long-lived process.
func (s composeService) oneShot() bool {
	return len(s.Command) == 2 && s.Command[0] == "schemas" && s.Command[1] == "register"
}

func (s composeService) profile() string { return strings.Join(s.Profiles, ",") }

// listens reports whether service svc listens on port (from its Kafka
// listeners, registry listeners, Redpanda addresses or published ports).
func (c composeFile) listens(svc string, port string) bool {
	s, ok := c.Services[svc]
	if !ok {
		return false
	}
	var where []string
	where = append(where, s.Environment["KAFKA_LISTENERS"], s.Environment["SCHEMA_REGISTRY_LISTENERS"])
	where = append(where, s.Command...)
	for _, p := range s.Ports {
		_, container, _ := strings.Cut(p, ":")
		where = append(where, ":"+container)
	}
	for _, w := range where {
		if regexp.MustCompile(`:` + regexp.QuoteMeta(port) + `\b`).MatchString(w) {
			return true
		}
	}
	return false
}

var spineProcessors = []string{"orchestrator", "dataplane", "gates", "drift", "projections", "canary"}

func TestComposeSpineEnvironment(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	known := map[string]bool{}
	for _, v := range stack.EnvVars() {
		known[v] = true
	}
	required := []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "SPINE_INSTANCE_ID"}

	n := 0
	for name, s := range c.Services {
		if !s.isSpine() {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for k := range s.Environment {
				if !known[k] {
					t.Errorf("sets %s, which Spine does not read (stack.EnvVars)", k)
				}
			}
			for _, k := range required {
				if k == "SPINE_INSTANCE_ID" && s.oneShot() {
					continue
				}
				if s.Environment[k] == "" {
					t.Errorf("%s is required on a real cluster and is not set", k)
				}
			}
			// The values are valid: the binary's own loader accepts them.
			if _, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(s.Environment)); err != nil {
				t.Errorf("spine would refuse this environment: %v", err)
			}
			if p := s.processor(); !s.oneShot() && (p == "" || p != "up" && !slices.Contains(spineProcessors, p)) {
				t.Errorf("command %q is not `run <%s>`, `up` or `schemas register`", s.Command, strings.Join(spineProcessors, "|"))
			}
			// Long-lived processes start after the contracts are registered.
			if s.processor() != "" && s.processor() != "up" {
				if d, ok := s.DependsOn["spine-init"].(map[string]any); !ok || d["condition"] != "service_completed_successfully" {
					t.Errorf("does not wait for spine-init (service_completed_successfully)")
				}
			}
			for _, b := range strings.Split(s.Environment["KAFKA_BROKERS"], ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(b))
				if err != nil {
					t.Errorf("KAFKA_BROKERS %q: %v", b, err)
					continue
				}
				if !c.listens(host, port) {
					t.Errorf("KAFKA_BROKERS names %s:%s, but no service %s listens on %s", host, port, host, port)
				}
				if _, ok := s.DependsOn[host]; !ok {
					t.Errorf("does not depend_on its broker %s", host)
				}
				if c.Services[host].profile() != s.profile() {
					t.Errorf("broker %s is in profile %q, the service in %q", host, c.Services[host].profile(), s.profile())
				}
			}
			u, err := url.Parse(s.Environment["SCHEMA_REGISTRY_URL"])
			if err != nil {
				t.Fatalf("SCHEMA_REGISTRY_URL: %v", err)
			}
			if !c.listens(u.Hostname(), u.Port()) {
				t.Errorf("SCHEMA_REGISTRY_URL names %s, but no service %s listens on %s", u.Host, u.Hostname(), u.Port())
			}
			if _, port, err := net.SplitHostPort(s.Environment["SPINE_HTTP_ADDR"]); err != nil || port != "8080" {
				t.Errorf("SPINE_HTTP_ADDR %q: Prometheus scrapes :8080 (the Dockerfile's EXPOSE)", s.Environment["SPINE_HTTP_ADDR"])
			}
		})
	}
	if n == 0 {
		t.Fatal("no Spine service in docker-compose.yml")
	}
	if init, ok := c.Services["spine-init"]; !ok || !init.oneShot() {
		t.Error("no spine-init service running `spine schemas register`: nothing would register the contracts in Confluent's registry")
	}
}

func TestComposeTopology(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	// Default profile: two orchestrators and two dataplanes (consumer groups
	// split partitions between them), one gates, one drift monitor, one
	// projections, one canary analyzer.
	want := map[string]int{"orchestrator": 2, "dataplane": 2, "gates": 1, "drift": 1, "projections": 1, "canary": 1}
	got := map[string]int{}
	txnIDs := map[string]string{}
	for name, s := range c.Services {
		if !s.isSpine() || s.oneShot() {
			continue
		}
		if s.profile() == "" {
			got[s.processor()]++
		}
		// Each instance's transactional id (group + instance id) must be
		// unique, or instances fence each other.
		id := s.processor() + "/" + s.Environment["SPINE_INSTANCE_ID"]
		if other, ok := txnIDs[id]; ok {
			t.Errorf("%s and %s share processor and SPINE_INSTANCE_ID (%s)", name, other, id)
		}
		txnIDs[id] = name
	}
	for p, n := range want {
		if got[p] != n {
			t.Errorf("default profile runs %d %s instance(s), want %d", got[p], p, n)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("default profile runs unexpected spine command %q", p)
		}
	}

	// The redpanda profile: one broker container with its own registry and
	// the all-in-one `spine up`.
	rp, ok := c.Services["redpanda"]
	if !ok || !slices.Contains(rp.Profiles, "redpanda") {
		t.Fatal("no redpanda service in profile redpanda")
	}
	if !slices.ContainsFunc(rp.Command, func(a string) bool { return strings.HasPrefix(a, "--schema-registry-addr=") }) {
		t.Error("redpanda does not serve its built-in schema registry (--schema-registry-addr)")
	}
	if cfg := c.Services["redpanda-registry-config"]; !slices.Contains(cfg.Command, `{"compatibility": "FULL_TRANSITIVE"}`) ||
		!slices.Contains(cfg.Command, "http://redpanda:8081/config") {
		t.Error("the redpanda profile does not set its registry to FULL_TRANSITIVE")
	}
	for name, s := range c.Services {
		if slices.Contains(s.Profiles, "redpanda") && s.isSpine() && s.processor() != "up" {
			t.Errorf("%s: the redpanda profile runs spine as one `spine up` process", name)
		}
	}

	// Host ports do not collide within a profile (the redpanda profile is an
	// alternative to kafka + schema-registry + projections, not run with
	// them).
	seen := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			host, _, _ := strings.Cut(p, ":")
			key := s.profile() + "/" + host
			if other, ok := seen[key]; ok {
				t.Errorf("%s and %s both publish host port %s", name, other, host)
			}
			seen[key] = name
		}
	}
}

func TestComposeKafkaAndRegistry(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	k, ok := c.Services["kafka"]
	if !ok {
		t.Fatal("no kafka service")
	}
	if !regexp.MustCompile(`^apache/kafka:4\.\d+\.\d+$`).MatchString(k.Image) {
		t.Errorf("kafka image %q is not a pinned apache/kafka 4.x", k.Image)
	}
	for key, want := range map[string]string{
		"KAFKA_PROCESS_ROLES":                            "broker,controller",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
		"KAFKA_MIN_INSYNC_REPLICAS":                      "1",
		"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
		"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
	} {
		if got := k.Environment[key]; got != want {
			t.Errorf("kafka %s = %q, want %q (single-node KRaft)", key, got, want)
		}
	}
	if k.Healthcheck == nil {
		t.Error("kafka has no healthcheck: Spine services would start before it answers")
	}

	sr, ok := c.Services["schema-registry"]
	if !ok {
		t.Fatal("no schema-registry service")
	}
	if !strings.HasPrefix(sr.Image, "confluentinc/cp-schema-registry:") {
		t.Errorf("schema-registry image %q is not Confluent's", sr.Image)
	}
	if got := strings.ToUpper(sr.Environment["SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL"]); got != "FULL_TRANSITIVE" {
		t.Errorf("schema-registry compatibility %q, want FULL_TRANSITIVE (contracts v1 and v2 are full-transitive compatible)", got)
	}
	for _, b := range strings.Split(sr.Environment["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"], ",") {
		u, err := url.Parse(strings.TrimSpace(b))
		if err != nil || !c.listens(u.Hostname(), u.Port()) {
			t.Errorf("schema-registry bootstrap %q is no Kafka listener in this file", b)
		}
	}
}

func TestComposeMounts(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
				t.Errorf("%s builds from ., but: %v", name, err)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts named volume %q that is not declared", name, src)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
	}
}

// mountTarget returns where service svc mounts the repository path src.
func (c composeFile) mountTarget(t *testing.T, svc, src string) string {
	t.Helper()
	for _, v := range c.Services[svc].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(parts[0]) == filepath.Clean(src) {
			return parts[1]
		}
	}
	t.Fatalf("%s does not mount %s", svc, src)
	return ""
}

// ---- Dockerfile

func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	known := map[string]bool{}
	for _, v := range stack.EnvVars() {
		known[v] = true
	}
	var froms []string
	var exposed []string
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, strings.Join(f[1:], " "))
		case "EXPOSE":
			exposed = append(exposed, f[1:]...)
		case "ENV":
			k, _, _ := strings.Cut(f[1], "=")
			if !known[k] {
				t.Errorf("ENV %s is not a variable Spine reads (stack.EnvVars)", k)
			}
		}
	}
	if len(froms) < 2 || !regexp.MustCompile(`^golang:1\.26\S* AS \w+`).MatchString(froms[0]) {
		t.Errorf("want a multi-stage build from golang:1.26, got FROM %q", froms)
	}
	if !strings.Contains(df, "./cmd/spine") {
		t.Error("Dockerfile does not build ./cmd/spine")
	}
	for _, p := range []string{"8080", "8081"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("Dockerfile does not EXPOSE %s", p)
		}
	}
}

// ---- Prometheus

type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func decodeYAMLStrict(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

var promDuration = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)

func TestPrometheusScrapeConfig(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	var pc promConfig
	b, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pc); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}

	// Every Spine service is scraped on its SPINE_HTTP_ADDR port, and every
	// Spine target is a Spine service.
	scraped := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		if !strings.HasPrefix(sc.JobName, "spine") {
			continue
		}
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %q, Spine serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			if _, clash := st.Labels["processor"]; clash {
				t.Errorf("job %s sets a processor target label, which clashes with the metrics' own processor label", sc.JobName)
			}
			for _, tg := range st.Targets {
				host, port, err := net.SplitHostPort(tg)
				if err != nil {
					t.Errorf("target %q: %v", tg, err)
					continue
				}
				s, ok := c.Services[host]
				if !ok || !s.isSpine() {
					t.Errorf("job %s scrapes %s, which is no Spine service in docker-compose.yml", sc.JobName, host)
					continue
				}
				if _, p, _ := net.SplitHostPort(s.Environment["SPINE_HTTP_ADDR"]); p != port {
					t.Errorf("job %s scrapes %s:%s, the service serves on %q", sc.JobName, host, port, s.Environment["SPINE_HTTP_ADDR"])
				}
				scraped[host] = true
			}
		}
	}
	for name, s := range c.Services {
		if s.isSpine() && !s.oneShot() && !scraped[name] {
			t.Errorf("Spine service %s is not scraped", name)
		}
	}

	// rule_files resolve, through the compose mount, to the rule files here.
	target := c.mountTarget(t, "prometheus", "./deploy/prometheus")
	var matched int
	for _, rf := range pc.RuleFiles {
		rel, ok := strings.CutPrefix(rf, target+"/")
		if !ok {
			t.Errorf("rule file %s is outside the mounted %s", rf, target)
			continue
		}
		m, err := filepath.Glob(filepath.Join(root, "deploy/prometheus", rel))
		if err != nil {
			t.Errorf("rule file glob %s: %v", rf, err)
		}
		matched += len(m)
	}
	if matched == 0 {
		t.Error("rule_files match no rule file in deploy/prometheus")
	}
}

// recordedRules returns the recording rules' names in deploy/prometheus.
func loadRules(t *testing.T) map[string]ruleFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files in deploy/prometheus/rules (%v)", err)
	}
	out := map[string]ruleFile{}
	for _, p := range paths {
		var rf ruleFile
		decodeYAMLStrict(t, p, &rf)
		out[filepath.Base(p)] = rf
	}
	return out
}

var builtinSeries = map[string]bool{"up": true, "scrape_duration_seconds": true}

func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	metrics := spineMetrics(t)
	files := loadRules(t)
	recorded := map[string]bool{}
	for _, rf := range files {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
	}
	groups := map[string]bool{}
	alerts := map[string]bool{}
	nAlerts := 0
	for file, rf := range files {
		if len(rf.Groups) == 0 {
			t.Errorf("%s: no groups", file)
		}
		for _, g := range rf.Groups {
			if g.Name == "" || groups[g.Name] {
				t.Errorf("%s: group name %q empty or repeated", file, g.Name)
			}
			groups[g.Name] = true
			if g.Interval != "" && !promDuration.MatchString(g.Interval) {
				t.Errorf("%s/%s: interval %q is no duration", file, g.Name, g.Interval)
			}
			for i, r := range g.Rules {
				where := fmt.Sprintf("%s/%s rule %d (%s%s)", file, g.Name, i, r.Record, r.Alert)
				if (r.Record == "") == (r.Alert == "") {
					t.Errorf("%s: a rule is either record or alert", where)
				}
				if r.Record != "" && !regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+$`).MatchString(r.Record) {
					t.Errorf("%s: record name %q is not level:metric:operations", where, r.Record)
				}
				if r.Alert != "" {
					nAlerts++
					if alerts[r.Alert] {
						t.Errorf("%s: alert repeated", where)
					}
					alerts[r.Alert] = true
					if sev := r.Labels["severity"]; sev != "page" && sev != "ticket" {
						t.Errorf("%s: severity %q, want page or ticket", where, sev)
					}
					if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
						t.Errorf("%s: needs summary and description annotations", where)
					}
					if r.For != "" && !promDuration.MatchString(r.For) {
						t.Errorf("%s: for %q is no duration", where, r.For)
					}
				}
				used, err := checkPromQL(r.Expr)
				if err != nil {
					t.Errorf("%s: expr: %v\n%s", where, err, r.Expr)
					continue
				}
				for _, m := range used {
					if !metrics[m] && !recorded[m] && !builtinSeries[m] {
						t.Errorf("%s: reads %s, which Spine does not expose and no rule records", where, m)
					}
				}
			}
		}
	}
	if nAlerts == 0 {
		t.Error("no alerts")
	}
	// The golden path's SLO alerts exist.
	for _, a := range []string{"SpineRunErrorBudgetFastBurn", "SpineRunErrorBudgetSlowBurn", "SpineGoldenPathStalled"} {
		if !alerts[a] {
			t.Errorf("alert %s missing", a)
		}
	}
}

// ---- Grafana

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var grafanaVar = regexp.MustCompile(`\$(__\w+|\{\w+\}|\w+)`)

// expandGrafana replaces Grafana's variables so the expression is PromQL.
func expandGrafana(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		switch v {
		case "$__rate_interval", "$__interval", "$__range", "$__range_s":
			return "5m"
		}
		return "value"
	})
}

func TestGrafanaDashboards(t *testing.T) {
	t.Parallel()
	metrics := spineMetrics(t)
	recorded := map[string]bool{}
	for _, rf := range loadRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy/grafana/provisioning/datasources/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("datasource provisioning: %v", err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("want one prometheus data source at http://prometheus:9090, got %+v", ds.Datasources)
	}
	dsUID := ds.Datasources[0].UID

	// The dashboard provider reads the directory compose mounts the JSON in.
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	b, err = os.ReadFile(filepath.Join(root, "deploy/grafana/provisioning/dashboards/spine.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatalf("dashboard provisioning: %v", err)
	}
	target := loadCompose(t).mountTarget(t, "grafana", "./deploy/grafana/dashboards")
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != target {
		t.Errorf("dashboard provider path %+v, compose mounts the dashboards at %s", prov.Providers, target)
	}

	paths, err := filepath.Glob(filepath.Join(root, "deploy/grafana/dashboards/*.json"))
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string]bool{}
	uids := map[string]bool{}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var d dashboard
			dec := json.NewDecoder(strings.NewReader(string(b)))
			if err := dec.Decode(&d); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if d.UID == "" || uids[d.UID] {
				t.Errorf("uid %q empty or repeated", d.UID)
			}
			uids[d.UID] = true
			titles[d.Title] = true
			for _, v := range d.Templating.List {
				m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
				if m == nil {
					t.Errorf("variable %s: definition %q is not label_values(metric, label)", v.Name, v.Definition)
				} else if !metrics[m[1]] {
					t.Errorf("variable %s reads %s, which Spine does not expose", v.Name, m[1])
				}
			}
			ids := map[int]bool{}
			var walk func([]panel)
			queries := 0
			walk = func(ps []panel) {
				for _, pn := range ps {
					if ids[pn.ID] {
						t.Errorf("panel id %d repeated", pn.ID)
					}
					ids[pn.ID] = true
					walk(pn.Panels)
					if pn.Type == "row" {
						continue
					}
					if pn.Datasource == nil || pn.Datasource.UID != dsUID {
						t.Errorf("panel %q: data source is not the provisioned uid %q", pn.Title, dsUID)
					}
					if len(pn.Targets) == 0 {
						t.Errorf("panel %q has no query", pn.Title)
					}
					for _, tg := range pn.Targets {
						queries++
						used, err := checkPromQL(expandGrafana(tg.Expr))
						if err != nil {
							t.Errorf("panel %q: %v\n%s", pn.Title, err, tg.Expr)
							continue
						}
						if len(used) == 0 {
							t.Errorf("panel %q: query reads no metric: %s", pn.Title, tg.Expr)
						}
						for _, m := range used {
							if !metrics[m] && !recorded[m] && !builtinSeries[m] {
								t.Errorf("panel %q reads %s, which Spine's /metrics does not expose and no rule records", pn.Title, m)
							}
						}
					}
				}
			}
			walk(d.Panels)
			if queries == 0 {
				t.Error("dashboard has no queries")
			}
		})
	}
	for _, want := range []string{"Spine / Golden path", "Spine / Canary"} {
		if !titles[want] {
			t.Errorf("dashboard %q missing", want)
		}
	}
}

// ---- the checker itself

func TestPromQLChecker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr    string
		metrics []string
		bad     string // substring of the error; empty: valid
	}{
		{expr: `sum by (hop) (rate(spine_golden_path_events_total{hop="intent.received"}[5m]))`, metrics: []string{"spine_golden_path_events_total"}},
		{expr: `histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))`, metrics: []string{"x_bucket"}},
		{expr: `sum(rate(a_total[5m])) by (route) / sum(rate(b_total[5m])) by (route)`, metrics: []string{"a_total", "b_total"}},
		{expr: "a:b:c > (14.4 * 0.01)\nand\nd:e:f > 0.1", metrics: []string{"a:b:c", "d:e:f"}},
		{expr: `max(x{route="canary"}) > max(x{route="baseline"}) + 0.02`, metrics: []string{"x", "x"}},
		{expr: `up{job="spine"} == 0`, metrics: []string{"up"}},
		{expr: `max_over_time(g[10m:1m]) offset 5m`, metrics: []string{"g"}},
		{expr: `rate(x_total[5m]`, bad: "unclosed"},
		{expr: `rate(x_total)`, bad: "range vector"},
		{expr: `rate(x_gauge[5m])`, bad: "not a counter"},
		{expr: `histogram_quantile(0.9, rate(x_total[5m]))`, bad: "_bucket"},
		{expr: `x{a="b"`, bad: "unclosed"},
		{expr: `x{a=}`, bad: "quoted"},
		{expr: `x{a=b}`, bad: "quoted"},
		{expr: `x{a=~"("}`, bad: "regex"},
		{expr: `x{a>"b"}`, bad: "operator"},
		{expr: `sum by (le (rate(x_total[5m]))`, bad: "needs (...)"},
		{expr: `rate(x_total[5])`, bad: "unit"},
		{expr: `ratee(x_total[5m])`, bad: "unknown function"},
		{expr: `x y`, bad: "without an operator"},
		{expr: `x + * y`, bad: "without a left operand"},
		{expr: `x = 1`, bad: "=="},
		{expr: `x >`, bad: "ends with an operator"},
		{expr: `x > on () group_left (max(y) + 1)`, bad: "label names"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			got, err := checkPromQL(tt.expr)
			if tt.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("want an error containing %q, got %v", tt.bad, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("valid expression refused: %v", err)
			}
			if !slices.Equal(got, tt.metrics) {
				t.Errorf("metrics %v, want %v", got, tt.metrics)
			}
		})
	}
}

// ---- deploy/kafka

func TestKafkaPins(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(root, "deploy/kafka/pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>(4\.\d+\.\d+)</kafka.version>`).FindSubmatch(b)
	if m == nil {
		t.Fatal("deploy/kafka/pom.xml does not pin kafka.version to a 4.x release")
	}
	// The test broker and the compose broker are the same Kafka release.
	if img := loadCompose(t).Services["kafka"].Image; img != "apache/kafka:"+string(m[1]) {
		t.Errorf("compose runs %s, the test broker is Kafka %s", img, m[1])
	}
	for _, s := range []string{"start.sh", "stop.sh"} {
		p := filepath.Join(root, "deploy/kafka", s)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
		if out, err := exec.CommandContext(t.Context(), "bash", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}
}

// TestPromtool checks the Prometheus config and rules with Prometheus' own
// promtool, and runs the rule unit tests in deploy/prometheus/tests (alerts
// fire on failing, stalled and canary-worse traffic and stay quiet on
// healthy traffic). CI installs promtool (Debian's prometheus package);
// elsewhere the test skips, saying so, and the checks above still run.
func TestPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIPPED: promtool is not on PATH (apt-get install prometheus); the built-in PromQL checks still ran")
	}
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	prom := filepath.Join(root, "deploy/prometheus")
	rules, err := filepath.Glob(filepath.Join(prom, "rules/*.yml"))
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rules (%v)", err)
	}
	for _, r := range rules {
		run(".", "check", "rules", r)
	}
	run(".", "test", "rules", filepath.Join(prom, "tests/spine_test.yml"))

	// prometheus.yml names its rule files where compose mounts them; check
	// it with that mount point rewritten to a copy here.
	c := loadCompose(t)
	target := c.mountTarget(t, "prometheus", "./deploy/prometheus")
	tmp := t.TempDir()
	b, err := os.ReadFile(filepath.Join(prom, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(tmp, "mount"), os.DirFS(prom)); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(b), target+"/", filepath.Join(tmp, "mount")+"/")
	if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run(tmp, "check", "config", "prometheus.yml")
}

// TestComposeConfig validates docker-compose.yml (and its redpanda profile)
// with Docker Compose itself where it is installed (`docker compose` or
// `docker-compose`; validating needs no engine). Elsewhere it skips, saying
// so, and the checks above still run.
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	var compose []string
	if exec.CommandContext(t.Context(), "docker", "compose", "version").Run() == nil {
		compose = []string{"docker", "compose"}
	} else if p, err := exec.LookPath("docker-compose"); err == nil {
		compose = []string{p}
	} else {
		t.Skip("SKIPPED: neither `docker compose` nor docker-compose is installed; the compose checks above still ran")
	}
	for _, profile := range []string{"", "redpanda"} {
		args := append(compose[1:], "-f", filepath.Join(root, "docker-compose.yml"))
		if profile != "" {
			args = append(args, "--profile", profile)
		}
		args = append(args, "config", "-q")
		if out, err := exec.CommandContext(t.Context(), compose[0], args...).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", compose[0], strings.Join(args, " "), err, out)
		}
	}
}
