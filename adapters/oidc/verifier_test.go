package oidc_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/adapters/oidc"
)

const aud = "spine-test"

func newVerifier(t testing.TB, is *issuer, mod func(*oidc.Config)) *oidc.Verifier {
	t.Helper()
	cfg := oidc.Config{Issuer: is.URL, Audience: aud, Claims: []string{"email", "groups", "absent"}}
	if mod != nil {
		mod(&cfg)
	}
	v, err := oidc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, "rsa-1", "ec-1")
	v := newVerifier(t, is, nil)
	now := time.Now()
	tests := []struct {
		name  string
		token string
	}{
		{"RS256", sign(t, "rsa-1", "", jose.RS256, is.claims(aud))},
		{"ES256", sign(t, "ec-1", "", jose.ES256, is.claims(aud))},
		{"aud array", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "aud", []string{"other", aud}))},
		{"expired within the skew", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "exp", now.Add(-30*time.Second).Unix()))},
		{"nbf within the skew", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "nbf", now.Add(30*time.Second).Unix()))},
		{"iat within the skew", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "iat", now.Add(30*time.Second).Unix()))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token)
			if err != nil {
				t.Fatal(err)
			}
			if p.Issuer != is.URL || p.Subject != "user-42" || time.Since(p.VerifiedAt) > time.Minute {
				t.Errorf("provenance %+v", p)
			}
			if p.Claims["email"] != "user42@example.com" || p.Claims["groups"] != `["ops","dev"]` || len(p.Claims) != 2 {
				t.Errorf("claims %v", p.Claims)
			}
		})
	}
	if n := is.jwksFetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1", n)
	}
}

// badTokens are the refused tokens, each with its reason.
func badTokens(t testing.TB, is *issuer) []struct{ name, token, reason string } {
	now := time.Now()
	good := sign(t, "rsa-1", "", jose.RS256, is.claims(aud))
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	// HS256 "signed" with the issuer's RSA public key, as in the
	// algorithm confusion attack.
	pubDER, err := x509.MarshalPKIXPublicKey(testKeys()["rsa-1"].(*rsa.PrivateKey).Public())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", "rsa-1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	hsPayload, _ := json.Marshal(is.claims(aud))
	hsObj, err := hs.Sign(hsPayload)
	if err != nil {
		t.Fatal(err)
	}
	hsTok, _ := hsObj.CompactSerialize()

	tampered := parts[0] + "." + b64([]byte(`{"iss":"`+is.URL+`","aud":"`+aud+`","sub":"admin","exp":9999999999}`)) + "." + parts[2]
	return []struct{ name, token, reason string }{
		{"alg none", b64([]byte(`{"alg":"none","kid":"rsa-1"}`)) + "." + parts[1] + ".", oidc.ReasonAlgNone},
		{"HS256 with the public key", hsTok, oidc.ReasonHMAC},
		{"wrong iss", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "iss", "https://evil.example.com")), oidc.ReasonBadIssuer},
		{"aud without ours", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "aud", []string{"other", "another"})), oidc.ReasonBadAudience},
		{"no aud", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "aud", nil)), oidc.ReasonBadAudience},
		{"expired", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "exp", now.Add(-2*time.Minute).Unix())), oidc.ReasonExpired},
		{"no exp", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "exp", nil)), oidc.ReasonExpired},
		{"nbf in the future", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "nbf", now.Add(2*time.Minute).Unix())), oidc.ReasonNotYetValid},
		{"nbf far in the future", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "nbf", now.Add(time.Hour).Unix())), oidc.ReasonNotYetValid},
		{"iat far in the future", sign(t, "ec-1", "", jose.ES256, with(is.claims(aud), "iat", now.Add(10*time.Minute).Unix())), oidc.ReasonIssuedInFuture},
		{"tampered payload", tampered, oidc.ReasonBadSignature},
		{"signed by another key under a published kid", sign(t, "rsa-3", "rsa-1", jose.RS256, is.claims(aud)), oidc.ReasonBadSignature},
		{"truncated", good[:strings.IndexByte(good, '.')+20], oidc.ReasonMalformed},
		{"signature cut off", parts[0] + "." + parts[1] + ".", oidc.ReasonBadSignature},
		{"oversized", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "pad", strings.Repeat("x", 9000))), oidc.ReasonTooLarge},
		{"ES256 header naming an RSA kid", sign(t, "ec-1", "rsa-1", jose.ES256, is.claims(aud)), oidc.ReasonWrongKeyType},
		{"RS256 header naming an EC kid", sign(t, "rsa-1", "ec-1", jose.RS256, is.claims(aud)), oidc.ReasonWrongKeyType},
		{"RS512 with an RS256 key", sign(t, "rsa-1", "", jose.RS512, is.claims(aud)), oidc.ReasonAlgNotAllowed},
		{"PS256 not published", sign(t, "rsa-1", "", jose.PS256, is.claims(aud)), oidc.ReasonAlgNotAllowed},
		{"no sub", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "sub", nil)), oidc.ReasonNoSubject},
		{"empty sub", sign(t, "rsa-1", "", jose.RS256, with(is.claims(aud), "sub", "")), oidc.ReasonNoSubject},
		{"payload not JSON", parts[0] + "." + b64([]byte("hello")) + "." + parts[2], oidc.ReasonBadSignature},
		{"garbage", "this is not a token at all", oidc.ReasonMalformed},
		{"garbage with dots", "a.b.c", oidc.ReasonMalformed},
		{"header not JSON", b64([]byte("{alg")) + "." + parts[1] + "." + parts[2], oidc.ReasonMalformed},
		{"JWE-shaped", "a.b.c.d.e", oidc.ReasonMalformed},
		{"empty", "", oidc.ReasonMissing},
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, "rsa-1", "ec-1")
	var logs bytes.Buffer
	var mu sync.Mutex
	reg := prometheus.NewRegistry()
	v := newVerifier(t, is, func(c *oidc.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Registerer = reg
	})
	bad := badTokens(t, is)
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			var te *oidc.TokenError
			if !errors.As(err, &te) || te.Reason != tt.reason {
				t.Fatalf("err %v, want reason %s", err, tt.reason)
			}
			assertNoTokenText(t, "error", err.Error(), tt.token)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"reason":"bad_signature"`) {
		t.Errorf("no rejection logged: %s", logs.String())
	}
	for _, tt := range bad {
		assertNoTokenText(t, "log", logs.String(), tt.token)
	}
	if got := counter(t, reg, "spine_oidc_verifications_total", "bad_signature"); got < 3 {
		t.Errorf("spine_oidc_verifications_total{result=bad_signature} = %v, want at least 3", got)
	}
	if got := counter(t, reg, "spine_oidc_jwks_fetches_total", "ok"); got != 1 {
		t.Errorf("spine_oidc_jwks_fetches_total{outcome=ok} = %v, want 1", got)
	}
}

// counter is the value of the series of name whose one label is value.
func counter(t *testing.T, g prometheus.Gatherer, name, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// assertNoTokenText fails when text holds any 12-byte window of a part of
// token (header, payload or signature).
func assertNoTokenText(t testing.TB, what, text, token string) {
	t.Helper()
	for _, part := range strings.Split(token, ".") {
		for i := 0; i+12 <= len(part); i += 6 {
			if strings.Contains(text, part[i:i+12]) {
				t.Fatalf("%s contains token text %q: %s", what, part[i:i+12], text)
			}
		}
	}
}

// An unknown kid costs exactly one JWKS refetch, then a rejection; a
// second one within the refetch interval costs none.
func TestUnknownKidRefetchesOnce(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, "rsa-1", "ec-1")
	v := newVerifier(t, is, nil)
	if _, err := v.Verify(t.Context(), sign(t, "rsa-1", "", jose.RS256, is.claims(aud))); err != nil {
		t.Fatal(err)
	}
	if n := is.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the first token, want 1", n)
	}
	unknown := sign(t, "rsa-2", "", jose.RS256, is.claims(aud))
	if _, err := v.Verify(t.Context(), unknown); oidc.ReasonOf(err) != oidc.ReasonUnknownKid {
		t.Fatalf("err %v, want unknown_kid", err)
	}
	if n := is.jwksFetches.Load(); n != 2 {
		t.Fatalf("%d fetches after an unknown kid, want 2 (one refetch)", n)
	}
	// A burst of unknown kids at once within the interval: no more fetches.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			tok := sign(t, "ec-2", "made-up-"+string(rune('a'+i%26)), jose.ES256, is.claims(aud))
			if _, err := v.Verify(context.Background(), tok); oidc.ReasonOf(err) != oidc.ReasonUnknownKid {
				t.Errorf("err %v, want unknown_kid", err)
			}
		})
	}
	wg.Wait()
	if n := is.jwksFetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a burst of unknown kids within the interval, want 2", n)
	}
}

// Keys rotate while the verifier runs: a new key verifies after one
// refetch, a removed key stops verifying, without a restart.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, "rsa-1", "ec-1")
	v := newVerifier(t, is, func(c *oidc.Config) {
		c.RefetchInterval = 50 * time.Millisecond
		c.KeysMaxAge = 200 * time.Millisecond
	})
	old := sign(t, "rsa-1", "", jose.RS256, is.claims(aud))
	if _, err := v.Verify(t.Context(), old); err != nil {
		t.Fatal(err)
	}

	// Added: rsa-2 published; its first token triggers one refetch.
	is.setKeys("rsa-1", "rsa-2", "ec-1")
	before := is.jwksFetches.Load()
	if _, err := v.Verify(t.Context(), sign(t, "rsa-2", "", jose.RS256, is.claims(aud))); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if n := is.jwksFetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches for the new key, want 1", n)
	}

	// Removed: rsa-1 withdrawn; refused once the keys are refreshed (at
	// most KeysMaxAge later).
	is.setKeys("rsa-2", "ec-1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(t.Context(), old)
		if oidc.ReasonOf(err) == oidc.ReasonUnknownKid {
			break
		}
		if err != nil {
			t.Fatalf("removed key: err %v, want unknown_kid", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a removed key still verifies after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := v.Verify(t.Context(), sign(t, "rsa-2", "", jose.RS256, is.claims(aud))); err != nil {
		t.Fatalf("kept key after the removal: %v", err)
	}
}

// An issuer that is down is not a bad token: ErrUnavailable, and the
// verifier recovers when the issuer does.
func TestIssuerUnavailable(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, "rsa-1")
	is.down.Store(true)
	v := newVerifier(t, is, nil)
	tok := sign(t, "rsa-1", "", jose.RS256, is.claims(aud))
	if err := v.Ready(t.Context()); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("Ready: %v, want ErrUnavailable", err)
	}
	_, err := v.Verify(t.Context(), tok)
	var temp interface{ Temporary() bool }
	if !errors.As(err, &temp) || !temp.Temporary() {
		t.Fatalf("Verify: %v is not Temporary: the orchestrator's admission would reject the run instead of retrying", err)
	}
	if !errors.Is(err, oidc.ErrUnavailable) || oidc.ReasonOf(err) != "" {
		t.Fatalf("Verify: %v, want ErrUnavailable and no reason", err)
	}
	assertNoTokenText(t, "error", err.Error(), tok)
	is.down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err = v.Verify(t.Context(), tok); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  oidc.Config
		want []string
	}{
		{"off", oidc.Config{}, nil},
		{"ok", oidc.Config{Issuer: "https://id.example.com", Audience: "spine", Skew: time.Minute}, nil},
		{"loopback http", oidc.Config{Issuer: "http://127.0.0.1:8080", Audience: "spine"}, nil},
		{"plain http", oidc.Config{Issuer: "http://id.example.com", Audience: "spine"}, []string{"SPINE_OIDC_ISSUER", "https"}},
		{"no audience", oidc.Config{Issuer: "https://id.example.com"}, []string{"SPINE_OIDC_AUDIENCE: required"}},
		{"audience alone", oidc.Config{Audience: "spine"}, []string{"without SPINE_OIDC_ISSUER"}},
		{"skew", oidc.Config{Issuer: "https://id.example.com", Audience: "spine", Skew: 2 * time.Minute}, []string{"SPINE_OIDC_SKEW"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Validate()
			got := errors.Join(errs...)
			if len(tt.want) == 0 && got != nil {
				t.Fatalf("invalid: %v", got)
			}
			for _, w := range tt.want {
				if got == nil || !strings.Contains(got.Error(), w) {
					t.Errorf("errors %v, want %q", got, w)
				}
			}
		})
	}
	if _, err := oidc.New(oidc.Config{}); err == nil {
		t.Error("New without an issuer succeeded")
	}
}
