package oidc

import "errors"

// ErrUnavailable is wrapped by Verify and Ready when the issuer's discovery
// document or keys could not be fetched and no keys are known yet: the
// token was not judged, and the caller may retry (HTTP 503).
var ErrUnavailable error = unavailableError{}

// unavailableError is ErrUnavailable: Temporary, so a consumer that knows
// nothing of this package (the orchestrator's admission) retries instead of
// rejecting the run.
type unavailableError struct{}

func (unavailableError) Error() string   { return "oidc: issuer unavailable" }
func (unavailableError) Temporary() bool { return true }

// The reasons of a *TokenError: stable codes for logs, HTTP answers and
// metrics.
const (
	ReasonTooLarge       = "too_large"
	ReasonMalformed      = "malformed"
	ReasonAlgNone        = "alg_none"
	ReasonHMAC           = "hmac_not_allowed"
	ReasonAlgNotAllowed  = "alg_not_allowed"
	ReasonUnknownKid     = "unknown_kid"
	ReasonWrongKeyType   = "wrong_key_type"
	ReasonBadSignature   = "bad_signature"
	ReasonBadIssuer      = "bad_issuer"
	ReasonBadAudience    = "bad_audience"
	ReasonExpired        = "expired"
	ReasonNotYetValid    = "not_yet_valid"
	ReasonIssuedInFuture = "issued_in_future"
	ReasonNoSubject      = "no_subject"
	ReasonMissing        = "missing"
)

// reasons explains each reason; the text never quotes the token.
var reasons = map[string]string{
	ReasonTooLarge:       "the token is larger than the configured limit",
	ReasonMalformed:      "the token is not a signed JWT (three base64url parts, a JSON header and payload)",
	ReasonAlgNone:        "the token is unsigned (alg none)",
	ReasonHMAC:           "the token is signed with an HMAC; only the issuer's asymmetric keys are accepted",
	ReasonAlgNotAllowed:  "the token's algorithm is not one of the issuer's published keys' algorithms",
	ReasonUnknownKid:     "the token names a key the issuer does not publish",
	ReasonWrongKeyType:   "the token's algorithm does not match the type of the key it names",
	ReasonBadSignature:   "the token's signature does not verify",
	ReasonBadIssuer:      "the token was not issued by the configured issuer",
	ReasonBadAudience:    "the token's audience does not contain the configured audience",
	ReasonExpired:        "the token has expired (or has no exp)",
	ReasonNotYetValid:    "the token is not valid yet (nbf)",
	ReasonIssuedInFuture: "the token is issued in the future (iat)",
	ReasonNoSubject:      "the token has no subject (sub)",
	ReasonMissing:        "no token was presented",
}

// TokenError is a token refused by Verify: not retryable, HTTP 401. Reason
// is one of the Reason* codes. The message is fixed per reason and never
// contains the token or any part of it.
type TokenError struct {
	Reason string
}

func (e *TokenError) Error() string {
	return "oidc: token rejected: " + e.Reason + ": " + reasons[e.Reason]
}

// Code returns Reason: the stable code consumers (HTTP ingress) answer
// with, found through an interface{ Code() string } without importing
// this package.
func (e *TokenError) Code() string { return e.Reason }

func reject(reason string) error { return &TokenError{Reason: reason} }

// ReasonOf returns the Reason of a *TokenError in err's chain, or "".
func ReasonOf(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}
