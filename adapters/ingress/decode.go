package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spinerun/spine/schemas"
)

// Bounds on the short fields of a request.
const (
	maxShort      = 256 // kind, actor, tenant, CloudEvents attributes
	maxAttributes = 64
	maxAttrValue  = 4096
)

// traceIDPattern is what a caller-chosen trace id may be.
var traceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// Request is a decoded POST /v1/intents body, before ids, time and
// identity are set.
type Request struct {
	Kind       string
	Input      string
	Actor      string
	Tenant     string
	TraceID    string
	Priority   int32
	DeadlineMs int64
	Attributes map[string]string
	// Contract is the contract asked for; 0 when the body names none.
	Contract schemas.ContractVersion
	// V2Fields are the fields set that exist in contract V2 only.
	V2Fields []string
	// CloudEvent is the envelope's identity, nil for a plain JSON body.
	CloudEvent *CloudEvent
}

// CloudEvent is the identity of a structured-mode CloudEvent.
type CloudEvent struct {
	ID, Source, Type string
}

// field is one member of a JSON object, in body order.
type field struct {
	name string
	raw  json.RawMessage
}

// DecodeBody decodes a request body: a JSON intent, or with cloudEvents a
// structured-mode CloudEvent whose data is one. It reports every problem
// found, each naming its field (data.* inside a CloudEvent). It never
// panics, whatever the bytes.
func DecodeBody(body []byte, cloudEvents bool) (*Request, []FieldError) {
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return nil, []FieldError{{Error: "the body is empty: send a JSON intent such as {\"kind\":\"summarize\",\"input\":\"...\"}", Code: CodeEmptyBody}}
	case !utf8.Valid(body):
		return nil, []FieldError{{Error: "the body is not valid UTF-8", Code: CodeInvalidUTF8}}
	case !json.Valid(body):
		var v any
		err := json.Unmarshal(body, &v)
		return nil, []FieldError{{Error: fmt.Sprintf("the body is not JSON: %v", err), Code: CodeInvalidJSON}}
	}
	fields, errs := members(body, "")
	if errs != nil {
		return nil, errs
	}
	if !cloudEvents {
		return decodeIntent(fields, "")
	}
	return decodeCloudEvent(fields)
}

// members lists the members of a JSON object (body is valid JSON).
func members(b []byte, prefix string) ([]field, []FieldError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		what := "the body"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return nil, []FieldError{{Error: what + " must be a JSON object", Code: CodeNotObject, Field: strings.TrimSuffix(prefix, ".")}}
	}
	var out []field
	var errs []FieldError
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, []FieldError{{Error: "the body is not JSON", Code: CodeInvalidJSON}}
		}
		name, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, []FieldError{{Error: "the body is not JSON", Code: CodeInvalidJSON}}
		}
		if seen[name] {
			errs = append(errs, FieldError{Error: fmt.Sprintf("field %s appears twice", prefix+name), Code: CodeDuplicateField, Field: prefix + name})
			continue
		}
		seen[name] = true
		out = append(out, field{name: name, raw: raw})
	}
	return out, errs
}

// decoder collects the problems of one object's fields.
type decoder struct {
	prefix string
	errs   []FieldError
}

func (d *decoder) fail(name, code, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Error: d.prefix + name + ": " + fmt.Sprintf(format, args...), Code: code, Field: d.prefix + name})
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// str decodes a string field; ok is false when it is null or not a string
// (the latter reported).
func (d *decoder) str(name string, raw json.RawMessage, maxLen int) (string, bool) {
	if isNull(raw) {
		return "", false
	}
	if len(raw) == 0 || raw[0] != '"' {
		d.fail(name, CodeWrongType, "must be a string")
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.fail(name, CodeWrongType, "must be a string")
		return "", false
	}
	if maxLen > 0 && len(s) > maxLen {
		d.fail(name, CodeInvalidValue, "is %d bytes, more than %d", len(s), maxLen)
		return "", false
	}
	return s, true
}

// integer decodes an integer field within [0, max].
func (d *decoder) integer(name string, raw json.RawMessage, maxV int64) (int64, bool) {
	if isNull(raw) {
		return 0, false
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		d.fail(name, CodeWrongType, "must be an integer")
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			d.fail(name, CodeInvalidValue, "is out of range 0..%d", maxV)
		} else {
			d.fail(name, CodeWrongType, "must be an integer")
		}
		return 0, false
	}
	if n < 0 || n > maxV {
		d.fail(name, CodeInvalidValue, "%d is out of range 0..%d", n, maxV)
		return 0, false
	}
	return n, true
}

// decodeIntent decodes the fields of an intent object.
func decodeIntent(fields []field, prefix string) (*Request, []FieldError) {
	d := &decoder{prefix: prefix}
	r := &Request{}
	var hasKind, hasInput bool
	for _, f := range fields {
		switch f.name {
		case "kind":
			if s, ok := d.str(f.name, f.raw, maxShort); ok && strings.TrimSpace(s) != "" {
				r.Kind, hasKind = s, true
			}
		case "input":
			if s, ok := d.str(f.name, f.raw, 0); ok && s != "" {
				r.Input, hasInput = s, true
			}
		case "actor":
			r.Actor, _ = d.str(f.name, f.raw, maxShort)
		case "tenant":
			if s, ok := d.str(f.name, f.raw, maxShort); ok {
				r.Tenant = s
				r.V2Fields = append(r.V2Fields, f.name)
			}
		case "trace_id":
			if s, ok := d.str(f.name, f.raw, 0); ok {
				if !traceIDPattern.MatchString(s) {
					d.fail(f.name, CodeInvalidValue, "must be 1 to 128 letters, digits or ._:-")
				} else {
					r.TraceID = s
				}
			}
		case "priority":
			if n, ok := d.integer(f.name, f.raw, 1<<31-1); ok {
				r.Priority = int32(n)
				r.V2Fields = append(r.V2Fields, f.name)
			}
		case "deadline_ms":
			if n, ok := d.integer(f.name, f.raw, 1<<53); ok {
				r.DeadlineMs = n
				r.V2Fields = append(r.V2Fields, f.name)
			}
		case "attributes":
			if attrs, ok := d.attributes(f.name, f.raw); ok {
				r.Attributes = attrs
				r.V2Fields = append(r.V2Fields, f.name)
			}
		case "contract":
			if s, ok := d.str(f.name, f.raw, maxShort); ok {
				v, err := schemas.ParseContractVersion(s)
				if err != nil || !v.Valid() {
					d.fail(f.name, CodeBadContract, "must be \"v1\" or \"v2\"")
				} else {
					r.Contract = v
				}
			}
		default:
			d.fail(f.name, CodeUnknownField, "unknown field (known: kind, input, actor, priority, tenant, attributes, contract, trace_id, deadline_ms)")
		}
	}
	if !hasKind && !d.has("kind") {
		d.fail("kind", CodeMissingField, "is required: the intent kind, such as summarize")
	}
	if !hasInput && !d.has("input") {
		d.fail("input", CodeMissingField, "is required: the run's input text")
	}
	if r.Contract == schemas.V1 {
		for _, f := range r.V2Fields {
			d.fail(f, CodeNeedsV2, "exists in contract v2 only: send \"contract\":\"v2\" or leave it out")
		}
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return r, nil
}

// has reports whether a problem was already reported for field name.
func (d *decoder) has(name string) bool {
	for _, e := range d.errs {
		if e.Field == d.prefix+name {
			return true
		}
	}
	return false
}

// attributes decodes an object of strings.
func (d *decoder) attributes(name string, raw json.RawMessage) (map[string]string, bool) {
	if isNull(raw) {
		return nil, false
	}
	if raw[0] != '{' {
		d.fail(name, CodeWrongType, "must be an object of strings")
		return nil, false
	}
	fields, errs := members(raw, d.prefix+name+".")
	if errs != nil {
		d.errs = append(d.errs, errs...)
		return nil, false
	}
	if len(fields) > maxAttributes {
		d.fail(name, CodeInvalidValue, "has %d entries, more than %d", len(fields), maxAttributes)
		return nil, false
	}
	out := make(map[string]string, len(fields))
	ok := true
	for _, f := range fields {
		if f.name == "" || len(f.name) > maxShort {
			d.fail(name, CodeInvalidValue, "keys must be 1 to %d bytes", maxShort)
			ok = false
			continue
		}
		s, good := d.str(name+"."+f.name, f.raw, maxAttrValue)
		if !good {
			if isNull(f.raw) {
				d.fail(name+"."+f.name, CodeWrongType, "must be a string")
			}
			ok = false
			continue
		}
		out[f.name] = s
	}
	return out, ok
}

// decodeCloudEvent checks a structured-mode CloudEvents 1.0 envelope and
// decodes its data as an intent.
func decodeCloudEvent(fields []field) (*Request, []FieldError) {
	d := &decoder{}
	ce := &CloudEvent{}
	var data json.RawMessage
	var spec bool
	for _, f := range fields {
		switch f.name {
		case "specversion":
			s, ok := d.str(f.name, f.raw, maxShort)
			if ok && s != "1.0" {
				d.fail(f.name, CodeBadCloudEvent, "must be \"1.0\"")
			}
			spec = spec || ok
		case "id":
			ce.ID, _ = d.str(f.name, f.raw, maxShort)
		case "source":
			ce.Source, _ = d.str(f.name, f.raw, maxShort)
		case "type":
			ce.Type, _ = d.str(f.name, f.raw, maxShort)
		case "datacontenttype":
			if s, ok := d.str(f.name, f.raw, maxShort); ok {
				if mt, _, err := mime.ParseMediaType(s); err != nil || mt != "application/json" {
					d.fail(f.name, CodeBadCloudEvent, "must be application/json (the data is a JSON intent)")
				}
			}
		case "data":
			data = f.raw
		case "data_base64":
			d.fail(f.name, CodeBadCloudEvent, "is not supported: send the intent as a JSON object in data")
		case "dataschema", "subject", "time":
			d.str(f.name, f.raw, 0)
		default:
			// An extension attribute: a name of lowercase letters and
			// digits, a scalar value.
			if !validExtension(f.name) {
				d.fail(f.name, CodeBadCloudEvent, "is not a CloudEvents attribute name (lowercase letters and digits)")
			} else if len(f.raw) > 0 && (f.raw[0] == '{' || f.raw[0] == '[') {
				d.fail(f.name, CodeWrongType, "an extension attribute must be a string, number or boolean")
			}
		}
	}
	for _, req := range []struct {
		name string
		v    string
	}{{"id", ce.ID}, {"source", ce.Source}, {"type", ce.Type}} {
		if req.v == "" && !d.has(req.name) {
			d.fail(req.name, CodeBadCloudEvent, "is a required CloudEvents attribute")
		}
	}
	if !spec && !d.has("specversion") {
		d.fail("specversion", CodeBadCloudEvent, "is a required CloudEvents attribute: \"1.0\"")
	}
	if data == nil || isNull(data) {
		d.fail("data", CodeMissingField, "is required: the intent, a JSON object")
		return nil, d.errs
	}
	dfields, errs := members(data, "data.")
	if errs != nil {
		return nil, append(d.errs, errs...)
	}
	r, errs := decodeIntent(dfields, "data.")
	if len(d.errs)+len(errs) > 0 {
		return nil, append(d.errs, errs...)
	}
	r.CloudEvent = ce
	return r, nil
}

func validExtension(name string) bool {
	if name == "" || len(name) > 20 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
