package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzArguments: decodeArguments never panics; what it accepts is exactly
// one JSON object (as encoding/json reads it, numbers as written: RFC 8259
// bounds no number, so {"n":1E700} is an object, whose number the tool
// judges), its output is compact,
// valid, accepted again unchanged (round trip stable) and means the same
// as the input; what it rejects wraps errNotObject.
func FuzzArguments(f *testing.F) {
	for _, s := range []string{`{}`, ` {"a":1} `, `{"a":{"b":[1,2,{"c":null}]},"d":"\u00e9"}`,
		`{"n":12345678901234567890}`, `null`, `[]`, `"s"`, `1`, `{`, `{} {}`, `{}x`, ``, "{\"a\":\"\xff\"}", `{"":1E700}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := decodeArguments(in)
		var want map[string]any
		isObject := unmarshalNumbers(in, &want) == nil && want != nil
		if err != nil {
			if !errors.Is(err, errNotObject) {
				t.Fatalf("decodeArguments(%q) = %v, want errNotObject", in, err)
			}
			if isObject {
				t.Fatalf("decodeArguments(%q) rejected a JSON object: %v", in, err)
			}
			return
		}
		if !isObject {
			t.Fatalf("decodeArguments(%q) accepted what is not a JSON object", in)
		}
		if !json.Valid(out) || out[0] != '{' {
			t.Fatalf("decodeArguments(%q) = %q, not a JSON object", in, out)
		}
		again, err := decodeArguments(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("round trip: %q -> %q -> %q, %v", in, out, again, err)
		}
		var got map[string]any
		if err := unmarshalNumbers(out, &got); err != nil {
			t.Fatalf("unmarshal %q: %v", out, err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("decodeArguments(%q) = %q changed the meaning", in, out)
		}
	})
}

// unmarshalNumbers is json.Unmarshal of exactly one value, with numbers
// kept as written (json.Number).
func unmarshalNumbers(in []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

func TestBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
	}{{"short", "boom"}, {"ascii", strings.Repeat("x", 600)}, {"runes", strings.Repeat("é", 400)}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := bound(tc.in, maxToolErrorBytes)
			if len(got) > maxToolErrorBytes {
				t.Fatalf("len %d over %d", len(got), maxToolErrorBytes)
			}
			if len(tc.in) <= maxToolErrorBytes && got != tc.in {
				t.Fatalf("bound cut a short text: %q", got)
			}
			if !strings.HasPrefix(tc.in, strings.TrimSuffix(got, "…")) || !json.Valid([]byte(`"`+got+`"`)) {
				t.Fatalf("bound(%q) = %q, not a valid prefix", tc.in, got)
			}
		})
	}
}
