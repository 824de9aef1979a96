package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// discoveryRetry is the least time between two discovery attempts while no
// keys are known.
const discoveryRetry = time.Second

// pubKey is one published verification key with the one algorithm it
// verifies.
type pubKey struct {
	kid    string
	alg    string // RS256, ES256, EdDSA, ...
	family string // RSA, EC, OKP
	key    crypto.PublicKey
}

// keySet is one fetched JWKS: immutable once made.
type keySet struct {
	byKid   map[string]*pubKey
	all     []*pubKey
	algs    []string // the algorithms of the keys, sorted: SupportedSigningAlgs
	fetched time.Time
}

// remoteKeys is the issuer's discovery and JWKS, fetched lazily, refetched
// with a cooldown. Its fields are guarded by mu; a fetch runs outside mu,
// by the caller that started it, while others wait on its done channel.
type remoteKeys struct {
	cfg     *Config
	now     func() time.Time
	fetched *prometheus.CounterVec // outcome

	mu          sync.Mutex
	jwksURL     string
	set         *keySet
	lastAttempt time.Time // last discovery or JWKS fetch started
	lastRefetch time.Time // last fetch started while keys were known
	lastErr     error     // of the last failed attempt
	inflight    *fetchCall
	fetches     int // JWKS fetches started (for logs)
}

type fetchCall struct {
	done chan struct{}
	set  *keySet
	err  error
}

// current returns the keys, fetching them when none are known yet or when
// they are older than KeysMaxAge (at most once per RefetchInterval; a
// failed refresh keeps the old keys).
func (r *remoteKeys) current(ctx context.Context) (*keySet, error) {
	r.mu.Lock()
	set := r.set
	now := r.now()
	switch {
	case set == nil:
		if !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < discoveryRetry && r.inflight == nil {
			err := r.lastErr
			r.mu.Unlock()
			return nil, fmt.Errorf("%w: %s: %v (retrying at most once per %s)", ErrUnavailable, r.cfg.Issuer, err, discoveryRetry)
		}
	case now.Sub(set.fetched) < r.cfg.KeysMaxAge || now.Sub(r.lastRefetch) < r.cfg.RefetchInterval:
		r.mu.Unlock()
		return set, nil
	}
	r.mu.Unlock()
	fresh, err := r.fetch(ctx)
	if err != nil {
		if set != nil {
			return set, nil
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, r.cfg.Issuer, err)
	}
	return fresh, nil
}

// refetch fetches the keys again unless the last refetch (a fetch while
// keys were known) started less than RefetchInterval ago; it returns the
// keys known afterwards.
func (r *remoteKeys) refetch(ctx context.Context) *keySet {
	r.mu.Lock()
	set := r.set
	cooling := r.inflight == nil && r.now().Sub(r.lastRefetch) < r.cfg.RefetchInterval
	r.mu.Unlock()
	if cooling {
		return set
	}
	if fresh, err := r.fetch(ctx); err == nil {
		return fresh
	}
	return set
}

// fetch runs one discovery (when no JWKS URL is known yet) and JWKS fetch,
// or waits for the one in flight. The fetch itself is bounded by
// FetchTimeout and not cancelled by ctx (another caller may wait for it);
// ctx bounds the waiting.
func (r *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	r.mu.Lock()
	if c := r.inflight; c != nil {
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.set, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &fetchCall{done: make(chan struct{})}
	r.inflight = c
	r.lastAttempt = r.now()
	if r.set != nil {
		r.lastRefetch = r.lastAttempt
	}
	r.fetches++
	n, jwksURL := r.fetches, r.jwksURL
	r.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FetchTimeout)
	defer cancel()
	var err error
	if jwksURL == "" {
		jwksURL, err = r.discover(fctx)
	}
	var set *keySet
	if err == nil {
		set, err = r.fetchJWKS(fctx, jwksURL)
	}

	r.mu.Lock()
	if err == nil {
		r.jwksURL, r.set = jwksURL, set
	}
	r.lastErr = err
	r.inflight = nil
	r.mu.Unlock()
	c.set, c.err = set, err
	close(c.done)
	if err != nil {
		r.fetched.WithLabelValues("error").Inc()
		r.cfg.Logger.Warn("oidc keys fetch failed", "issuer", r.cfg.Issuer, "err", err)
	} else {
		r.fetched.WithLabelValues("ok").Inc()
		kids := make([]string, 0, len(set.all))
		for _, k := range set.all {
			kids = append(kids, k.kid)
		}
		r.cfg.Logger.Info("oidc keys fetched", "issuer", r.cfg.Issuer, "fetch", n, "kids", kids, "algs", set.algs)
	}
	return set, err
}

// discover reads the discovery document through go-oidc (which checks
// that it names the configured issuer) and returns its jwks_uri.
func (r *remoteKeys) discover(ctx context.Context) (string, error) {
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, r.cfg.HTTPClient), r.cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("discovery (is %s/.well-known/openid-configuration reachable and is SPINE_OIDC_ISSUER exactly the iss it names?): %w", r.cfg.Issuer, err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", fmt.Errorf("discovery document: %w", err)
	}
	u, err := url.Parse(doc.JWKSURI)
	switch {
	case doc.JWKSURI == "":
		return "", errors.New("discovery document has no jwks_uri")
	case err != nil || u.Host == "":
		return "", fmt.Errorf("discovery document's jwks_uri %q is not an absolute URL", doc.JWKSURI)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return "", fmt.Errorf("discovery document's jwks_uri %q: the scheme must be https", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// fetchJWKS reads and parses the key set at u, keeping the public
// signature keys Spine can verify with and skipping the others.
func (r *remoteKeys) fetchJWKS(ctx context.Context, u string) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks %s: read: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: %s", u, resp.Status)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks %s: larger than %d bytes", u, maxJWKSBytes)
	}
	set, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", u, err)
	}
	if len(skipped) > 0 {
		r.cfg.Logger.Debug("oidc keys skipped", "issuer", r.cfg.Issuer, "why", skipped)
	}
	set.fetched = r.now()
	return set, nil
}

// parseJWKS keeps the usable keys of a JWKS document: public RSA, EC
// (P-256/384/521) and Ed25519 keys whose use, when given, is "sig". It
// fails only when the document is not a JWKS or holds no usable key.
func parseJWKS(b []byte) (*keySet, []string, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	set := &keySet{byKid: map[string]*pubKey{}}
	var skipped []string
	for i, kb := range raw.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(kb); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		k, why := usable(jwk)
		if k == nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %s", i, jwk.KeyID, why))
			continue
		}
		if _, dup := set.byKid[k.kid]; dup && k.kid != "" {
			skipped = append(skipped, fmt.Sprintf("key %d: duplicate kid %q", i, k.kid))
			continue
		}
		if k.kid != "" {
			set.byKid[k.kid] = k
		}
		set.all = append(set.all, k)
		if !slices.Contains(set.algs, k.alg) {
			set.algs = append(set.algs, k.alg)
		}
	}
	if len(set.all) == 0 {
		return nil, skipped, errors.New("no usable signature key (RSA, EC P-256/384/521, Ed25519)")
	}
	slices.Sort(set.algs)
	return set, skipped, nil
}

// usable returns the key and the one algorithm it verifies, or why not.
func usable(jwk jose.JSONWebKey) (*pubKey, string) {
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil, "use is not sig"
	}
	if !jwk.IsPublic() {
		jwk = jwk.Public() // a private key published by mistake: keep its public half
	}
	k := &pubKey{kid: jwk.KeyID}
	switch pk := jwk.Key.(type) {
	case *rsa.PublicKey:
		k.family, k.key, k.alg = "RSA", pk, "RS256"
		if jwk.Algorithm != "" {
			if familyOf(jwk.Algorithm) != "RSA" {
				return nil, "alg " + jwk.Algorithm + " is not an RSA algorithm"
			}
			k.alg = jwk.Algorithm
		}
		if pk.N.BitLen() < 2048 {
			return nil, "RSA key shorter than 2048 bits"
		}
	case *ecdsa.PublicKey:
		k.family, k.key = "EC", pk
		switch pk.Curve {
		case elliptic.P256():
			k.alg = "ES256"
		case elliptic.P384():
			k.alg = "ES384"
		case elliptic.P521():
			k.alg = "ES512"
		default:
			return nil, "unsupported curve"
		}
		if jwk.Algorithm != "" && jwk.Algorithm != k.alg {
			return nil, "alg " + jwk.Algorithm + " does not match the curve"
		}
	case ed25519.PublicKey:
		k.family, k.key, k.alg = "OKP", pk, "EdDSA"
		if jwk.Algorithm != "" && jwk.Algorithm != "EdDSA" && jwk.Algorithm != "Ed25519" {
			return nil, "alg " + jwk.Algorithm + " is not EdDSA"
		}
	default:
		return nil, fmt.Sprintf("key type %T is not a public signature key", jwk.Key)
	}
	return k, ""
}

// familyOf is the key type an asymmetric JWS algorithm needs, or "".
func familyOf(alg string) string {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return "RSA"
	case "ES256", "ES384", "ES512":
		return "EC"
	case "EdDSA":
		return "OKP"
	}
	return ""
}
