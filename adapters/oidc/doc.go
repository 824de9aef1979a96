// Package oidc verifies OpenID Connect tokens (JWTs) against an issuer's
// published keys and translates a verified token into the run's
// provenance (schemas.Provenance): the verified issuer, subject, the time of
// verification and the claims the configuration names. Nothing of the token
// itself crosses into Spine: not the token, not a part of it in an error or
// a log line.
//
// Discovery is lazy: New does no I/O, and the first Verify fetches the
// issuer's /.well-known/openid-configuration (through go-oidc, which checks
// that the document names the configured issuer) and its JWKS, each bounded
// by Config.FetchTimeout. The verifier holds no goroutine, so any consumer
// (HTTP ingress, the orchestrator's admission) only calls Verify; Ready does
// the same fetch eagerly for a start-up check. An issuer that is down never
// keeps Spine from starting: Verify then fails with an error wrapping
// ErrUnavailable (retryable, HTTP 503), and discovery is retried at most
// once per second.
//
// Keys are cached and refetched (a) when a token names a kid the cache does
// not hold — at most once per Config.RefetchInterval (default 10s), go-oidc's
// own RemoteKeySet having no cooldown, so a flood of tokens with made-up
// kids costs the issuer one request per interval — and (b) when the cached
// set is older than Config.KeysMaxAge (default 15m), so a key removed by the
// issuer stops verifying without a restart. A failed refetch keeps the keys
// already known.
//
// The checks, each failing with a *TokenError and a stable Reason:
//
//   - size at most Config.MaxTokenBytes (default 8 KiB): too_large
//   - three base64url parts with a JSON header: malformed
//   - alg: never "none" (alg_none), never an HMAC (hmac_not_allowed: an
//     issuer's keys are public, so an HMAC "signed" with one proves
//     nothing), and only the algorithms of the published keys, pinned per
//     key: a key's own "alg" or, without one, RS256 for RSA, ES256/384/512
//     by curve for EC, EdDSA for Ed25519 (alg_not_allowed)
//   - kid naming a published key (unknown_kid, after at most one refetch)
//     of the type the alg needs (wrong_key_type)
//   - the signature (bad_signature)
//   - iss equal to Config.Issuer (bad_issuer), aud containing
//     Config.Audience (bad_audience)
//   - exp present and not passed (expired), nbf not in the future
//     (not_yet_valid), iat not in the future (issued_in_future), each with
//     at most Config.Skew (default and ceiling 60s) of clock skew
//   - a non-empty sub (no_subject)
//
// go-oidc's IDTokenVerifier does the signature (with the one key the kid
// names), issuer, audience and expiry checks with SupportedSigningAlgs set
// to the published keys' algorithms; this package does the rest and
// classifies its failures.
//
// A Verifier is safe for concurrent use and starts no goroutine. Its
// settings are immutable after New; the key cache has one mutex, never
// held during I/O: the caller that starts a fetch runs it (bounded by
// FetchTimeout, detached from its ctx's cancellation), and concurrent
// callers wait for that one fetch, each bounded by its own ctx.
package oidc
