package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// Level is a compatibility level, as Confluent names them.
type Level string

// The seven compatibility levels. Non-transitive levels check a new schema
// against the latest live version only; transitive ones against every live
// version.
const (
	Backward           Level = "BACKWARD"
	BackwardTransitive Level = "BACKWARD_TRANSITIVE"
	Forward            Level = "FORWARD"
	ForwardTransitive  Level = "FORWARD_TRANSITIVE"
	Full               Level = "FULL"
	FullTransitive     Level = "FULL_TRANSITIVE"
	None               Level = "NONE"
)

// Levels lists every level.
var Levels = []Level{Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive, None}

// ParseLevel parses a level name (case-insensitive, as Confluent accepts).
func ParseLevel(s string) (Level, error) {
	l := Level(strings.ToUpper(strings.TrimSpace(s)))
	if slices.Contains(Levels, l) {
		return l, nil
	}
	return "", errf(ErrInvalidCompatibilityLevel, "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")
}

// Transitive reports whether the level checks every live version rather
// than only the latest.
func (l Level) Transitive() bool { return strings.HasSuffix(string(l), "_TRANSITIVE") }

// backward reports whether the new schema must read data written with old
// ones; forward whether old schemas must read data written with the new one.
func (l Level) backward() bool {
	return l == Backward || l == BackwardTransitive || l == Full || l == FullTransitive
}

func (l Level) forward() bool {
	return l == Forward || l == ForwardTransitive || l == Full || l == FullTransitive
}

// Parse parses an Avro schema the way the registry does: with a cache of
// its own, so a name left undefined in this schema is an error even if
// another schema defined it.
func Parse(schema string) (avro.Schema, error) {
	return avro.ParseWithCache(schema, "", &avro.SchemaCache{})
}

// Normalize returns the registry's identity form of a schema text: the JSON
// compacted, so whitespace-only differences are the same schema while a
// changed default, doc or alias is a different one.
func Normalize(schema string) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(schema)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Compatible reports whether data written with writer can be read with
// reader under Apache Avro's schema resolution rules. It uses a new hamba
// checker for the pair, because a checker caches its answers under a
// fingerprint that ignores defaults, aliases and enum defaults.
func Compatible(reader, writer avro.Schema) error {
	return avro.NewSchemaCompatibility().Compatible(reader, writer)
}

// Reason explains one incompatibility: what kind, where (the field path in
// the reader schema), against which registered version, and why.
type Reason struct {
	// Type is Confluent's errorType, e.g. READER_FIELD_MISSING_DEFAULT_VALUE,
	// TYPE_MISMATCH, MISSING_ENUM_SYMBOLS, NAME_MISMATCH,
	// MISSING_UNION_BRANCH, FIXED_SIZE_MISMATCH.
	Type string
	// Field is the dotted field path the problem is at ("" for the root).
	Field string
	// Path is the JSON path in the reader schema, e.g. /fields/3/type.
	Path string
	// Version is the registered version the new schema conflicts with.
	Version int
	// Direction is "new reads old" (backward) or "old reads new" (forward).
	Direction string
	// Description says why, in words.
	Description string
}

// String renders the reason the way Confluent's verbose messages look.
func (r Reason) String() string {
	return fmt.Sprintf("{errorType:'%s', description:'%s', additionalInfo:'%s'}", r.Type, r.Description, r.Field)
}

// explain finds why reader cannot read writer data, naming fields. It walks
// records, arrays and maps in parallel and asks hamba (a new checker every
// time) at each step, so its verdict always agrees with Compatible.
func explain(reader, writer avro.Schema, readerRole, writerRole string) []Reason {
	e := &explainer{readerRole: readerRole, writerRole: writerRole, seen: map[[2]string]bool{}}
	e.walk(reader, writer, "", "")
	return e.reasons
}

type explainer struct {
	readerRole, writerRole string
	seen                   map[[2]string]bool
	reasons                []Reason
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func typeName(s avro.Schema) string {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		return string(s.Type()) + " " + n.FullName()
	}
	if p, ok := s.(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		return string(s.Type()) + "(" + string(p.Logical().Type()) + ")"
	}
	return string(s.Type())
}

func (e *explainer) add(typ, field, path, desc string) {
	e.reasons = append(e.reasons, Reason{Type: typ, Field: field, Path: path, Description: desc})
}

func (e *explainer) at(field string) string {
	if field == "" {
		return "at the root"
	}
	return "'" + field + "'"
}

func (e *explainer) walk(reader, writer avro.Schema, field, path string) {
	err := Compatible(reader, writer)
	if err == nil {
		return
	}
	r, w := deref(reader), deref(writer)
	before := len(e.reasons)
	switch {
	case r.Type() == avro.Record && w.Type() == avro.Record:
		rr, wr := r.(*avro.RecordSchema), w.(*avro.RecordSchema)
		key := [2]string{rr.FullName(), wr.FullName()}
		if e.seen[key] {
			return
		}
		e.seen[key] = true
		if rr.Name() != wr.Name() && !slices.Contains(rr.Aliases(), wr.FullName()) {
			e.add("NAME_MISMATCH", field, path+"/name", fmt.Sprintf("The name of the record %s in the %s schema does not match the name %s in the %s schema (and no alias maps it)", e.at(field), e.readerRole, wr.FullName(), e.writerRole))
			return
		}
		for i, rf := range rr.Fields() {
			fpath := fmt.Sprintf("%s/fields/%d", path, i)
			fname := rf.Name()
			if field != "" {
				fname = field + "." + rf.Name()
			}
			var wf *avro.Field
			for _, c := range wr.Fields() {
				if c.Name() == rf.Name() || slices.Contains(rf.Aliases(), c.Name()) {
					wf = c
					break
				}
			}
			if wf == nil {
				if !rf.HasDefault() {
					e.add("READER_FIELD_MISSING_DEFAULT_VALUE", fname, fpath, fmt.Sprintf("The field '%s' at path '%s' in the %s schema has no default value and is missing in the %s schema", fname, fpath, e.readerRole, e.writerRole))
				}
				continue
			}
			e.walk(rf.Type(), wf.Type(), fname, fpath+"/type")
		}
	case r.Type() == avro.Array && w.Type() == avro.Array:
		e.walk(r.(*avro.ArraySchema).Items(), w.(*avro.ArraySchema).Items(), field+"[]", path+"/items")
	case r.Type() == avro.Map && w.Type() == avro.Map:
		e.walk(r.(*avro.MapSchema).Values(), w.(*avro.MapSchema).Values(), field+"{}", path+"/values")
	case r.Type() == avro.Enum && w.Type() == avro.Enum:
		re, we := r.(*avro.EnumSchema), w.(*avro.EnumSchema)
		if re.Name() != we.Name() && !slices.Contains(re.Aliases(), we.FullName()) {
			e.add("NAME_MISMATCH", field, path+"/name", fmt.Sprintf("The name of the enum %s in the %s schema (%s) does not match the name %s in the %s schema", e.at(field), e.readerRole, re.FullName(), we.FullName(), e.writerRole))
			return
		}
		var missing []string
		for _, s := range we.Symbols() {
			if !slices.Contains(re.Symbols(), s) {
				missing = append(missing, s)
			}
		}
		e.add("MISSING_ENUM_SYMBOLS", field, path+"/symbols", fmt.Sprintf("The %s schema is missing enum symbols '%s' at path '%s' in the %s schema, and its enum %s has no default", e.readerRole, strings.Join(missing, ", "), path+"/symbols", e.writerRole, e.at(field)))
	case r.Type() == avro.Fixed && w.Type() == avro.Fixed:
		rf, wf := r.(*avro.FixedSchema), w.(*avro.FixedSchema)
		if rf.Name() != wf.Name() && !slices.Contains(rf.Aliases(), wf.FullName()) {
			e.add("NAME_MISMATCH", field, path+"/name", fmt.Sprintf("The name of the fixed %s in the %s schema (%s) does not match the name %s in the %s schema", e.at(field), e.readerRole, rf.FullName(), wf.FullName(), e.writerRole))
			return
		}
		e.add("FIXED_SIZE_MISMATCH", field, path+"/size", fmt.Sprintf("The size of the fixed %s is %d in the %s schema but %d in the %s schema", e.at(field), rf.Size(), e.readerRole, wf.Size(), e.writerRole))
	case w.Type() == avro.Union:
		for i, b := range w.(*avro.UnionSchema).Types() {
			if Compatible(reader, b) != nil {
				if r.Type() == avro.Union {
					e.add("MISSING_UNION_BRANCH", field, path, fmt.Sprintf("The %s schema's union at %s has no branch that can read the %s branch (index %d) of the %s schema's union", e.readerRole, e.at(field), typeName(b), i, e.writerRole))
				} else {
					e.add("MISSING_UNION_BRANCH", field, path, fmt.Sprintf("The %s schema's type %s at %s cannot read the %s branch (index %d) of the %s schema's union", e.readerRole, typeName(r), e.at(field), typeName(b), i, e.writerRole))
				}
			}
		}
	case r.Type() == avro.Union:
		e.add("MISSING_UNION_BRANCH", field, path, fmt.Sprintf("The %s schema's union at %s has no branch that can read the type %s of the %s schema", e.readerRole, e.at(field), typeName(w), e.writerRole))
	default:
		e.add("TYPE_MISMATCH", field, path, fmt.Sprintf("The type of %s is %s in the %s schema and %s in the %s schema, which Avro cannot resolve", e.at(field), typeName(r), e.readerRole, typeName(w), e.writerRole))
	}
	if len(e.reasons) == before {
		// hamba found a problem the walk did not pin down: report its words.
		e.add("INCOMPATIBLE", field, path, fmt.Sprintf("At %s: %v", e.at(field), err))
	}
}

// version is what the checker needs of a registered version.
type checkVersion struct {
	Version int
	Schema  avro.Schema
}

// check checks candidate against existing (live versions, oldest first)
// under level and returns the reasons it is incompatible, or nil.
func check(level Level, candidate avro.Schema, existing []checkVersion) []Reason {
	if level == None || len(existing) == 0 {
		return nil
	}
	against := existing
	if !level.Transitive() {
		against = existing[len(existing)-1:]
	}
	var out []Reason
	// Newest first, as Confluent reports.
	for i := len(against) - 1; i >= 0; i-- {
		old := against[i]
		if level.backward() {
			for _, r := range explain(candidate, old.Schema, "new", "old") {
				r.Version, r.Direction = old.Version, "new reads old"
				out = append(out, r)
			}
		}
		if level.forward() {
			for _, r := range explain(old.Schema, candidate, "old", "new") {
				r.Version, r.Direction = old.Version, "old reads new"
				out = append(out, r)
			}
		}
	}
	return out
}

// messages renders reasons as Confluent's verbose messages: each reason
// names the field, then the old version it conflicts with and the level.
func messages(level Level, reasons []Reason) []string {
	var out []string
	last := -1
	for _, r := range reasons {
		if r.Version != last && last != -1 {
			out = append(out, fmt.Sprintf("{oldSchemaVersion: %d}", last))
		}
		last = r.Version
		r.Description = fmt.Sprintf("%s (conflicts with version %d; %s)", r.Description, r.Version, r.Direction)
		out = append(out, r.String())
	}
	if last != -1 {
		out = append(out, fmt.Sprintf("{oldSchemaVersion: %d}", last), fmt.Sprintf("{compatibility: '%s'}", level))
	}
	return out
}
