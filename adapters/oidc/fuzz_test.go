package oidc_test

import (
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/spinerun/spine/adapters/oidc"
)

// FuzzVerify feeds arbitrary tokens to the parsing path: it never panics,
// every failure is a *TokenError (the issuer is up), and no error quotes
// its input.
func FuzzVerify(f *testing.F) {
	is := newIssuer(f, "rsa-1", "ec-1")
	v := newVerifier(f, is, nil)
	f.Add(sign(f, "rsa-1", "", jose.RS256, is.claims(aud)))
	f.Add(sign(f, "ec-1", "", jose.ES256, is.claims(aud)))
	for _, bt := range badTokens(f, is) {
		if len(bt.token) < 4096 {
			f.Add(bt.token)
		}
	}
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(t.Context(), tok)
		if err == nil {
			if p == nil || p.Subject == "" || p.Issuer != is.URL {
				t.Fatalf("accepted with provenance %+v", p)
			}
			return
		}
		var te *oidc.TokenError
		if !errors.As(err, &te) {
			t.Fatalf("not a token error: %v", err)
		}
		if strings.Contains(tok, ".") && len(tok) >= 12 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error quotes the token: %v", err)
		}
	})
}
