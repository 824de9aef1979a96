package stack

import (
	"encoding/json"
	"net/http"

	"github.com/spinerun/spine/processors/orchestrator"
)

// StateflowView is what GET /v1/stateflow shows: the stateflow the
// orchestrator runs (its version, source and states) and the same machine
// as a Mermaid stateDiagram-v2, for the README and the dashboard.
type StateflowView struct {
	orchestrator.View
	Mermaid string `json:"mermaid"`
}

// StateflowHandler serves GET /v1/stateflow: the stateflow cfg asks for
// (SPINE_STATEFLOW, else the built-in one with the settings' timeouts) as
// JSON, rendered once. A stateflow that does not load is served as an
// error (config validation has refused it before any stack starts).
func StateflowHandler(cfg *Config) http.Handler {
	code := http.StatusOK
	var b []byte
	flow, err := cfg.Orchestrator.Flow()
	if err == nil {
		b, err = json.Marshal(StateflowView{View: flow.View(), Mermaid: flow.Mermaid()})
	}
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	b = append(b, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	})
}
