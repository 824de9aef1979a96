package oidc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/spinerun/spine/schemas"
)

// Verifier verifies tokens of one issuer for one audience. It is safe for
// concurrent use; see the package doc for what it checks and when it
// fetches keys.
type Verifier struct {
	cfg     Config
	keys    *remoteKeys
	now     func() time.Time
	metrics *metrics
}

// New returns a verifier for cfg. It does no I/O: the issuer's keys are
// fetched by the first Verify (or Ready). It fails when cfg is invalid or
// names no issuer.
func New(cfg Config) (*Verifier, error) {
	if !cfg.Enabled() {
		return nil, errors.New("oidc: no issuer configured: set SPINE_OIDC_ISSUER (and SPINE_OIDC_AUDIENCE)")
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("oidc: %w", errors.Join(errs...))
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("oidc: metrics: %w", err)
	}
	v := &Verifier{cfg: cfg, now: time.Now, metrics: m}
	v.keys = &remoteKeys{cfg: &v.cfg, now: func() time.Time { return v.now() }, fetched: m.fetches}
	return v, nil
}

// Issuer returns the configured issuer.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// Ready fetches the issuer's discovery document and keys when none are
// known yet, bounded by ctx and FetchTimeout: a start-up or readiness
// check. The error wraps ErrUnavailable.
func (v *Verifier) Ready(ctx context.Context) error {
	_, err := v.keys.current(ctx)
	return err
}

// Verify checks rawToken and returns the provenance it proves: the
// verified issuer and subject, the time of verification and the claims of
// Config.Claims. A refused token fails with a *TokenError (not
// retryable); when the issuer's keys cannot be fetched and none are known,
// the error wraps ErrUnavailable (retryable). ctx bounds waiting for a key
// fetch. No error and no log line contains the token or a part of it.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (*schemas.Provenance, error) {
	p, err := v.verify(ctx, rawToken)
	result := "ok"
	if r := ReasonOf(err); r != "" {
		result = r
		v.cfg.Logger.Debug("oidc token rejected", "issuer", v.cfg.Issuer, "reason", r)
	} else if err != nil {
		result = "unavailable"
	}
	v.metrics.verifications.WithLabelValues(result).Inc()
	return p, err
}

// header is the part of a JOSE header looked at before go-oidc is.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

func (v *Verifier) verify(ctx context.Context, raw string) (*schemas.Provenance, error) {
	switch {
	case raw == "":
		return nil, reject(ReasonMissing)
	case len(raw) > v.cfg.MaxTokenBytes:
		return nil, reject(ReasonTooLarge)
	case strings.Count(raw, ".") != 2:
		return nil, reject(ReasonMalformed)
	}
	h, err := parseHeader(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		return nil, err
	}
	family := familyOf(h.Alg)
	switch {
	case strings.EqualFold(h.Alg, "none"):
		return nil, reject(ReasonAlgNone)
	case strings.HasPrefix(strings.ToUpper(h.Alg), "HS"):
		return nil, reject(ReasonHMAC)
	case family == "":
		return nil, reject(ReasonAlgNotAllowed)
	}

	set, err := v.keys.current(ctx)
	if err != nil {
		return nil, err
	}
	cands, reason := candidates(set, h, family)
	if reason == ReasonUnknownKid {
		set = v.keys.refetch(ctx)
		cands, reason = candidates(set, h, family)
	}
	if reason != "" {
		return nil, reject(reason)
	}

	// go-oidc checks the signature (with the named key only), iss, aud
	// and exp, its algorithms pinned to the published keys'.
	now := v.now()
	ks := &namedKeys{alg: jose.SignatureAlgorithm(h.Alg), keys: cands}
	ov := gooidc.NewVerifier(v.cfg.Issuer, ks, &gooidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: set.algs,
		Now:                  func() time.Time { return now.Add(-v.cfg.Skew) },
	})
	_, oerr := ov.Verify(ctx, raw)
	switch {
	case ks.badSignature:
		return nil, reject(ReasonBadSignature)
	case ks.payload == nil:
		return nil, reject(ReasonMalformed)
	}
	claims, reason := v.checkClaims(ks.payload, now)
	if reason != "" {
		return nil, reject(reason)
	}
	if oerr != nil {
		if _, ok := errors.AsType[*gooidc.TokenExpiredError](oerr); ok {
			return nil, reject(ReasonExpired)
		}
		return nil, reject(ReasonMalformed)
	}
	return v.provenance(claims, now), nil
}

// parseHeader decodes the first part of a compact JWS.
func parseHeader(seg string) (header, error) {
	var h header
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(b, &h) != nil || h.Alg == "" {
		return h, reject(ReasonMalformed)
	}
	return h, nil
}

// candidates are the keys a token may be verified with: the one its kid
// names, or without a kid every key of its algorithm.
func candidates(set *keySet, h header, family string) ([]*pubKey, string) {
	if h.Kid == "" {
		var out []*pubKey
		for _, k := range set.all {
			if k.alg == h.Alg {
				out = append(out, k)
			}
		}
		if len(out) == 0 {
			return nil, ReasonAlgNotAllowed
		}
		return out, ""
	}
	k, ok := set.byKid[h.Kid]
	switch {
	case !ok:
		return nil, ReasonUnknownKid
	case k.family != family:
		return nil, ReasonWrongKeyType
	case k.alg != h.Alg:
		return nil, ReasonAlgNotAllowed
	}
	return []*pubKey{k}, ""
}

// namedKeys is the gooidc.KeySet of one verification: the keys the
// token's kid selected. It records what happened for classification.
type namedKeys struct {
	alg          jose.SignatureAlgorithm
	keys         []*pubKey
	payload      []byte
	badSignature bool
}

// VerifySignature implements gooidc.KeySet.
func (n *namedKeys) VerifySignature(_ context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{n.alg})
	if err != nil {
		return nil, errors.New("malformed")
	}
	for _, k := range n.keys {
		if payload, err := jws.Verify(k.key); err == nil {
			n.payload = payload
			return payload, nil
		}
	}
	n.badSignature = true
	return nil, errors.New("bad signature")
}

// claimSet is the verified payload: the registered claims this package
// checks, and every claim raw for Config.Claims.
type claimSet struct {
	iss, sub string
	all      map[string]json.RawMessage
}

// checkClaims checks the registered claims of a payload whose signature
// verified, in go-oidc's order and then nbf, iat, sub.
func (v *Verifier) checkClaims(payload []byte, now time.Time) (claimSet, string) {
	var cs claimSet
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&cs.all); err != nil || cs.all == nil {
		return cs, ReasonMalformed
	}
	if json.Unmarshal(cs.all["iss"], &cs.iss) != nil || cs.iss != v.cfg.Issuer {
		return cs, ReasonBadIssuer
	}
	if !hasAudience(cs.all["aud"], v.cfg.Audience) {
		return cs, ReasonBadAudience
	}
	skew := v.cfg.Skew
	exp, ok, bad := numericDate(cs.all["exp"])
	if !ok || bad || now.Add(-skew).After(exp) {
		return cs, ReasonExpired
	}
	if nbf, ok, bad := numericDate(cs.all["nbf"]); bad {
		return cs, ReasonMalformed
	} else if ok && nbf.After(now.Add(skew)) {
		return cs, ReasonNotYetValid
	}
	if iat, ok, bad := numericDate(cs.all["iat"]); bad {
		return cs, ReasonMalformed
	} else if ok && iat.After(now.Add(skew)) {
		return cs, ReasonIssuedInFuture
	}
	if json.Unmarshal(cs.all["sub"], &cs.sub) != nil || strings.TrimSpace(cs.sub) == "" {
		return cs, ReasonNoSubject
	}
	return cs, ""
}

// hasAudience reports whether aud (a string or an array of strings)
// contains want.
func hasAudience(aud json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(aud, &many) != nil {
		return false
	}
	for _, a := range many {
		if a == want {
			return true
		}
	}
	return false
}

// numericDate decodes a JWT NumericDate (seconds since the epoch, maybe
// fractional): ok when present, bad when present but not a finite number.
func numericDate(raw json.RawMessage) (t time.Time, ok, bad bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, false, false
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
		return time.Time{}, false, true
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, false
}

// provenance is what a verified token proves.
func (v *Verifier) provenance(cs claimSet, now time.Time) *schemas.Provenance {
	p := &schemas.Provenance{Issuer: cs.iss, Subject: cs.sub, VerifiedAt: now.UTC().Truncate(time.Millisecond)}
	for _, name := range v.cfg.Claims {
		raw, ok := cs.all[name]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var buf bytes.Buffer
			if json.Compact(&buf, raw) != nil {
				continue
			}
			s = buf.String()
		}
		if p.Claims == nil {
			p.Claims = make(map[string]string, len(v.cfg.Claims))
		}
		p.Claims[name] = s
	}
	return p
}
