package dataplane_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas/thread"
)

// named answers with its name; it validates when it refuses.
type named struct {
	name    string
	refuses bool
}

func (n named) Execute(context.Context, dataplane.Request) (dataplane.Result, error) {
	return dataplane.Result{ContentType: "text/plain", Content: []byte(n.name)}, nil
}

func (n named) Validate(dataplane.Request) error {
	if n.refuses {
		return dataplane.Permanent(dataplane.KindUnknownTool, errors.New(n.name+" refuses"))
	}
	return nil
}

func TestAgentsRoutes(t *testing.T) {
	t.Parallel()
	plain := dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
		return dataplane.Result{Content: []byte("plain")}, nil
	})
	a, err := dataplane.NewAgents(
		dataplane.Agent{Kind: "summarize", Baseline: named{name: "model-a"}, Canary: named{name: "model-b"}},
		dataplane.Agent{Kind: "lookup", Baseline: named{name: "tool", refuses: true}},
		dataplane.Agent{Kind: "plain", Baseline: plain},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ kind, route, want string }{
		{"summarize", thread.RouteBaseline, "model-a"},
		{"summarize", "", "model-a"},
		{"summarize", thread.RouteCanary, "model-b"},
		{"lookup", thread.RouteCanary, "tool"}, // no canary: the baseline's
		{"plain", thread.RouteBaseline, "plain"},
	} {
		res, err := a.Execute(t.Context(), dataplane.Request{Kind: tt.kind, Route: tt.route})
		if err != nil || string(res.Content) != tt.want {
			t.Errorf("%s/%s: %q %v, want %s", tt.kind, tt.route, res.Content, err, tt.want)
		}
		if res.Latency <= 0 {
			t.Errorf("%s/%s: latency %s, want the call's own duration", tt.kind, tt.route, res.Latency)
		}
	}
	if err := a.Validate(dataplane.Request{Kind: "summarize", Route: thread.RouteCanary}); err != nil {
		t.Errorf("Validate summarize: %v", err)
	}
	if err := a.Validate(dataplane.Request{Kind: "lookup", Route: thread.RouteBaseline}); dataplane.ErrorKind(err) != dataplane.KindUnknownTool {
		t.Errorf("Validate lookup: %v, want the tool's refusal", err)
	}
	if err := a.Validate(dataplane.Request{Kind: "plain"}); err != nil {
		t.Errorf("Validate of an executor that is no Validator: %v", err)
	}
	// A kind no agent serves: unknown_agent, not retryable, naming the kind.
	_, err = a.Execute(t.Context(), dataplane.Request{Kind: "translate", Route: thread.RouteBaseline})
	kind, retry, _ := dataplane.Classify(err)
	if kind != dataplane.KindAgentNotFound || retry || !strings.Contains(err.Error(), `"translate"`) {
		t.Errorf("unknown kind: %v (kind %s retryable %v)", err, kind, retry)
	}
	if err := a.Validate(dataplane.Request{Kind: "translate"}); dataplane.ErrorKind(err) != dataplane.KindAgentNotFound {
		t.Errorf("Validate unknown kind: %v", err)
	}
	if got := strings.Join(a.Kinds(), ","); got != "summarize,lookup,plain" {
		t.Errorf("kinds %s", got)
	}
}

func TestNewAgentsRejects(t *testing.T) {
	t.Parallel()
	_, err := dataplane.NewAgents(
		dataplane.Agent{Kind: "a", Baseline: named{}},
		dataplane.Agent{Kind: "a", Baseline: named{}},
		dataplane.Agent{Kind: "b"},
		dataplane.Agent{Baseline: named{}},
	)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{`"a" is given twice`, `"b" has no baseline executor`, "has no kind"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err %v misses %s", err, w)
		}
	}
}
