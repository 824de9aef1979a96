package agents_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spinerun/spine/agents"
)

const withSchema = `agents:
  - kind: extract
    executor: synthetic
    output_schema:
      type: object
      required: [name, price]
      properties:
        name: {type: string, minLength: 1}
        price: {type: number, minimum: 0}
        tags: {type: array, items: {type: string}}
      additionalProperties: false
    canary: { executor: openai, base_url: "http://127.0.0.1:8000/v1", model: qwen }
  - kind: lookup
    executor: synthetic
    output_schema: lookup.schema.json
`

func TestOutputSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lookup.schema.json"), []byte(`{"type":"array","items":{"type":"integer"},"maxItems":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := agents.Parse(filepath.Join(dir, "agents.yaml"), []byte(withSchema), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	extract, _ := f.Agent("extract")
	lookup, _ := f.Agent("lookup")
	if extract.OutputSchema == nil || lookup.OutputSchema == nil {
		t.Fatalf("schemas not loaded: %+v %+v", extract.OutputSchema, lookup.OutputSchema)
	}
	if extract.Canary == nil || extract.Canary.OutputSchema != extract.OutputSchema {
		t.Errorf("a canary that switches executor keeps the kind's output schema: %+v", extract.Canary)
	}
	if !strings.HasPrefix(extract.OutputSchema.Source, "inline (") || lookup.OutputSchema.Source != filepath.Join(dir, "lookup.schema.json") {
		t.Errorf("sources: %q, %q", extract.OutputSchema.Source, lookup.OutputSchema.Source)
	}
	cases := []struct {
		s       *agents.OutputSchema
		content string
		path    string // "" valid; "-" not JSON
		keyword string
	}{
		{extract.OutputSchema, `{"name":"lamp","price":12.5,"tags":["home"]}`, "", ""},
		{extract.OutputSchema, `{"name":"lamp","price":-1}`, "/price", "/properties/price/minimum"},
		{extract.OutputSchema, `{"name":"","price":1}`, "/name", "/properties/name/minLength"},
		{extract.OutputSchema, `{"name":"lamp"}`, "", "/required"},
		{extract.OutputSchema, `{"name":"lamp","price":1,"colour":"red"}`, "", "/additionalProperties"},
		{extract.OutputSchema, `{"name":"lamp","price":1,"tags":["a",2]}`, "/tags/1", "/properties/tags/items/type"},
		{extract.OutputSchema, `[1,2]`, "", "/type"},
		{extract.OutputSchema, `{"name":"lamp",`, "-", ""},
		{extract.OutputSchema, `Sure! Here is the JSON: {}`, "-", ""},
		{lookup.OutputSchema, `[1,2]`, "", ""},
		{lookup.OutputSchema, `[1,2,3]`, "", "/maxItems"},
		{lookup.OutputSchema, `[1,"x"]`, "/1", "/items/type"},
		{extract.OutputSchema, `{"name":"` + strings.Repeat("é", 1<<16) + `","price":-1}`, "/price", "/properties/price/minimum"},
		{extract.OutputSchema, `{"name":"lamp","price":1,"tags":[` + strings.Repeat(`"a",`, 1<<14) + `7]}`, "/tags/16384", "/properties/tags/items/type"},
	}
	for _, c := range cases {
		err := c.s.Validate([]byte(c.content))
		var v *agents.Violation
		switch {
		case c.path == "" && c.keyword == "":
			if err != nil {
				t.Errorf("%s: %v, want valid", c.content, err)
			}
		case c.path == "-":
			if !errors.Is(err, agents.ErrNotJSON) {
				t.Errorf("%s: %v, want ErrNotJSON", c.content, err)
			}
		case !errors.As(err, &v):
			t.Errorf("%s: %v, want a violation at %q (%s)", c.content, err, c.path, c.keyword)
		case v.Path != c.path || v.Keyword != c.keyword || v.Message == "":
			t.Errorf("%s: violation %+v, want path %q keyword %q and a message", c.content, *v, c.path, c.keyword)
		case len(v.Message) > 300 || len(v.Error()) > 400:
			t.Errorf("a violation's text is %d bytes: %.80s…", len(v.Error()), v.Error())
		default:
			t.Logf("%.60s → %v", c.content, err)
		}
	}
}

func TestOutputSchemaErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"type": [}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := `agents:
  - kind: a
    executor: synthetic
    output_schema: {type: 5}
  - kind: b
    executor: synthetic
    output_schema: missing.json
  - kind: c
    executor: synthetic
    output_schema: bad.json
  - kind: d
    executor: synthetic
    output_schema: {$ref: "http://example.com/s.json"}
  - kind: e
    executor: synthetic
    output_schema: [1, 2]
  - kind: f
    executor: synthetic
    output_schema: {type: string, pattern: "("}
`
	_, err := agents.Parse(filepath.Join(dir, "agents.yaml"), []byte(file), env(nil))
	var errs *agents.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *agents.Errors", err)
	}
	want := []string{
		"agents.yaml:4: agents[0].output_schema: not a valid JSON Schema",
		"agents.yaml:7: agents[1].output_schema: cannot read the schema file",
		"agents.yaml:10: agents[2].output_schema: " + filepath.Join(dir, "bad.json") + " is not JSON or YAML",
		"agents.yaml:13: agents[3].output_schema: not a valid JSON Schema",
		"agents.yaml:16: agents[4].output_schema: want a JSON Schema (a mapping) or a file name",
		"agents.yaml:19: agents[5].output_schema: not a valid JSON Schema",
	}
	if len(errs.Errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(errs.Errs), len(want), err)
	}
	for i, w := range want {
		if i < len(errs.Errs) && !strings.Contains(errs.Errs[i].Error(), w) {
			t.Errorf("error %d: %q, want it to contain %q", i, errs.Errs[i], w)
		}
	}
	t.Log(err)
}

func FuzzOutputSchemaValidate(f *testing.F) {
	a, err := agents.Parse("agents.yaml", []byte(withSchema[:strings.Index(withSchema, "    canary")]), env(nil))
	if err != nil {
		f.Fatal(err)
	}
	s := a.Agents[0].OutputSchema
	for _, seed := range []string{`{"name":"x","price":1}`, `{"name":1}`, `[`, `null`, `{"tags":[1,{}]}`, "\xff"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		err := s.Validate(content)
		var v *agents.Violation
		if err != nil && !errors.Is(err, agents.ErrNotJSON) && !errors.As(err, &v) {
			t.Fatalf("Validate(%q) = %v: neither a violation nor ErrNotJSON", content, err)
		}
		if v != nil && (v.Message == "" || (v.Path != "" && v.Path[0] != '/')) {
			t.Fatalf("Validate(%q): violation %+v lacks a message or a JSON Pointer path", content, *v)
		}
	})
}
