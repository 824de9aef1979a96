package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errNotObject is wrapped by decodeArguments for input that is valid JSON
// but not an object.
var errNotObject = errors.New("tool arguments must be a JSON object")

// decodeArguments checks a request's Input, the tool's arguments, which
// must be exactly one JSON object, and returns it compacted: keys in their
// order, numbers digit for digit, as the intent carried them.
func decodeArguments(in []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, fmt.Errorf("%w, got a JSON %s", errNotObject, ute.Value)
		}
		return nil, fmt.Errorf("%w: %v", errNotObject, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w, got null", errNotObject)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errNotObject)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, in); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotObject, err)
	}
	return b.Bytes(), nil
}
