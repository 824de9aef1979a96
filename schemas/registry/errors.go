package registry

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error answered over the REST API: an HTTP status and one of
// Confluent Schema Registry's stable error codes. Its JSON form is the body
// every error response carries: {"error_code": ..., "message": ...}.
type Error struct {
	Status  int    `json:"-"`
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("schema registry error %d: %s", e.Code, e.Message) }

// Is matches another *Error with the same code, so callers can test
// errors.Is(err, registry.ErrSubjectNotFound).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// The error codes Confluent Schema Registry answers with, and so does this
// one. Each sentinel carries the code and HTTP status; responses carry a
// message specific to the request.
var (
	ErrSubjectNotFound            = &Error{http.StatusNotFound, 40401, "Subject not found."}
	ErrVersionNotFound            = &Error{http.StatusNotFound, 40402, "Version not found."}
	ErrSchemaNotFound             = &Error{http.StatusNotFound, 40403, "Schema not found"}
	ErrSubjectSoftDeleted         = &Error{http.StatusNotFound, 40404, "Subject was soft deleted. Set permanent=true to delete permanently"}
	ErrSubjectNotSoftDeleted      = &Error{http.StatusNotFound, 40405, "Subject was not deleted first before being permanently deleted"}
	ErrVersionSoftDeleted         = &Error{http.StatusNotFound, 40406, "Version was soft deleted. Set permanent=true to delete permanently"}
	ErrVersionNotSoftDeleted      = &Error{http.StatusNotFound, 40407, "Version was not deleted first before being permanently deleted"}
	ErrSubjectCompatNotConfigured = &Error{http.StatusNotFound, 40408, "Subject does not have subject-level compatibility configured"}
	ErrIncompatibleSchema         = &Error{http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema"}
	ErrInvalidSchema              = &Error{http.StatusUnprocessableEntity, 42201, "Invalid schema"}
	ErrInvalidVersion             = &Error{http.StatusUnprocessableEntity, 42202, "Invalid version"}
	ErrInvalidCompatibilityLevel  = &Error{http.StatusUnprocessableEntity, 42203, "Invalid compatibility level"}
	ErrInvalidSubject             = &Error{http.StatusUnprocessableEntity, 42208, "Invalid subject"}
	ErrSchemaTooLarge             = &Error{http.StatusUnprocessableEntity, 42209, "Schema too large"}
	ErrStore                      = &Error{http.StatusInternalServerError, 50001, "Error in the backend data store"}
	ErrOperationTimeout           = &Error{http.StatusInternalServerError, 50002, "Operation timed out"}
	ErrRequestForwardingFailed    = &Error{http.StatusInternalServerError, 50003, "Error while forwarding the request to the primary"}
	errUnauthorized               = &Error{http.StatusUnauthorized, 401, "Unauthorized"}
	errAuthUnavailable            = &Error{http.StatusServiceUnavailable, 503, "Service Unavailable"}
	errNotFound                   = &Error{http.StatusNotFound, 404, "HTTP 404 Not Found"}
	errMethodNotAllowed           = &Error{http.StatusMethodNotAllowed, 405, "HTTP 405 Method Not Allowed"}
	errUnsupportedMediaType       = &Error{http.StatusUnsupportedMediaType, 415, "HTTP 415 Unsupported Media Type"}
)

// errf returns a copy of the sentinel with a specific message.
func errf(sentinel *Error, format string, args ...any) *Error {
	return &Error{Status: sentinel.Status, Code: sentinel.Code, Message: fmt.Sprintf(format, args...)}
}

// ErrNotReady is returned by Run's callers' waits and answered as 50002 when
// a request arrives before the registry has replayed its topic.
var ErrNotReady = errors.New("schema registry has not replayed its topic yet")
