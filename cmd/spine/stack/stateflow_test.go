package stack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/projections"
)

// The dashboard shows the stateflow the stack runs: headless Chromium
// loads the page, its script reads GET /v1/stateflow and renders the table.
func TestDashboardShowsStateflow(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium on PATH")
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_QUEUE_TIMEOUT": "90s"}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", projections.Dashboard())
	mux.Handle("GET /v1/stateflow", stack.StateflowHandler(cfg))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", srv.URL+"/")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	flow, _ := cfg.Orchestrator.Flow()
	for _, w := range []string{"<td>queued</td><td>routed on queue</td><td>1m30s</td>", "<td>run.queued</td>", flow.Version(), "built-in"} {
		if !strings.Contains(dom, w) {
			t.Errorf("the dashboard does not show %q", w)
		}
	}
}
