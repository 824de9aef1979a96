package registry

import (
	"strings"
	"testing"
)

func TestStateApply(t *testing.T) {
	t.Parallel()
	st := newState()
	must := func(key, value string) {
		t.Helper()
		var v []byte
		if value != "" {
			v = []byte(value)
		}
		if err := st.apply([]byte(key), v); err != nil {
			t.Fatalf("apply %s: %v", key, err)
		}
	}
	must(string(schemaKey("s", 1)), `{"subject":"s","version":1,"id":1,"schema":"\"int\"","deleted":false}`)
	must(string(schemaKey("s", 2)), `{"subject":"s","version":2,"id":2,"schema":"\"long\"","deleted":false}`)
	must(string(schemaKey("t", 1)), `{"subject":"t","version":1,"id":1,"schema":"\"int\"","deleted":false}`)
	must(string(configKey("")), `{"compatibilityLevel":"FULL"}`)
	must(string(configKey("s")), `{"compatibilityLevel":"NONE"}`)
	if st.level("s", Backward) != None || st.level("t", Backward) != Full {
		t.Errorf("levels s=%s t=%s", st.level("s", Backward), st.level("t", Backward))
	}
	// Confluent's DELETE_SUBJECT soft-deletes up to a version.
	must(`{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}`, `{"subject":"s","version":1}`)
	if live := st.versions("s", false); len(live) != 1 || live[0].Version != 2 {
		t.Errorf("after DELETE_SUBJECT live = %v", live)
	}
	// A tombstone removes a version; the id stays while another subject uses it.
	must(string(schemaKey("s", 1)), "")
	if _, ok := st.byID[1]; !ok {
		t.Error("id 1 dropped while subject t still uses it")
	}
	must(`{"keytype":"CLEAR_SUBJECT","subject":"t","magic":0}`, `{"subject":"t","version":1}`)
	if _, ok := st.byID[1]; ok {
		t.Error("id 1 kept after its last use was removed")
	}
	must(string(watermarkKey()), `{"max_id":9}`)
	if st.maxID != 9 {
		t.Errorf("maxID = %d, want 9", st.maxID)
	}
	must(string(configKey("s")), "")
	if st.level("s", Backward) != Full {
		t.Errorf("after config tombstone: %s", st.level("s", Backward))
	}
	must(`{"keytype":"MODE","subject":null,"magic":0}`, `{"mode":"READWRITE"}`)
	for _, bad := range [][2]string{
		{`nope`, `{}`},
		{`{"keytype":"WHAT","magic":0}`, `{}`},
		{string(schemaKey("s", 3)), `{"subject":"other","version":3,"id":3,"schema":"\"int\""}`},
		{string(configKey("s")), `{"compatibilityLevel":"SIDEWAYS"}`},
	} {
		if err := st.apply([]byte(bad[0]), []byte(bad[1])); err == nil {
			t.Errorf("apply %s → %s: no error", bad[0], bad[1])
		}
	}
}

// TestReasons: each kind of incompatibility is explained with the field
// path and a reason type.
func TestReasons(t *testing.T) {
	t.Parallel()
	rec := func(fields string) string {
		return `{"type":"record","name":"R","fields":[` + fields + `]}`
	}
	for _, tc := range []struct {
		name, reader, writer string
		typ, field           string
	}{
		{"missing default", rec(`{"name":"a","type":"int"},{"name":"b","type":"int"}`), rec(`{"name":"a","type":"int"}`), "READER_FIELD_MISSING_DEFAULT_VALUE", "b"},
		{"nested", rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}}`), rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"string"}]}}`), "TYPE_MISMATCH", "n.x"},
		{"enum", rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`), rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`), "MISSING_ENUM_SYMBOLS", "e"},
		{"union", rec(`{"name":"u","type":["null","string"]}`), rec(`{"name":"u","type":["null","int"]}`), "MISSING_UNION_BRANCH", "u"},
		{"fixed", rec(`{"name":"f","type":{"type":"fixed","name":"F","size":2}}`), rec(`{"name":"f","type":{"type":"fixed","name":"F","size":4}}`), "FIXED_SIZE_MISMATCH", "f"},
		{"array items", rec(`{"name":"l","type":{"type":"array","items":"int"}}`), rec(`{"name":"l","type":{"type":"array","items":"long"}}`), "TYPE_MISMATCH", "l[]"},
		{"renamed", `{"type":"record","name":"S","fields":[]}`, `{"type":"record","name":"R","fields":[]}`, "NAME_MISMATCH", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := Parse(tc.reader)
			if err != nil {
				t.Fatal(err)
			}
			w, err := Parse(tc.writer)
			if err != nil {
				t.Fatal(err)
			}
			rs := check(Backward, r, []checkVersion{{Version: 3, Schema: w}})
			if len(rs) == 0 {
				t.Fatal("no reasons for an incompatible pair")
			}
			if rs[0].Type != tc.typ || rs[0].Field != tc.field || rs[0].Version != 3 {
				t.Errorf("reason = %+v; want type %s field %q version 3", rs[0], tc.typ, tc.field)
			}
			msgs := strings.Join(messages(Backward, rs), " ")
			for _, want := range []string{tc.typ, "version 3", "{compatibility: 'BACKWARD'}"} {
				if !strings.Contains(msgs, want) {
					t.Errorf("messages %q lack %q", msgs, want)
				}
			}
			// The forward direction of a compatible pair has no reasons.
			if rs := check(None, r, []checkVersion{{Version: 3, Schema: w}}); rs != nil {
				t.Errorf("NONE gave reasons %v", rs)
			}
		})
	}
}
