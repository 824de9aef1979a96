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

// decodeArguments decodes a request's Input, the tool's arguments, which
// must be exactly one JSON object. Numbers stay json.Number, so they reach
// the server digit for digit.
func decodeArguments(in []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var m map[string]any
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
	return m, nil
}
