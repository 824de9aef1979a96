package registry_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spinerun/spine/schemas/registry"
)

func rec(fields ...string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + strings.Join(fields, ",") + `]}`
}

func fld(name, typ string, rest ...string) string {
	s := fmt.Sprintf(`{"name":%q,"type":%s`, name, typ)
	for _, r := range rest {
		s += "," + r
	}
	return s + "}"
}

// avroCases are Apache Avro schema-resolution cases: can a reader schema
// read data written with a writer schema?
var avroCases = []struct {
	name           string
	reader, writer string
	ok             bool
}{
	// primitives and promotions
	{"int reads int", `"int"`, `"int"`, true},
	{"long reads int", `"long"`, `"int"`, true},
	{"float reads int", `"float"`, `"int"`, true},
	{"double reads int", `"double"`, `"int"`, true},
	{"float reads long", `"float"`, `"long"`, true},
	{"double reads long", `"double"`, `"long"`, true},
	{"double reads float", `"double"`, `"float"`, true},
	{"int cannot read long", `"int"`, `"long"`, false},
	{"long cannot read float", `"long"`, `"float"`, false},
	{"float cannot read double", `"float"`, `"double"`, false},
	{"int cannot read double", `"int"`, `"double"`, false},
	{"string reads bytes", `"string"`, `"bytes"`, true},
	{"bytes reads string", `"bytes"`, `"string"`, true},
	{"string cannot read int", `"string"`, `"int"`, false},
	{"boolean cannot read int", `"boolean"`, `"int"`, false},
	{"null reads null", `"null"`, `"null"`, true},
	{"null cannot read string", `"null"`, `"string"`, false},
	// records
	{"same record", rec(fld("a", `"int"`)), rec(fld("a", `"int"`)), true},
	{"reader adds field with default", rec(fld("a", `"int"`), fld("b", `"string"`, `"default":"x"`)), rec(fld("a", `"int"`)), true},
	{"reader adds field without default", rec(fld("a", `"int"`), fld("b", `"string"`)), rec(fld("a", `"int"`)), false},
	{"reader drops field", rec(fld("a", `"int"`)), rec(fld("a", `"int"`), fld("b", `"string"`)), true},
	{"field promoted int to long", rec(fld("a", `"long"`)), rec(fld("a", `"int"`)), true},
	{"field narrowed long to int", rec(fld("a", `"int"`)), rec(fld("a", `"long"`)), false},
	{"field string to bytes", rec(fld("a", `"bytes"`)), rec(fld("a", `"string"`)), true},
	{"field type changed", rec(fld("a", `"string"`)), rec(fld("a", `"int"`)), false},
	{"record renamed", `{"type":"record","name":"S","fields":[{"name":"a","type":"int"}]}`, `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`, false},
	{"record renamed with alias", `{"type":"record","name":"S","aliases":["R"],"fields":[{"name":"a","type":"int"}]}`, `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`, true},
	{"field renamed with alias", rec(fld("b", `"int"`, `"aliases":["a"]`)), rec(fld("a", `"int"`)), true},
	{"field renamed without alias or default", rec(fld("b", `"int"`)), rec(fld("a", `"int"`)), false},
	{"field renamed without alias, with default", rec(fld("b", `"int"`, `"default":0`)), rec(fld("a", `"int"`)), true},
	{"nested record field added without default", rec(fld("n", `{"type":"record","name":"N","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}`)), rec(fld("n", `{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}`)), false},
	{"nested record field added with default", rec(fld("n", `{"type":"record","name":"N","fields":[{"name":"x","type":"int"},{"name":"y","type":"int","default":1}]}`)), rec(fld("n", `{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}`)), true},
	{"recursive record", `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"],"default":null}]}`, `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"],"default":null}]}`, true},
	{"recursive record widened", `{"type":"record","name":"L","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","L"],"default":null}]}`, `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"],"default":null}]}`, true},
	// enums
	{"enum same", `{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"enum","name":"E","symbols":["A","B"]}`, true},
	{"enum reader adds symbol", `{"type":"enum","name":"E","symbols":["A","B","C"]}`, `{"type":"enum","name":"E","symbols":["A","B"]}`, true},
	{"enum reader lacks symbol", `{"type":"enum","name":"E","symbols":["A"]}`, `{"type":"enum","name":"E","symbols":["A","B"]}`, false},
	{"enum reader lacks symbol but has default", `{"type":"enum","name":"E","symbols":["A","U"],"default":"U"}`, `{"type":"enum","name":"E","symbols":["A","B"]}`, true},
	{"enum renamed", `{"type":"enum","name":"F","symbols":["A"]}`, `{"type":"enum","name":"E","symbols":["A"]}`, false},
	{"enum reordered", `{"type":"enum","name":"E","symbols":["B","A"]}`, `{"type":"enum","name":"E","symbols":["A","B"]}`, true},
	// fixed
	{"fixed same", `{"type":"fixed","name":"F","size":4}`, `{"type":"fixed","name":"F","size":4}`, true},
	{"fixed size changed", `{"type":"fixed","name":"F","size":8}`, `{"type":"fixed","name":"F","size":4}`, false},
	{"fixed renamed", `{"type":"fixed","name":"G","size":4}`, `{"type":"fixed","name":"F","size":4}`, false},
	// arrays and maps
	{"array items promoted", `{"type":"array","items":"long"}`, `{"type":"array","items":"int"}`, true},
	{"array items narrowed", `{"type":"array","items":"int"}`, `{"type":"array","items":"long"}`, false},
	{"map values promoted", `{"type":"map","values":"double"}`, `{"type":"map","values":"float"}`, true},
	{"map values changed", `{"type":"map","values":"string"}`, `{"type":"map","values":"int"}`, false},
	{"array cannot read map", `{"type":"array","items":"int"}`, `{"type":"map","values":"int"}`, false},
	// unions
	{"union reads its branch", `["null","string"]`, `"string"`, true},
	{"union reads promotable branch", `["null","long"]`, `"int"`, true},
	{"union lacks branch", `["null","string"]`, `"int"`, false},
	{"non-union reads union of its type", `"string"`, `["string"]`, true},
	{"non-union cannot read wider union", `"string"`, `["null","string"]`, false},
	{"union superset reads union", `["null","string","int"]`, `["null","string"]`, true},
	{"union subset cannot read union", `["null","string"]`, `["null","string","int"]`, false},
	{"union reordered", `["string","null"]`, `["null","string"]`, true},
	{"optional field made required", rec(fld("a", `"string"`)), rec(fld("a", `["null","string"]`, `"default":null`)), false},
	{"required field made optional", rec(fld("a", `["null","string"]`, `"default":null`)), rec(fld("a", `"string"`)), true},
	// named-type references
	{"named type reference", rec(fld("e", `{"type":"enum","name":"E","symbols":["A","B"]}`), fld("f", `"E"`)), rec(fld("e", `{"type":"enum","name":"E","symbols":["A","B"]}`), fld("f", `"E"`)), true},
	{"named type reference narrowed", rec(fld("e", `{"type":"enum","name":"E","symbols":["A"]}`), fld("f", `"E"`)), rec(fld("e", `{"type":"enum","name":"E","symbols":["A","B"]}`), fld("f", `"E"`)), false},
	// logical types resolve on their underlying type
	{"timestamp-millis reads long", `{"type":"long","logicalType":"timestamp-millis"}`, `"long"`, true},
}

func TestAvroResolution(t *testing.T) {
	t.Parallel()
	for _, tc := range avroCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := registry.Parse(tc.reader)
			if err != nil {
				t.Fatalf("parse reader: %v", err)
			}
			w, err := registry.Parse(tc.writer)
			if err != nil {
				t.Fatalf("parse writer: %v", err)
			}
			err = registry.Compatible(r, w)
			if (err == nil) != tc.ok {
				t.Errorf("Compatible(reader, writer) = %v, want compatible=%v", err, tc.ok)
			}
		})
	}
}

// TestCheckerPerPair shows why the registry makes a new hamba checker per
// pair: schemas that differ only in a default share hamba's fingerprint.
func TestCheckerPerPair(t *testing.T) {
	t.Parallel()
	writer := rec(fld("a", `"int"`))
	withDefault := rec(fld("a", `"int"`), fld("b", `"int"`, `"default":0`))
	without := rec(fld("a", `"int"`), fld("b", `"int"`))
	for _, tc := range []struct {
		reader string
		ok     bool
	}{{withDefault, true}, {without, false}, {withDefault, true}} {
		r, _ := registry.Parse(tc.reader)
		w, _ := registry.Parse(writer)
		if err := registry.Compatible(r, w); (err == nil) != tc.ok {
			t.Errorf("Compatible = %v, want compatible=%v", err, tc.ok)
		}
	}
}

// TestParseOwnCache: a schema using a name it does not define is invalid,
// even when another schema parsed earlier defined that name.
func TestParseOwnCache(t *testing.T) {
	t.Parallel()
	if _, err := registry.Parse(`{"type":"record","name":"Def","fields":[{"name":"a","type":"int"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Parse(`{"type":"record","name":"Use","fields":[{"name":"d","type":"Def"}]}`); err == nil {
		t.Fatal("Parse accepted a schema referencing an undefined name")
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	a, _ := registry.Normalize(`{"type": "string"}`)
	b, _ := registry.Normalize("{\n  \"type\":\"string\"\n}")
	if a != b {
		t.Errorf("whitespace-only difference: %q != %q", a, b)
	}
	c, _ := registry.Normalize(rec(fld("a", `"int"`, `"default":1`)))
	d, _ := registry.Normalize(rec(fld("a", `"int"`, `"default":2`)))
	if c == d {
		t.Errorf("schemas differing by a default normalized to the same text")
	}
}
