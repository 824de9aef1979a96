package stack_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
)

// The PostgreSQL sink is built when asked for by name, and with every part
// only when SPINE_PG_URL is set; asked for without a database, Build says
// what to set. Build does no I/O: the database named here does not exist.
func TestBuildPGSink(t *testing.T) {
	t.Parallel()
	withURL, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1",
		"SPINE_PG_URL":  "postgres://spine:s3cret@127.0.0.1:1/spine",
	}))
	if err != nil {
		t.Fatal(err)
	}
	env := func(cfg *stack.Config) stack.Env {
		return stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}
	}
	for _, tt := range []struct {
		name  string
		cfg   *stack.Config
		parts []string
		sink  bool
		err   string
	}{
		{"every part, no database", testConfig(t), nil, false, ""},
		{"every part, a database", withURL, nil, true, ""},
		{"pgsink, a database", withURL, []string{stack.PGSink}, true, ""},
		{"pgsink, no database", testConfig(t), []string{stack.PGSink}, false, "SPINE_PG_URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := stack.Build(env(tt.cfg), tt.parts...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if (st.Sink != nil) != tt.sink {
				t.Errorf("sink built %v, want %v", st.Sink != nil, tt.sink)
			}
		})
	}
	// The URL is a secret: the config prints it without the password.
	if s := withURL.Postgres.URL.String(); strings.Contains(s, "s3cret") {
		t.Errorf("SPINE_PG_URL printed as %q", s)
	}
}

// Every problem of the sink's settings is reported with the others, and
// never quotes the URL.
func TestPGSinkConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":               "127.0.0.1:1",
		"SPINE_PG_URL":                "postgres://spine:s3cret@127.0.0.1:notaport/spine",
		"SPINE_PG_SCHEMA":             "Robert'); DROP TABLE",
		"SPINE_PG_BATCH_RECORDS":      "0",
		"SPINE_PG_MAX_ARTIFACT_BYTES": "-1",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, v := range []string{"SPINE_PG_URL", "SPINE_PG_SCHEMA", "SPINE_PG_BATCH_RECORDS", "SPINE_PG_MAX_ARTIFACT_BYTES"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error quotes the password: %v", err)
	}
}
