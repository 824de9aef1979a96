package registry_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/schemas/registry"
)

const (
	userV1 = `{"type":"record","name":"User","namespace":"t","fields":[{"name":"id","type":"string"}]}`
	userV2 = `{"type":"record","name":"User","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"email","type":"string","default":""}]}`
	// userV3 adds a field without a default: new readers cannot read old data.
	userV3 = `{"type":"record","name":"User","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"email","type":"string","default":""},{"name":"tenant","type":"string"}]}`
)

// TestSuiteFranzSR drives the registry with franz-go's sr client.
func TestSuiteFranzSR(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	in := b.start(t)
	ctx := t.Context()
	cl := in.sr
	const subj = "users-value"

	// Register v1 and a compatible v2.
	id1, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV1}, -1, -1)
	if err != nil {
		t.Fatalf("register v1: %v", err)
	}
	id2, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV2}, -1, -1)
	if err != nil {
		t.Fatalf("register v2: %v", err)
	}
	if id1 == id2 || id1 <= 0 || id2 <= 0 {
		t.Fatalf("ids %d, %d: want two distinct positive ids", id1, id2)
	}
	// Registering again returns the existing id and adds no version;
	// whitespace-only differences are the same schema.
	spaced := strings.ReplaceAll(userV1, ",", " ,\n  ")
	for _, s := range []string{userV1, spaced} {
		if id, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: s}, -1, -1); err != nil || id != id1 {
			t.Errorf("re-register v1: id %d, %v; want %d", id, err, id1)
		}
	}
	if vs, err := cl.SubjectVersions(ctx, subj); err != nil || len(vs) != 2 || vs[0] != 1 || vs[1] != 2 {
		t.Errorf("versions = %v, %v; want [1 2]", vs, err)
	}

	// v3 breaks BACKWARD: 409 with a reason naming the field.
	if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV3}, -1, -1); err != nil {
		t.Logf("409 says: %v", err)
	}
	_, err = cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV3}, -1, -1)
	if srCode(err) != 409 || !strings.Contains(err.Error(), "tenant") || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("register v3: %v; want 409 naming field tenant and version 2", err)
	}
	res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subj, -1, sr.Schema{Schema: userV3})
	if err != nil || res.Is || !strings.Contains(strings.Join(res.Messages, " "), "'tenant'") {
		t.Errorf("check v3 = %+v, %v; want incompatible naming 'tenant'", res, err)
	}
	res, err = cl.CheckCompatibility(ctx, subj, 1, sr.Schema{Schema: userV2})
	if err != nil || !res.Is {
		t.Errorf("check v2 against version 1 = %+v, %v; want compatible", res, err)
	}

	// By id.
	s, err := cl.SchemaByID(ctx, id2)
	if err != nil || s.Schema != userV2 {
		t.Errorf("SchemaByID(%d) = %q, %v", id2, s.Schema, err)
	}
	if txt, err := cl.SchemaTextByID(ctx, id1); err != nil || txt != userV1 {
		t.Errorf("SchemaTextByID(%d) = %q, %v", id1, txt, err)
	}
	if svs, err := cl.SchemaVersionsByID(ctx, id2); err != nil || len(svs) != 1 || svs[0].Subject != subj || svs[0].Version != 2 {
		t.Errorf("SchemaVersionsByID(%d) = %+v, %v", id2, svs, err)
	}
	if _, err := cl.SchemaByID(ctx, 9999); srCode(err) != 40403 {
		t.Errorf("SchemaByID(9999): %v; want 40403", err)
	}
	// By version, raw text, latest.
	ss, err := cl.SchemaByVersion(ctx, subj, -1)
	if err != nil || ss.Version != 2 || ss.ID != id2 || ss.Subject != subj {
		t.Errorf("latest = %+v, %v", ss, err)
	}
	if txt, err := cl.SchemaTextByVersion(ctx, subj, 1); err != nil || txt != userV1 {
		t.Errorf("SchemaTextByVersion = %q, %v", txt, err)
	}
	if _, err := cl.SchemaByVersion(ctx, subj, 7); srCode(err) != 40402 {
		t.Errorf("version 7: %v; want 40402", err)
	}
	if _, err := cl.SchemaByVersion(ctx, "nope", 1); srCode(err) != 40401 {
		t.Errorf("unknown subject: %v; want 40401", err)
	}
	for _, v := range []string{"0", "-2", "abc", "2147483648"} {
		if st, code, _ := call(t, "GET", in.url+"/subjects/"+subj+"/versions/"+v, ""); st != 422 || code != 42202 {
			t.Errorf("version %s: %d/%d; want 422/42202", v, st, code)
		}
	}

	// Lookup.
	got, err := cl.LookupSchema(ctx, subj, sr.Schema{Schema: userV2})
	if err != nil || got.ID != id2 || got.Version != 2 {
		t.Errorf("lookup v2 = %+v, %v", got, err)
	}
	if _, err := cl.LookupSchema(ctx, subj, sr.Schema{Schema: userV3}); srCode(err) != 40403 {
		t.Errorf("lookup unregistered: %v; want 40403", err)
	}
	if _, err := cl.LookupSchema(ctx, "nope", sr.Schema{Schema: userV1}); srCode(err) != 40401 {
		t.Errorf("lookup unknown subject: %v; want 40401", err)
	}

	// The same schema under another subject reuses the id; a schema that
	// differs only by a default gets its own.
	if id, err := cl.RegisterSchema(ctx, "other-value", sr.Schema{Schema: userV2}, -1, -1); err != nil || id != id2 {
		t.Errorf("same schema, other subject: id %d, %v; want %d", id, err, id2)
	}
	otherDefault := strings.Replace(userV2, `"default":""`, `"default":"x"`, 1)
	idD, err := cl.RegisterSchema(ctx, "other-value", sr.Schema{Schema: otherDefault}, -1, -1)
	if err != nil || idD == id2 {
		t.Errorf("schema differing by a default: id %d, %v; want a new id", idD, err)
	}
	if subs, err := cl.Subjects(ctx); err != nil || strings.Join(subs, ",") != "other-value,users-value" {
		t.Errorf("subjects = %v, %v", subs, err)
	}

	// Invalid schemas: 422/42201 with the parser's words, never a 500.
	for _, body := range []string{`{`, `{"schema":"{\"type\":\"record\"}"}`, `{"schema":""}`, `{"schema":"{\"type\":\"nope\"}"}`, `{"schema":"\"int\"","schemaType":"PROTOBUF"}`, `[1,2]`} {
		if st, code, b := call(t, "POST", in.url+"/subjects/x/versions", body); st != 422 || code != 42201 {
			t.Errorf("register %s: %d/%d %s; want 422/42201", body, st, code, b)
		}
	}
	if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: `{"type":"record","name":"U","fields":[{"name":"d","type":"Undefined"}]}`}, -1, -1); srCode(err) != 42201 {
		t.Errorf("undefined name: %v; want 42201", err)
	}
	if st, code, _ := call(t, "GET", in.url+"/nope", ""); st != 404 || code != 404 {
		t.Errorf("unknown path: %d/%d", st, code)
	}
	if st, code, _ := call(t, "PATCH", in.url+"/subjects", ""); st != 405 || code != 405 {
		t.Errorf("PATCH /subjects: %d/%d", st, code)
	}
	if st, _, b := call(t, "GET", in.url+"/schemas/types", ""); st != 200 || string(b) != `["AVRO"]` {
		t.Errorf("types: %d %s", st, b)
	}
}

// TestConfig covers global and per-subject compatibility config.
func TestConfig(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t)
	ctx := t.Context()
	cl := in.sr
	if r := cl.Compatibility(ctx); r[0].Err != nil || r[0].Level != sr.CompatBackward {
		t.Errorf("default global = %+v; want BACKWARD", r[0])
	}
	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}); r[0].Err != nil || r[0].Level != sr.CompatFull {
		t.Errorf("set global FULL = %+v", r[0])
	}
	if r := cl.Compatibility(ctx); r[0].Level != sr.CompatFull {
		t.Errorf("global = %+v; want FULL", r[0])
	}
	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatForwardTransitive}, "s-value"); r[0].Err != nil {
		t.Errorf("set subject: %v", r[0].Err)
	}
	if r := cl.Compatibility(ctx, "s-value"); r[0].Level != sr.CompatForwardTransitive {
		t.Errorf("subject = %+v; want FORWARD_TRANSITIVE", r[0])
	}
	if r := cl.Compatibility(ctx, "unset-value"); srCode(r[0].Err) != 40408 {
		t.Errorf("unset subject: %v; want 40408", r[0].Err)
	}
	if r := cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), "unset-value"); r[0].Err != nil || r[0].Level != sr.CompatFull {
		t.Errorf("unset subject defaultToGlobal = %+v; want FULL", r[0])
	}
	for _, body := range []string{`{"compatibility":"SIDEWAYS"}`, `{}`, `{`} {
		for _, path := range []string{"/config", "/config/s-value"} {
			if st, code, _ := call(t, "PUT", in.url+path, body); st != 422 || code != 42203 {
				t.Errorf("PUT %s %s: %d/%d; want 422/42203", path, body, st, code)
			}
		}
	}
	if r := cl.ResetCompatibility(ctx, "s-value"); r[0].Err != nil || r[0].Level != sr.CompatForwardTransitive {
		t.Errorf("reset subject = %+v; want the previous FORWARD_TRANSITIVE", r[0])
	}
	if r := cl.Compatibility(ctx, "s-value"); srCode(r[0].Err) != 40408 {
		t.Errorf("after reset: %v; want 40408", r[0].Err)
	}
	if r := cl.ResetCompatibility(ctx); r[0].Err != nil {
		t.Errorf("reset global: %v", r[0].Err)
	}
	if r := cl.Compatibility(ctx); r[0].Level != sr.CompatBackward {
		t.Errorf("global after reset = %+v; want BACKWARD", r[0])
	}
	if st, code, _ := call(t, "DELETE", in.url+"/config/never-value", ""); st != 404 || code != 40401 {
		t.Errorf("DELETE config of unknown subject: %d/%d; want 404/40401", st, code)
	}
}

// TestDeletes covers soft and permanent deletes and their ordering errors.
func TestDeletes(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t)
	ctx := t.Context()
	cl := in.sr
	const subj = "d-value"
	id1, _ := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV1}, -1, -1)
	id2, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV2}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	// Version: permanent before soft → 40407; soft; soft again → 40406.
	if err := cl.DeleteSchema(ctx, subj, 1, sr.HardDelete); srCode(err) != 40407 {
		t.Errorf("hard delete live version: %v; want 40407", err)
	}
	if err := cl.DeleteSchema(ctx, subj, 1, sr.SoftDelete); err != nil {
		t.Errorf("soft delete version 1: %v", err)
	}
	if err := cl.DeleteSchema(ctx, subj, 1, sr.SoftDelete); srCode(err) != 40406 {
		t.Errorf("soft delete again: %v; want 40406", err)
	}
	if _, err := cl.SchemaByVersion(ctx, subj, 1); srCode(err) != 40402 {
		t.Errorf("get soft-deleted version: %v; want 40402", err)
	}
	if ss, err := cl.SchemaByVersion(sr.WithParams(ctx, sr.ShowDeleted), subj, 1); err != nil || ss.ID != id1 {
		t.Errorf("get soft-deleted version with deleted=true: %+v, %v", ss, err)
	}
	if vs, _ := cl.SubjectVersions(ctx, subj); len(vs) != 1 || vs[0] != 2 {
		t.Errorf("live versions = %v; want [2]", vs)
	}
	if _, err := cl.SchemaByID(ctx, id1); err != nil {
		t.Errorf("soft-deleted schema still readable by id: %v", err)
	}
	if err := cl.DeleteSchema(ctx, subj, 1, sr.HardDelete); err != nil {
		t.Errorf("hard delete soft-deleted version: %v", err)
	}
	if _, err := cl.SchemaByID(ctx, id1); srCode(err) != 40403 {
		t.Errorf("hard-deleted schema by id: %v; want 40403", err)
	}
	if err := cl.DeleteSchema(ctx, subj, 1, sr.SoftDelete); srCode(err) != 40402 {
		t.Errorf("delete hard-deleted version: %v; want 40402", err)
	}
	// Subject: permanent before soft → 40405; soft; soft again → 40404.
	if _, err := cl.DeleteSubject(ctx, subj, sr.HardDelete); srCode(err) != 40405 {
		t.Errorf("hard delete live subject: %v; want 40405", err)
	}
	if vs, err := cl.DeleteSubject(ctx, subj, sr.SoftDelete); err != nil || len(vs) != 1 || vs[0] != 2 {
		t.Errorf("soft delete subject = %v, %v; want [2]", vs, err)
	}
	if _, err := cl.DeleteSubject(ctx, subj, sr.SoftDelete); srCode(err) != 40404 {
		t.Errorf("soft delete subject again: %v; want 40404", err)
	}
	if subs, _ := cl.Subjects(ctx); len(subs) != 0 {
		t.Errorf("subjects after soft delete = %v; want none", subs)
	}
	if subs, _ := cl.Subjects(sr.WithParams(ctx, sr.ShowDeleted)); len(subs) != 1 {
		t.Errorf("subjects with deleted=true = %v; want [%s]", subs, subj)
	}
	if _, err := cl.SubjectVersions(ctx, subj); srCode(err) != 40401 {
		t.Errorf("versions of soft-deleted subject: %v; want 40401", err)
	}
	if vs, err := cl.DeleteSubject(ctx, subj, sr.HardDelete); err != nil || len(vs) != 1 {
		t.Errorf("hard delete subject = %v, %v", vs, err)
	}
	if _, err := cl.DeleteSubject(ctx, subj, sr.SoftDelete); srCode(err) != 40401 {
		t.Errorf("delete gone subject: %v; want 40401", err)
	}
	// Ids are never reused, and re-registering a deleted schema is a new
	// version 1 of a fresh subject.
	id3, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: userV3}, -1, -1)
	if err != nil || id3 <= id2 {
		t.Errorf("register after deletes: id %d, %v; want > %d", id3, err, id2)
	}
	if ss, err := cl.SchemaByVersion(ctx, subj, -1); err != nil || ss.Version != 1 {
		t.Errorf("version after hard delete = %+v, %v; want 1", ss, err)
	}
	if st, code, _ := call(t, "DELETE", in.url+"/subjects/"+subj+"/versions/0", ""); st != http.StatusUnprocessableEntity || code != 42202 {
		t.Errorf("delete version 0: %d/%d; want 422/42202", st, code)
	}
}

// TestRestart: a new Registry on the same topic sees the same ids and
// versions, and never reuses an id freed by a permanent delete.
func TestRestart(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	first := b.start(t)
	ctx := t.Context()
	id1, _ := first.sr.RegisterSchema(ctx, "a-value", sr.Schema{Schema: userV1}, -1, -1)
	id2, err := first.sr.RegisterSchema(ctx, "a-value", sr.Schema{Schema: userV2}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	_ = first.sr.DeleteSchema(ctx, "a-value", 2, sr.SoftDelete)
	if err := first.sr.DeleteSchema(ctx, "a-value", 2, sr.HardDelete); err != nil {
		t.Fatal(err)
	}
	first.sr.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFullTransitive}, "a-value")
	first.stop()

	second := b.start(t)
	if ss, err := second.sr.SchemaByVersion(ctx, "a-value", 1); err != nil || ss.ID != id1 || ss.Schema.Schema != userV1 {
		t.Errorf("after restart: %+v, %v; want id %d", ss, err, id1)
	}
	if r := second.sr.Compatibility(ctx, "a-value"); r[0].Level != sr.CompatFullTransitive {
		t.Errorf("config after restart = %+v", r[0])
	}
	id3, err := second.sr.RegisterSchema(ctx, "b-value", sr.Schema{Schema: userV3}, -1, -1)
	if err != nil || id3 <= id2 {
		t.Errorf("new id after restart = %d, %v; want > %d (ids are never reused)", id3, err, id2)
	}
	if vs, _ := second.sr.SubjectVersions(ctx, "a-value"); len(vs) != 1 {
		t.Errorf("versions after restart = %v", vs)
	}
}

// TestTwoInstances: two registries on one topic interleave writes; they
// agree on every id and no id is given to two schemas.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	x, y := b.start(t), b.start(t)
	ctx := t.Context()
	ids := map[int]string{}
	for i := range 6 {
		in := x
		if i%2 == 1 {
			in = y
		}
		s := strings.Replace(userV1, `"User"`, `"User`+string(rune('A'+i))+`"`, 1)
		id, err := in.sr.RegisterSchema(ctx, "multi-"+string(rune('a'+i)), sr.Schema{Schema: s}, -1, -1)
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		if prev, dup := ids[id]; dup {
			t.Fatalf("id %d given to two schemas: %s and %s", id, prev, s)
		}
		ids[id] = s
	}
	// Each instance serves reads from its replay of the log: poll until it
	// has read the other's last write.
	for id, s := range ids {
		for _, in := range []*instance{x, y} {
			spinetest.Eventually(t, 10*time.Second, func() error {
				if got, err := in.sr.SchemaTextByID(ctx, id); err != nil || got != s {
					return fmt.Errorf("instance %s id %d = %q, %v", in.url, id, got, err)
				}
				return nil
			})
		}
	}
}

// TestBasicAuthAndLimits: optional basic auth, and a capped body.
func TestBasicAuthAndLimits(t *testing.T) {
	t.Parallel()
	in := newBackend(t).start(t, registry.WithBasicAuth("u", "p"), registry.WithMaxBodyBytes(1024))
	ctx := t.Context()
	if _, err := in.sr.Subjects(ctx); srCode(err) != 401 {
		t.Errorf("no credentials: %v; want 401", err)
	}
	cl, _ := sr.NewClient(sr.URLs(in.url), sr.BasicAuth("u", "p"))
	if _, err := cl.Subjects(ctx); err != nil {
		t.Errorf("with credentials: %v", err)
	}
	big := `{"type":"record","name":"R","doc":"` + strings.Repeat("x", 2048) + `","fields":[]}`
	if _, err := cl.RegisterSchema(ctx, "big-value", sr.Schema{Schema: big}, -1, -1); srCode(err) != 42209 {
		t.Errorf("oversized body: %v; want 42209", err)
	}
}
