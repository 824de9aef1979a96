package schemas_test

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/schemas"
)

// goTypes are the canonical Go types of each contract.
var goTypes = map[schemas.Contract]reflect.Type{
	schemas.ContractIntent:       reflect.TypeFor[schemas.Intent](),
	schemas.ContractRuntimeEvent: reflect.TypeFor[schemas.RuntimeEvent](),
}

func parse(tb testing.TB, src string) avro.Schema {
	tb.Helper()
	s, err := avro.ParseWithCache(src, "", &avro.SchemaCache{})
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	return s
}

var (
	timeType            = reflect.TypeFor[time.Time]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// mirrorProblems lists every way Go type typ and record schema rec
// disagree: a schema field without a Go field carrying its avro tag, a Go
// field of an incompatible kind, an avro-tagged Go field the schema lacks.
func mirrorProblems(rec *avro.RecordSchema, typ reflect.Type) []string {
	var problems []string
	byTag := map[string]reflect.StructField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if tag, ok := f.Tag.Lookup("avro"); ok && tag != "-" {
			byTag[tag] = f
		}
	}
	for _, field := range rec.Fields() {
		gf, ok := byTag[field.Name()]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s.%s: no Go field with avro tag %q", rec.Name(), field.Name(), field.Name()))
			continue
		}
		delete(byTag, field.Name())
		for _, p := range kindProblems(field.Type(), gf.Type) {
			problems = append(problems, fmt.Sprintf("%s.%s (Go %s %s): %s", rec.Name(), field.Name(), gf.Name, gf.Type, p))
		}
	}
	for tag, gf := range byTag {
		problems = append(problems, fmt.Sprintf("%s: Go field %s has avro tag %q, which the schema lacks", rec.Name(), gf.Name, tag))
	}
	slices.Sort(problems)
	return problems
}

// kindProblems checks that Go type t can carry Avro type s both ways.
func kindProblems(s avro.Schema, t reflect.Type) []string {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	want := func(ok bool, what string) []string {
		if ok {
			return nil
		}
		return []string{fmt.Sprintf("Avro %s needs %s", s.Type(), what)}
	}
	switch s.Type() {
	case avro.String:
		return want(t.Kind() == reflect.String, "a string kind")
	case avro.Boolean:
		return want(t.Kind() == reflect.Bool, "a bool")
	case avro.Int:
		return want(t.Kind() == reflect.Int32, "an int32")
	case avro.Double:
		return want(t.Kind() == reflect.Float64, "a float64")
	case avro.Long:
		if p, ok := s.(*avro.PrimitiveSchema); ok && p.Logical() != nil && p.Logical().Type() == avro.TimestampMillis {
			return want(t == timeType, "time.Time (timestamp-millis)")
		}
		return want(t.Kind() == reflect.Int64, "an int64")
	case avro.Enum:
		enum := s.(*avro.EnumSchema)
		if t.Kind() == reflect.String {
			return nil
		}
		pt := reflect.PointerTo(t)
		if !pt.Implements(textUnmarshalerType) || !t.Implements(textMarshalerType) {
			return want(false, "a string kind or a TextMarshaler/TextUnmarshaler")
		}
		var problems []string
		for _, sym := range enum.Symbols() { // every symbol survives the Go type
			v := reflect.New(t)
			if err := v.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(sym)); err != nil {
				problems = append(problems, fmt.Sprintf("symbol %s does not unmarshal: %v", sym, err))
				continue
			}
			back, err := v.Elem().Interface().(encoding.TextMarshaler).MarshalText()
			if err != nil || string(back) != sym {
				problems = append(problems, fmt.Sprintf("symbol %s marshals back as %q (%v)", sym, back, err))
			}
		}
		return problems
	case avro.Map:
		if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
			return want(false, "a map with string keys")
		}
		return kindProblems(s.(*avro.MapSchema).Values(), t.Elem())
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		if len(types) != 2 || types[0].Type() != avro.Null {
			return want(false, `a ["null", T] union, the only kind the contracts use`)
		}
		if t.Kind() != reflect.Pointer {
			return want(false, "a pointer (null is nil)")
		}
		return kindProblems(types[1], t.Elem())
	case avro.Record:
		if t.Kind() != reflect.Struct {
			return want(false, "a struct")
		}
		return mirrorProblems(s.(*avro.RecordSchema), t)
	}
	return want(false, "a type the contracts do not use")
}

// TestGoTypesMirrorNewestContract fails when a Go type and the newest .avsc
// disagree: add a field to one and not the other and this test names it.
func TestGoTypesMirrorNewestContract(t *testing.T) {
	t.Parallel()
	newest := schemas.Versions[len(schemas.Versions)-1]
	for _, c := range schemas.Contracts {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			rec := parse(t, schemas.MustSource(c, newest)).(*avro.RecordSchema)
			if p := mirrorProblems(rec, goTypes[c]); len(p) > 0 {
				t.Fatalf("%s %s and its Go type disagree:\n%s", c, newest, strings.Join(p, "\n"))
			}
		})
	}
}

// TestMirrorCheckHasTeeth proves the check above catches each kind of
// disagreement.
func TestMirrorCheckHasTeeth(t *testing.T) {
	t.Parallel()
	src := schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2)
	type missingTag struct {
		EventID string `avro:"event_id"`
	}
	var fields []reflect.StructField
	for i := range reflect.TypeFor[schemas.RuntimeEvent]().NumField() {
		fields = append(fields, reflect.TypeFor[schemas.RuntimeEvent]().Field(i))
	}
	extraField := reflect.StructOf(append(fields, reflect.StructField{Name: "Shard", Type: reflect.TypeFor[int64](), Tag: `avro:"shard"`}))
	tests := []struct {
		name string
		src  string
		typ  reflect.Type
		want string
	}{
		{"schema field without Go field", strings.Replace(src, `"name": "attributes"`, `"name": "zone", "type": "string", "default": ""}, {"name": "attributes"`, 1),
			reflect.TypeFor[schemas.RuntimeEvent](), `no Go field with avro tag "zone"`},
		{"schema field missing from a Go type", src, reflect.TypeFor[missingTag](), `no Go field with avro tag "trace_id"`},
		{"Go field without schema field", src, extraField, `Go field Shard has avro tag "shard", which the schema lacks`},
		{"wrong kind", strings.Replace(src, `"name": "attempt",
      "type": "int"`, `"name": "attempt",
      "type": "long"`, 1), reflect.TypeFor[schemas.RuntimeEvent](), "Avro long needs an int64"},
		{"nested record drift", strings.Replace(src, `"name": "cost_usd",
              "type": "double"`, `"name": "cost_usd",
              "type": "float"`, 1), reflect.TypeFor[schemas.RuntimeEvent](), "Avro float needs a type the contracts do not use"},
		{"unknown enum symbol", strings.Replace(src, `"V2"
        ],`, `"V2",
          "V3"
        ],`, 1), reflect.TypeFor[schemas.RuntimeEvent](), "symbol V3 does not unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.src == src && tt.typ == reflect.TypeFor[schemas.RuntimeEvent]() {
				t.Fatal("test case mutates nothing")
			}
			typ := tt.typ
			rec := parse(t, tt.src).(*avro.RecordSchema)
			p := strings.Join(mirrorProblems(rec, typ), "\n")
			if !strings.Contains(p, tt.want) {
				t.Fatalf("problems:\n%s\nwant one containing %q", p, tt.want)
			}
		})
	}
}

// TestOlderContractsAreDefaultedSubsets: every field of v1 is in v2 with the
// same type, and every field v2 adds has a default.
func TestOlderContractsAreDefaultedSubsets(t *testing.T) {
	t.Parallel()
	for _, c := range schemas.Contracts {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			v1 := parse(t, schemas.MustSource(c, schemas.V1)).(*avro.RecordSchema)
			v2 := parse(t, schemas.MustSource(c, schemas.V2)).(*avro.RecordSchema)
			if v1.FullName() != v2.FullName() {
				t.Fatalf("record name %s in v1, %s in v2", v1.FullName(), v2.FullName())
			}
			in1 := map[string]*avro.Field{}
			for _, f := range v1.Fields() {
				in1[f.Name()] = f
			}
			for _, f := range v2.Fields() {
				old, ok := in1[f.Name()]
				if !ok {
					if !f.HasDefault() {
						t.Errorf("v2 adds %s without a default", f.Name())
					}
					continue
				}
				delete(in1, f.Name())
				if old.Type().String() != f.Type().String() {
					t.Errorf("%s: v1 type %s, v2 type %s", f.Name(), old.Type(), f.Type())
				}
			}
			for name := range in1 {
				t.Errorf("v2 drops v1 field %s", name)
			}
		})
	}
}

// TestContractsFullTransitive: v1 and v2 are compatible in both directions
// (a v2 reader reads v1 data and a v1 reader reads v2 data), per hamba's
// SchemaCompatibility and per Spine's registry under FULL_TRANSITIVE, in
// either registration order.
func TestContractsFullTransitive(t *testing.T) {
	t.Parallel()
	for _, c := range schemas.Contracts {
		for _, pair := range [][2]schemas.ContractVersion{{schemas.V1, schemas.V2}, {schemas.V2, schemas.V1}} {
			reader, writer := pair[0], pair[1]
			t.Run(fmt.Sprintf("%s reader %s writer %s", c, reader, writer), func(t *testing.T) {
				t.Parallel()
				r := parse(t, schemas.MustSource(c, reader))
				w := parse(t, schemas.MustSource(c, writer))
				if err := avro.NewSchemaCompatibility().Compatible(r, w); err != nil {
					t.Fatalf("not compatible: %v", err)
				}
				if _, err := avro.NewSchemaCompatibility().Resolve(r, w); err != nil {
					t.Fatalf("does not resolve: %v", err)
				}
			})
		}
	}

	f := newFixture(t)
	ctx := t.Context()
	for _, c := range schemas.Contracts {
		for _, order := range [][]schemas.ContractVersion{{schemas.V1, schemas.V2}, {schemas.V2, schemas.V1}} {
			subject := fmt.Sprintf("compat-%s-%s-value", c, order[0])
			res := f.admin.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFullTransitive}, subject)
			if len(res) != 1 || res[0].Err != nil {
				t.Fatalf("set FULL_TRANSITIVE on %s: %+v", subject, res)
			}
			for _, v := range order {
				if _, err := f.admin.RegisterSchema(ctx, subject, sr.Schema{Schema: schemas.MustSource(c, v)}, -1, -1); err != nil {
					t.Fatalf("%s: register %s %s after %v under FULL_TRANSITIVE: %v", subject, c, v, order, err)
				}
			}
		}
	}
	// And the registry refuses what breaks it: a field added without a default.
	bad := strings.Replace(schemas.MustSource(schemas.ContractIntent, schemas.V2), `{"name": "tenant", "type": "string", "default": "",`, `{"name": "tenant", "type": "string",`, 1)
	if bad == schemas.MustSource(schemas.ContractIntent, schemas.V2) {
		t.Fatal("could not derive an incompatible intent")
	}
	subject := "compat-intent-V1-value"
	if _, err := f.admin.RegisterSchema(ctx, subject, sr.Schema{Schema: bad}, -1, -1); err == nil {
		t.Fatal("the registry accepted a field without a default under FULL_TRANSITIVE")
	}
}

// TestPhaseSymbolsMatchGoConstants: the phase enum of every version is
// exactly the Phase constants Validate accepts.
func TestPhaseSymbolsMatchGoConstants(t *testing.T) {
	t.Parallel()
	want := []string{string(schemas.PhaseControl), string(schemas.PhaseData), string(schemas.PhaseGate)}
	for _, v := range schemas.Versions {
		rec := parse(t, schemas.MustSource(schemas.ContractRuntimeEvent, v)).(*avro.RecordSchema)
		for _, f := range rec.Fields() {
			if f.Name() == "phase" {
				if got := f.Type().(*avro.EnumSchema).Symbols(); !slices.Equal(got, want) {
					t.Fatalf("%s phase symbols %v, Go constants %v", v, got, want)
				}
			}
		}
	}
}
