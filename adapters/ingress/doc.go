// Package ingress is Spine's HTTP ingress: POST /v1/intents takes an intent
// as JSON, or as a CloudEvent in structured mode, turns it into a
// schemas.Intent exactly as `spine produce` does (ids, timestamp, contract
// version) and produces it to spine.intents, answering 202 with the run's
// trace id and the record's topic, partition and offset only after Kafka
// acknowledged it. Nothing that is refused reaches Kafka.
//
// A request passes, in order: the method (405), the content type (415),
// the bearer token when a Verifier is configured (401, or 503 when the
// issuer is unreachable), a token bucket per caller (429 with
// Retry-After), the body size and read deadline (413, 408), the decoding
// of every field at once (400), the intent kind (422), the idempotency key
// (409), and the produce (503 when Kafka does not acknowledge). Every
// refusal is a JSON body {"error","code","field"} (with "errors" listing
// every bad field of a 400); the codes are stable.
//
// Identity: with a Verifier, the token's verified provenance goes on the
// intent and the actor becomes the verified subject. A token is read from
// the Authorization header only (one in the query string is ignored), and
// never appears in a log line, an error or a record.
//
// Idempotency: a request with an Idempotency-Key (or a CloudEvent, whose
// source and id are its key) is answered once per key and caller: a retry
// with the same body gets the first answer again without a second record,
// one with another body 409. The cache is in memory, per instance, bounded
// (Config.IdempotencyKeys, Config.IdempotencyTTL). Across instances the
// trace id carries the guarantee: it is derived from the caller and the key,
// so a retry that lands on another instance produces an intent with the
// same trace id, which the orchestrator deduplicates.
//
// Slow clients: the handler sets its own read and write deadlines on the
// connection (Config.ReadTimeout for the body, Config.WriteTimeout for the
// whole request), so it is protected even on a server without timeouts;
// the server should still set ReadHeaderTimeout (see ServerTimeouts).
//
// A Handler is safe for concurrent use. It starts no goroutine; its
// idempotency cache and rate limiters are guarded by one mutex each, never
// held during I/O.
package ingress
