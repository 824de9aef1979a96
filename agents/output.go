package agents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// OutputSchema is the JSON Schema an agent file declares for a kind's
// output (output_schema): the gate.schema check validates every artifact
// of the kind against it, whole. It is compiled once, when the file loads,
// and safe for concurrent use.
//
//   - kind: extract
//     executor: openai
//     ...
//     output_schema:              # inline, in YAML
//     type: object
//     required: [name, price]
//     properties:
//     name: {type: string, minLength: 1}
//     price: {type: number, minimum: 0}
//
// or output_schema: schemas/extract.json (a JSON or YAML file, relative to
// the agents file). Any draft the validator knows may be named by $schema;
// the default is 2020-12. A $ref may point only inside the schema: nothing
// is fetched.
type OutputSchema struct {
	// Source is where the schema came from: the file it was read from, or
	// "inline" (with the agents file's line).
	Source string
	// JSON is the schema as JSON.
	JSON   json.RawMessage
	schema *jsonschema.Schema
}

// Violation is why an output does not validate against its schema: the
// JSON path of the value (a JSON Pointer; "" is the whole document), the
// keyword of the schema it breaks (a JSON Pointer into the schema, such as
// /properties/price/minimum), and the validator's message.
type Violation struct {
	Path    string
	Keyword string
	Message string
}

// Error reads "at /price: minimum: must be >= 0 but found -1".
func (v *Violation) Error() string {
	path := v.Path
	if path == "" {
		path = "/"
	}
	kw := v.Keyword
	if i := strings.LastIndexByte(kw, '/'); i >= 0 {
		kw = kw[i+1:]
	}
	if kw == "" || strings.HasPrefix(v.Message, kw+":") {
		return fmt.Sprintf("at %s: %s", path, v.Message)
	}
	return fmt.Sprintf("at %s: %s: %s", path, kw, v.Message)
}

// ErrNotJSON is the reason an output that does not parse as JSON fails
// its schema.
var ErrNotJSON = errors.New("the output is not JSON")

// Validate checks content, an artifact's whole content, against the
// schema: nil when it is valid, an error wrapping ErrNotJSON when it does
// not parse, else a *Violation naming the deepest failing value and rule.
func (s *OutputSchema) Validate(content []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(content))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	err = s.schema.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate the output: %w", err)
	}
	return deepest(ve.BasicOutput())
}

// deepest picks, of a basic (flat) output, the failing rule nearest the
// value: the one whose keyword location is deepest (a "properties" or
// "allOf" that only wraps its children's failures is shallower).
func deepest(u *jsonschema.OutputUnit) *Violation {
	best := u
	depth := func(o *jsonschema.OutputUnit) int { return strings.Count(o.KeywordLocation, "/") }
	for i := range u.Errors {
		if o := &u.Errors[i]; o.Error != nil && (best.Error == nil || depth(o) > depth(best)) {
			best = o
		}
	}
	v := &Violation{Path: clip(best.InstanceLocation), Keyword: clip(best.KeywordLocation)}
	if best.Error != nil {
		// The validator quotes the value it judged: an artifact's string of
		// a megabyte would be quoted whole.
		v.Message = clip(best.Error.String())
	}
	return v
}

// maxViolationText bounds each text of a Violation, in bytes.
const maxViolationText = 256

// clip cuts s to maxViolationText bytes on a rune boundary, marking the cut.
func clip(s string) string {
	if len(s) <= maxViolationText {
		return s
	}
	cut := maxViolationText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// outputSchema reads the output_schema key: an inline mapping or a file
// path relative to the agents file.
func (p *parser) outputSchema(f field) *OutputSchema {
	var doc any
	source := fmt.Sprintf("inline (%s:%d)", p.file, f.val.Line)
	switch f.val.Kind {
	case yaml.MappingNode:
		if err := f.val.Decode(&doc); err != nil {
			p.bad(f.val, f.path, "not a schema: %s", yamlMsg(err))
			return nil
		}
	case yaml.ScalarNode:
		if f.val.Tag == "!!bool" {
			// true and false are schemas too, but never what one means here.
			p.bad(f.val, f.path, "want a JSON Schema (a mapping) or a file name, got %s", kindName(f.val))
			return nil
		}
		path := f.val.Value
		if !filepath.IsAbs(path) && p.file != "" {
			path = filepath.Join(filepath.Dir(p.file), path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			p.bad(f.val, f.path, "cannot read the schema file: %v", errors.Unwrap(err))
			return nil
		}
		// YAML is a superset of JSON: one decoder reads both.
		if err := yaml.Unmarshal(data, &doc); err != nil {
			p.bad(f.val, f.path, "%s is not JSON or YAML: %s", path, yamlMsg(err))
			return nil
		}
		source = path
	default:
		p.bad(f.val, f.path, "want a JSON Schema (a mapping) or a file name, got %s", kindName(f.val))
		return nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		p.bad(f.val, f.path, "not a JSON document: %v", err)
		return nil
	}
	s, err := compileSchema(raw)
	if err != nil {
		p.bad(f.val, f.path, "not a valid JSON Schema: %s", err)
		return nil
	}
	return &OutputSchema{Source: source, JSON: raw, schema: s}
}

// schemaURL is the name the compiler knows an output schema by.
const schemaURL = "spine:///output_schema.json"

func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	// Nothing is fetched: a $ref to another document is an error.
	c.UseLoader(noLoader{})
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(schemaURL)
	var bad *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &bad) && errors.As(bad.Err, &ve) {
		// Say which part of the schema breaks which rule of the draft.
		return nil, fmt.Errorf("%v (against the draft's metaschema)", deepest(ve.BasicOutput()))
	}
	if err != nil {
		// The compiler's messages name the schema's URL; ours is internal.
		msg := strings.ReplaceAll(err.Error(), schemaURL, "the schema")
		return nil, errors.New(msg)
	}
	return s, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: an output schema may not refer to other documents", url)
}
