package stack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/processors/orchestrator"
)

func testConfig(t *testing.T) *stack.Config {
	t.Helper()
	cfg, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Build makes what each part needs and nothing more, without I/O: the
// brokers and the registry named here do not exist.
func TestBuildMakesWhatEachPartNeeds(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	env := stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}
	routes := func(st *stack.Stack) []string {
		var got []string
		for _, path := range []string{"/v1/flags", "/v1/canary/analyses", "/v1/gates", "/v1/intents"} {
			_, pattern := st.Routes.Handler(httptest.NewRequest(http.MethodGet, path, nil))
			if pattern != "" {
				got = append(got, path)
			}
		}
		return got
	}
	tests := []struct {
		parts      []string
		router     orchestrator.Router
		processors int
		flags      bool
		store      bool
		analyzer   bool
		folds      bool // the projections processor
		routes     string
	}{
		// The drift monitor only with SPINE_DRIFT_MODE (TestBuildDriftModes).
		{nil, nil, 3, true, true, true, true, "/v1/flags /v1/canary/analyses /v1/gates /v1/intents"},
		{[]string{stack.Orchestrator}, nil, 1, true, false, false, false, "/v1/flags"},
		{[]string{stack.Orchestrator}, orchestrator.Baseline, 1, false, false, false, false, ""},
		{[]string{stack.Dataplane}, nil, 1, false, false, false, false, ""},
		{[]string{stack.Gates}, nil, 1, false, false, false, false, ""},
		// The projections tail the flags for the dashboard's canary view.
		{[]string{stack.Projections}, nil, 0, true, true, false, true, "/v1/flags /v1/gates"},
		{[]string{stack.Canary}, nil, 0, true, true, true, false, "/v1/flags /v1/canary/analyses"},
		{[]string{stack.Ingress}, nil, 0, false, false, false, false, "/v1/intents"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.parts, "+"), func(t *testing.T) {
			e := env
			e.Router = tt.router
			st, err := stack.Build(e, tt.parts...)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if st.Codec == nil || st.Registry == nil || st.Golden == nil {
				t.Error("every stack has a registry client, a codec and the golden-path metrics")
			}
			if len(st.Processors) != tt.processors || (st.Flags != nil) != tt.flags || (st.Store != nil) != tt.store ||
				(st.Analyzer != nil) != tt.analyzer || (st.Projections != nil) != tt.folds {
				t.Errorf("processors %d flags %v store %v analyzer %v projections %v; want %d %v %v %v %v",
					len(st.Processors), st.Flags != nil, st.Store != nil, st.Analyzer != nil, st.Projections != nil,
					tt.processors, tt.flags, tt.store, tt.analyzer, tt.folds)
			}
			if (st.Live != nil) != tt.folds || (st.DeadLetters != nil) != tt.folds {
				t.Errorf("live view %v, dead letters %v; want both with the projections processor (%v)", st.Live != nil, st.DeadLetters != nil, tt.folds)
			}
			if got := strings.Join(routes(st), " "); got != tt.routes {
				t.Errorf("routes %q, want %q", got, tt.routes)
			}
			if (tt.parts == nil || tt.parts[0] == stack.Orchestrator) && st.Router == nil {
				t.Error("no router for the orchestrator")
			}
		})
	}
}

func TestBuildRejectsUnknownPart(t *testing.T) {
	t.Parallel()
	_, err := stack.Build(stack.Env{Config: testConfig(t), RegistryURL: "http://127.0.0.1:1"}, "orchestrator", "nope")
	if err == nil || !strings.Contains(err.Error(), `unknown part "nope"`) || !strings.Contains(err.Error(), "canary") {
		t.Fatalf("err %v, want one naming the part and the known ones", err)
	}
}

// With an issuer configured the ingress verifies tokens; Build still does
// no I/O (the issuer named here does not exist).
func TestBuildIngressWithIssuer(t *testing.T) {
	t.Parallel()
	cfg, err := stack.LoadConfigFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS": "127.0.0.1:1", "SPINE_OIDC_ISSUER": "https://id.invalid", "SPINE_OIDC_AUDIENCE": "spine",
	}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: []string{"127.0.0.1:1"}, RegistryURL: "http://127.0.0.1:1"}, stack.Ingress)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Ingress == nil || st.Verifier == nil || st.Verifier.Issuer() != "https://id.invalid" {
		t.Fatalf("ingress %v verifier %v", st.Ingress, st.Verifier)
	}
	// Unauthenticated: 401, before anything is read or produced.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/intents", strings.NewReader(`{"kind":"summarize","input":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	st.Routes.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"missing"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
