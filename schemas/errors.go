package schemas

import (
	"errors"
	"fmt"
)

// ErrorCode is a stable, machine-readable reason a record was refused. Codes
// are part of Spine's public surface: dead-letter headers and user-facing
// errors carry them, so they never change meaning.
type ErrorCode string

// Decode error codes: why bytes could not become a canonical value. Every one
// of them is permanent — retrying the same bytes gives the same answer — so
// the pipeline dead-letters the record.
const (
	// CodeEmpty: the record value has no bytes at all.
	CodeEmpty ErrorCode = "empty"
	// CodeTooShort: fewer than the 5 bytes of the Confluent header.
	CodeTooShort ErrorCode = "too_short"
	// CodeBadMagic: the first byte is not the Confluent magic byte 0.
	CodeBadMagic ErrorCode = "bad_magic"
	// CodeUnknownSchemaID: the registry does not know the header's id
	// (it answered 404 / 40403).
	CodeUnknownSchemaID ErrorCode = "unknown_schema_id"
	// CodeWrongContract: the id names a schema that is not the contract
	// expected here (another contract's id, a non-Avro schema, or a schema
	// the reader cannot resolve).
	CodeWrongContract ErrorCode = "wrong_contract"
	// CodeTruncated: the Avro body ends before the writer schema does.
	CodeTruncated ErrorCode = "truncated"
	// CodeTrailingBytes: bytes are left after the Avro body.
	CodeTrailingBytes ErrorCode = "trailing_bytes"
	// CodeTooLarge: the record, or a length or count inside it, is over
	// the serde's bound (MaxRecordBytes).
	CodeTooLarge ErrorCode = "too_large"
	// CodeInvalidUTF8: a string (a field, a map key or value) is not
	// valid UTF-8.
	CodeInvalidUTF8 ErrorCode = "invalid_utf8"
	// CodeMalformed: the body is not valid Avro for its writer schema
	// (a negative length, an enum or union index out of range, an
	// overlong varint).
	CodeMalformed ErrorCode = "malformed"
	// CodeInvalidContract: the value decoded but fails Validate (a missing
	// required value, an unknown schema_version, a timestamp far in the
	// future, a field over its bound).
	CodeInvalidContract ErrorCode = "invalid_contract"
)

// Encode error codes: why a value could not be encoded. These are permanent
// for the same value and the same registry content.
const (
	// CodeUnsupportedType: the value is not *Intent or *RuntimeEvent.
	CodeUnsupportedType ErrorCode = "unsupported_type"
	// CodeNotRegistered: the contract version is not registered under the
	// subject (lookup answered 40401 / 40403) and the serde does not
	// register.
	CodeNotRegistered ErrorCode = "not_registered"
	// CodeIncompatible: registering the contract was refused by the
	// subject's compatibility rule (409).
	CodeIncompatible ErrorCode = "incompatible"
	// CodeInvalidVersion: the contract version asked for is not V1 or V2.
	CodeInvalidVersion ErrorCode = "invalid_version"
)

// DecodeError is a permanent failure to decode one record: the bytes are
// poison and retrying will not help. ID is the schema id from the header
// when one was read, else 0. It implements the pipeline's Coded interface
// through ErrorCode, so the processing loop dead-letters the record.
//
// errors.Is(err, ErrTruncated) (and the other Err* values) matches any
// DecodeError with the same Code.
type DecodeError struct {
	Code ErrorCode
	ID   int
	Err  error
}

func (e *DecodeError) Error() string {
	msg := "decode"
	if e.ID != 0 {
		msg = fmt.Sprintf("decode schema id %d", e.ID)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s (%s): %v", msg, e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %s", msg, e.Code)
}

// ErrorCode returns the stable code, e.g. "bad_magic".
func (e *DecodeError) ErrorCode() string { return string(e.Code) }

// Unwrap returns the underlying cause, if any.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is a *DecodeError with the same Code, so the
// Err* sentinels below work with errors.Is.
func (e *DecodeError) Is(target error) bool {
	t, ok := target.(*DecodeError)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is: each matches every DecodeError of its code.
var (
	ErrEmpty           = &DecodeError{Code: CodeEmpty}
	ErrTooShort        = &DecodeError{Code: CodeTooShort}
	ErrBadMagic        = &DecodeError{Code: CodeBadMagic}
	ErrUnknownSchemaID = &DecodeError{Code: CodeUnknownSchemaID}
	ErrWrongContract   = &DecodeError{Code: CodeWrongContract}
	ErrTruncated       = &DecodeError{Code: CodeTruncated}
	ErrTrailingBytes   = &DecodeError{Code: CodeTrailingBytes}
	ErrTooLarge        = &DecodeError{Code: CodeTooLarge}
	ErrInvalidUTF8     = &DecodeError{Code: CodeInvalidUTF8}
	ErrMalformed       = &DecodeError{Code: CodeMalformed}
	ErrInvalidContract = &DecodeError{Code: CodeInvalidContract}
)

// EncodeError is a permanent failure to encode a value under a subject.
// A registry outage is not an EncodeError: it is returned wrapped, without
// a code, and is worth retrying.
type EncodeError struct {
	Code    ErrorCode
	Subject string
	Version ContractVersion
	Err     error
}

func (e *EncodeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("encode %s %s (%s): %v", e.Subject, e.Version, e.Code, e.Err)
	}
	return fmt.Sprintf("encode %s %s: %s", e.Subject, e.Version, e.Code)
}

// ErrorCode returns the stable code, e.g. "not_registered".
func (e *EncodeError) ErrorCode() string { return string(e.Code) }

// Unwrap returns the underlying cause, if any.
func (e *EncodeError) Unwrap() error { return e.Err }

// ValidationError says which field of a contract value breaks which rule.
// Code is CodeInvalidContract, or CodeInvalidUTF8 for a string that is not
// valid UTF-8.
type ValidationError struct {
	Contract Contract
	Field    string
	Reason   string
	Code     ErrorCode
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s: %s", e.Contract, e.Field, e.Reason)
}

// ErrorCode returns the stable code, "invalid_contract" or "invalid_utf8".
func (e *ValidationError) ErrorCode() string { return string(e.Code) }

// CodeOf returns the stable code carried by err (a DecodeError, EncodeError
// or ValidationError anywhere in its chain), or "" for a transient error.
func CodeOf(err error) ErrorCode {
	var c interface{ ErrorCode() string }
	if errors.As(err, &c) {
		return ErrorCode(c.ErrorCode())
	}
	return ""
}
