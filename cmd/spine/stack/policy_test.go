package stack_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/gates"
)

func TestPolicyHandler(t *testing.T) {
	t.Parallel()
	src := "version: 1\ndefault: deny\nrules:\n  - name: staff\n    stage: admission\n    effect: allow\n    when: \"provenance != null\"\n"
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := gates.LoadPolicyFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	stack.PolicyHandler(f).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/policy", nil))
	var v stack.PolicyView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Path != path || v.Version != gates.PolicyVersion([]byte(src)) || v.Default != gates.EffectDeny || len(v.Rules) != 1 ||
		v.Rules[0].Name != "staff" || v.Rules[0].Line != 4 || v.Rules[0].Stage != gates.StageAdmission {
		t.Fatalf("GET /v1/policy: %s", rec.Body)
	}
}
