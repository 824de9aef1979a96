package spinetest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is a real local OIDC issuer: discovery and a JWKS with one RSA
// key over HTTP (loopback, which the verifier accepts without https). It
// signs tokens with Token.
type Issuer struct {
	URL string
	key *rsa.PrivateKey
}

var issuerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// NewIssuer starts an issuer until the test ends.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	is := &Issuer{key: issuerKey()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/keys",
			"authorization_endpoint": is.URL + "/auth", "token_endpoint": is.URL + "/token"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.key.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	is.URL = srv.URL
	return is
}

// Token signs a token for sub and audience aud, valid for ttl (negative:
// expired).
func (is *Issuer) Token(tb testing.TB, sub, aud string, ttl time.Duration) string {
	tb.Helper()
	return is.TokenWith(tb, sub, aud, ttl, nil)
}

// TokenWith is Token with more claims.
func (is *Issuer) TokenWith(tb testing.TB, sub, aud string, ttl time.Duration, extra map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: is.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": is.URL, "aud": aud, "sub": sub,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix()}
	maps.Copy(claims, extra)
	b, _ := json.Marshal(claims)
	obj, err := signer.Sign(b)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
