package orchestrator

// Stable codes of the inputs the orchestrator rejects (pipeline.RejectError
// codes; the loop dead-letters the record with it).
const (
	// CodeUnknownIntentKind: the intent's kind is not an allowed kind.
	CodeUnknownIntentKind = "unknown_intent_kind"
	// CodeMissingField: a required intent field is empty.
	CodeMissingField = "missing_field"
	// CodeKeyMismatch: the record key is not the trace id, so the run's
	// events would land on another partition than its state.
	CodeKeyMismatch = "key_mismatch"
	// CodeFutureTimestamp: the intent's timestamp is further in the future
	// than the allowed clock skew.
	CodeFutureTimestamp = "timestamp_in_future"
	// CodeInvalidUTF8: an identifying field is not valid UTF-8.
	CodeInvalidUTF8 = "invalid_utf8"
	// CodeInputTooLarge: the intent's input exceeds schemas.MaxInputBytes.
	CodeInputTooLarge = "input_too_large"
	// CodeUnknownRun: an event for a run the orchestrator does not know and
	// that cannot start one.
	CodeUnknownRun = "unknown_run"
	// CodeIllegalTransition: a runtime event where only intents may come
	// (spine.intents). Illegal transitions of a known run are not rejected
	// but recorded as run.illegal_transition events.
	CodeIllegalTransition = "illegal_transition"
	// CodeUnexpectedValue: a record that is neither an intent nor an event.
	CodeUnexpectedValue = "unexpected_value"
	// CodeBadState: the stored state of the key does not decode.
	CodeBadState = "bad_state"
)
