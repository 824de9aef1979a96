package oidc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// issuer is a real local OIDC issuer: discovery and a JWKS over HTTP, keys
// that rotate while it runs, and a count of JWKS fetches.
type issuer struct {
	srv *httptest.Server
	URL string

	mu   sync.Mutex
	keys []jose.JSONWebKey // private keys; the JWKS serves their public halves

	jwksFetches atomic.Int64
	down        atomic.Bool
}

// testKeys are generated once: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() map[string]any {
	m := map[string]any{}
	for _, kid := range []string{"rsa-1", "rsa-2", "rsa-3"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		m[kid] = k
	}
	for _, kid := range []string{"ec-1", "ec-2"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		m[kid] = k
	}
	return m
})

func jwk(kid string) jose.JSONWebKey {
	k := testKeys()[kid]
	alg := "RS256"
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: alg, Use: "sig"}
}

// newIssuer starts an issuer publishing the keys named.
func newIssuer(t testing.TB, kids ...string) *issuer {
	t.Helper()
	is := &issuer{}
	is.setKeys(kids...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/keys",
			"authorization_endpoint":                is.URL + "/auth",
			"token_endpoint":                        is.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		is.jwksFetches.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	is.URL = is.srv.URL
	t.Cleanup(is.srv.Close)
	return is
}

// setKeys replaces the published keys (a rotation).
func (is *issuer) setKeys(kids ...string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = is.keys[:0]
	for _, kid := range kids {
		is.keys = append(is.keys, jwk(kid))
	}
}

// claims are a token's payload, relative to now.
func (is *issuer) claims(aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.URL, "aud": aud, "sub": "user-42",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": "user42@example.com", "groups": []string{"ops", "dev"},
	}
}

// sign signs claims with the key kid under alg, the header naming
// headerKid (kid when empty).
func sign(t testing.TB, kid, headerKid string, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	if headerKid == "" {
		headerKid = kid
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: testKeys()[kid], KeyID: headerKid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
