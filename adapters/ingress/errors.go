package ingress

// The codes of the ingress's error answers: stable, for clients and logs.
const (
	CodeMethodNotAllowed  = "method_not_allowed"     // 405
	CodeUnsupportedMedia  = "unsupported_media_type" // 415
	CodeNoToken           = "missing"                // 401 (a verifier's reason otherwise)
	CodeIssuerUnavailable = "issuer_unavailable"     // 503
	CodeRateLimited       = "rate_limited"           // 429
	CodeBodyTooLarge      = "body_too_large"         // 413
	CodeInputTooLarge     = "input_too_large"        // 413
	CodeTimeout           = "request_timeout"        // 408
	CodeEmptyBody         = "empty_body"             // 400
	CodeInvalidUTF8       = "invalid_utf8"           // 400
	CodeInvalidJSON       = "invalid_json"           // 400
	CodeNotObject         = "not_object"             // 400
	CodeUnknownField      = "unknown_field"          // 400
	CodeDuplicateField    = "duplicate_field"        // 400
	CodeWrongType         = "wrong_type"             // 400
	CodeMissingField      = "missing_field"          // 400
	CodeInvalidValue      = "invalid_value"          // 400
	CodeBadContract       = "bad_contract"           // 400
	CodeNeedsV2           = "needs_v2"               // 400
	CodeBadCloudEvent     = "bad_cloudevent"         // 400
	CodeBadIdempotencyKey = "bad_idempotency_key"    // 400
	CodeUnknownKind       = "unknown_kind"           // 422
	CodeIdempotencyClash  = "idempotency_conflict"   // 409
	CodeKafkaUnavailable  = "kafka_unavailable"      // 503
)

// FieldError is one refused field of a request.
type FieldError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
}

// ErrorBody is the JSON body of every refusal: the first problem, and for
// a 400 every problem found.
type ErrorBody struct {
	Error  string       `json:"error"`
	Code   string       `json:"code"`
	Field  string       `json:"field,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}
