package stack

import (
	"encoding/json"
	"net/http"

	"github.com/spinerun/spine/gates"
)

// PolicyView is what GET /v1/policy says: the policy in force.
type PolicyView struct {
	Path    string           `json:"path"`
	Version string           `json:"version"`
	Default gates.Effect     `json:"default"`
	Rules   []PolicyRuleView `json:"rules"`
}

// PolicyRuleView is one rule of the policy in force.
type PolicyRuleView struct {
	Name    string       `json:"name"`
	Stage   gates.Stage  `json:"stage"`
	Effect  gates.Effect `json:"effect"`
	When    string       `json:"when"`
	Message string       `json:"message"`
	Line    int          `json:"line"`
}

// NewPolicyView describes policy p read from path.
func NewPolicyView(path string, p *gates.Policy) PolicyView {
	v := PolicyView{Path: path, Version: p.Version(), Default: p.Default(), Rules: []PolicyRuleView{}}
	for _, r := range p.Rules() {
		v.Rules = append(v.Rules, PolicyRuleView{Name: r.Name, Stage: r.Stage, Effect: r.Effect, When: r.When, Message: r.Message, Line: r.Line})
	}
	return v
}

// PolicyHandler serves GET /v1/policy: the version and rules the stack
// enforces now.
func PolicyHandler(f *gates.PolicyFile) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(NewPolicyView(f.Path(), f.Current()))
	})
}
