package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
)

// registryStack gives a test broker the registry `spine up` gives it
// (upRegistry: Spine's registry on a free port, the contracts registered)
// and returns the config, the registry's URL and a CLI runner configured to
// talk to it.
func registryStack(t *testing.T) (*stack.Config, string, func(args ...string) (int, string, string)) {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":       strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX":  kafkatest.Prefix(t),
		"SPINE_PARTITIONS":    "1",
		"SPINE_REGISTRY_ADDR": "127.0.0.1:0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	url, run, err := upRegistry(t.Context(), cfg, brokers, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	runUntilCleanup(t, run)
	cliCfg := *cfg
	cliCfg.RegistryURL = url
	return cfg, url, func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, cfg: &cliCfg, log: slog.New(slog.DiscardHandler)}
		code := execute(t.Context(), a, args)
		return code, out.String(), errb.String()
	}
}

// runUntilCleanup runs each of runs until the test ends, and checks that
// each stops cleanly.
func runUntilCleanup(t *testing.T, runs ...func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(runs))
	for _, r := range runs {
		go func() { done <- r(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range runs {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("runner: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("runner did not stop within 30s")
				return
			}
		}
	})
}

// TestWireRegistry: `spine up` serves the registry and registers Spine's
// contracts under FULL_TRANSITIVE.
func TestWireRegistry(t *testing.T) {
	t.Parallel()
	cfg, url, _ := registryStack(t)
	if !strings.HasPrefix(url, "http://") {
		t.Fatalf("stack has no registry: url %q", url)
	}
	cl, err := newSRClient(cfg, url)
	if err != nil {
		t.Fatal(err)
	}
	l := pipeline.NewLayout(&cfg.Config)
	for subj, c := range l.ContractSubjects() {
		ss, err := cl.SchemaByVersion(t.Context(), subj, -1)
		if err != nil || ss.Version != 2 || ss.Schema.Schema != mustCompact(t, schemas.MustSource(c, schemas.V2)) {
			t.Errorf("%s latest = v%d, %v; want contract %s v2", subj, ss.Version, err, c)
		}
		if r := cl.Compatibility(t.Context(), subj); r[0].Level != sr.CompatFullTransitive {
			t.Errorf("%s level %v; want FULL_TRANSITIVE", subj, r[0].Level)
		}
	}
}

func mustCompact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// editContract writes a copy of runtime_event v2 with one field edited.
func editContract(t *testing.T, field string, edit func(map[string]any)) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2)), &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range doc["fields"].([]any) {
		if fm := f.(map[string]any); fm["name"] == field {
			edit(fm)
			found = true
		}
	}
	if !found {
		t.Fatalf("runtime_event v2 has no field %s", field)
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	p := filepath.Join(t.TempDir(), "runtime_event.v3.avsc")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLISchemas(t *testing.T) {
	t.Parallel()
	cfg, _, run := registryStack(t)
	l := pipeline.NewLayout(&cfg.Config)
	control := schemas.ValueSubject(string(l.Control()))
	intents := schemas.ValueSubject(string(l.Intents()))

	code, out, errb := run("schemas", "register")
	if code != 0 || !strings.Contains(out, control) {
		t.Fatalf("register contracts: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run("schemas", "list")
	if code != 0 || !strings.Contains(out, control) || !strings.Contains(out, "FULL_TRANSITIVE") {
		t.Errorf("list: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run("schemas", "get", intents, "1")
	if code != 0 || !strings.Contains(out, `"name": "Intent"`) || !strings.Contains(errb, "version 1") {
		t.Errorf("get: exit %d\n%s%s", code, out, errb)
	}

	// The shipped contract passes; an incompatible edit fails naming the
	// field, with exit code 1.
	v2 := filepath.Join("..", "..", "schemas", "avro", "runtime_event.v2.avsc")
	if code, out, errb := run("schemas", "check", v2); code != 0 || !strings.Contains(out, "ok\t"+control) {
		t.Errorf("check shipped v2: exit %d\n%s%s", code, out, errb)
	}
	for _, tc := range []struct {
		field string
		edit  func(map[string]any)
	}{
		{"tenant", func(f map[string]any) { delete(f, "default") }},
		{"actor", func(f map[string]any) { f["type"] = "int" }},
	} {
		file := editContract(t, tc.field, tc.edit)
		code, out, errb := run("schemas", "check", file)
		if code != 1 || !strings.Contains(out, "INCOMPATIBLE\t"+control) || !strings.Contains(out, "'"+tc.field+"'") {
			t.Errorf("check edit of %s: exit %d, want 1 naming the field\n%s%s", tc.field, code, out, errb)
		}
		if code, _, errb := run("schemas", "register", file); code != 1 || !strings.Contains(errb, tc.field) {
			t.Errorf("register edit of %s: exit %d, want 1 naming the field\n%s", tc.field, code, errb)
		}
	}

	code, out, errb = run("schemas", "diff", control, "1", "2")
	if code != 0 || !strings.Contains(out, "+ field tenant: string") || strings.Contains(out, "- field") {
		t.Errorf("diff 1 2: exit %d\n%s%s", code, out, errb)
	}
	file := editContract(t, "actor", func(f map[string]any) { f["type"] = "int" })
	code, out, errb = run("schemas", "diff", control, "latest", file)
	if code != 0 || !strings.Contains(out, "~ field actor: string → int") {
		t.Errorf("diff latest file: exit %d\n%s%s", code, out, errb)
	}

	// A file with another name needs --subject.
	other := filepath.Join(t.TempDir(), "order.avsc")
	_ = os.WriteFile(other, []byte(`{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`), 0o600)
	if code, _, errb := run("schemas", "register", other); code != exitUsage {
		t.Errorf("register without subject: exit %d %s", code, errb)
	}
	if code, out, errb := run("schemas", "register", "--subject", "orders-value", other); code != 0 || !strings.Contains(out, "orders-value\tversion 1") {
		t.Errorf("register --subject: exit %d\n%s%s", code, out, errb)
	}
}

func TestCLIRegistryNeedsBrokers(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("KAFKA_BOOTSTRAP_SERVERS", "")
	code, _, errb := runCLI(t, "", "registry")
	if code != exitUsage || !strings.Contains(errb, "KAFKA_BROKERS") {
		t.Errorf("registry without brokers: exit %d %q", code, errb)
	}
}
