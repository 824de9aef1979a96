package oidc

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and ceilings of Config.
const (
	// MaxSkew is the most clock skew Config.Skew may allow, and its default.
	MaxSkew = 60 * time.Second
	// DefaultMaxTokenBytes is Config.MaxTokenBytes's default.
	DefaultMaxTokenBytes = 8 << 10
	// DefaultRefetchInterval is Config.RefetchInterval's default.
	DefaultRefetchInterval = 10 * time.Second
	// DefaultKeysMaxAge is Config.KeysMaxAge's default.
	DefaultKeysMaxAge = 15 * time.Minute
	// DefaultFetchTimeout is Config.FetchTimeout's default.
	DefaultFetchTimeout = 5 * time.Second
	// maxJWKSBytes bounds a discovery document or JWKS read.
	maxJWKSBytes = 1 << 20
)

// Config is the verifier's settings, read from the environment by the
// composition root (go-envconfig tags). Verification is on when Issuer is
// set. Every field documents its variable and default.
type Config struct {
	// Issuer is SPINE_OIDC_ISSUER, the issuer URL exactly as tokens carry
	// it in iss (https; http only on a loopback host, for tests and local
	// issuers). Discovery reads Issuer + "/.well-known/openid-configuration".
	// Default: none, verification off.
	Issuer string `env:"SPINE_OIDC_ISSUER"`
	// Audience is SPINE_OIDC_AUDIENCE, the value a token's aud must
	// contain. Required with Issuer.
	Audience string `env:"SPINE_OIDC_AUDIENCE"`
	// Claims is SPINE_OIDC_CLAIMS, the claims copied into the provenance
	// (comma-separated, e.g. email,groups): a string as is, any other JSON
	// value as its compact JSON text; an absent claim is left out. Default:
	// none.
	Claims []string `env:"SPINE_OIDC_CLAIMS"`
	// Skew is SPINE_OIDC_SKEW, the clock skew allowed on exp, nbf and iat,
	// at most 60s; 0 means the default (for almost none, say 1s). Default
	// 60s.
	Skew time.Duration `env:"SPINE_OIDC_SKEW, default=60s"`
	// MaxTokenBytes is SPINE_OIDC_MAX_TOKEN_BYTES, the largest token
	// looked at; a larger one is too_large unread. Default 8192.
	MaxTokenBytes int `env:"SPINE_OIDC_MAX_TOKEN_BYTES, default=8192"`
	// RefetchInterval is SPINE_OIDC_JWKS_REFETCH_INTERVAL, the least time
	// between two fetches of the JWKS (an unknown kid triggers one).
	// Default 10s.
	RefetchInterval time.Duration `env:"SPINE_OIDC_JWKS_REFETCH_INTERVAL, default=10s"`
	// KeysMaxAge is SPINE_OIDC_JWKS_MAX_AGE, how long fetched keys are used
	// before they are fetched again (a removed key stops verifying after
	// at most this). Default 15m.
	KeysMaxAge time.Duration `env:"SPINE_OIDC_JWKS_MAX_AGE, default=15m"`
	// FetchTimeout is SPINE_OIDC_FETCH_TIMEOUT, the bound of one discovery
	// or JWKS fetch. Default 5s.
	FetchTimeout time.Duration `env:"SPINE_OIDC_FETCH_TIMEOUT, default=5s"`
	// HTTPClient fetches discovery and keys. Default: a client with
	// FetchTimeout as its timeout.
	HTTPClient *http.Client `env:",noinit"`
	// Logger receives key refreshes (info), fetch failures (warn) and
	// rejections by reason (debug); never a token. Default: discarded.
	Logger *slog.Logger `env:",noinit"`
	// Registerer, when set, registers spine_oidc_verifications_total
	// {result} and spine_oidc_jwks_fetches_total{outcome}. Default: none.
	Registerer prometheus.Registerer
}

// Enabled reports whether an issuer is configured.
func (c *Config) Enabled() bool { return c.Issuer != "" }

// Validate checks the settings, returning every problem, each naming its
// variable. An empty Issuer (verification off) is valid unless Audience or
// Claims are set without it.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		if c.Audience != "" {
			bad("SPINE_OIDC_AUDIENCE: set without SPINE_OIDC_ISSUER: which issuer's tokens should carry it?")
		}
	} else {
		if err := checkIssuer(c.Issuer); err != nil {
			bad("SPINE_OIDC_ISSUER: %v", err)
		}
		if strings.TrimSpace(c.Audience) == "" {
			bad("SPINE_OIDC_AUDIENCE: required with SPINE_OIDC_ISSUER: the aud value tokens for Spine carry (often the client id)")
		}
	}
	if c.Skew < 0 || c.Skew > MaxSkew {
		bad("SPINE_OIDC_SKEW: %s is not in 0..%s", c.Skew, MaxSkew)
	}
	if c.MaxTokenBytes < 0 || c.MaxTokenBytes > 64<<10 {
		bad("SPINE_OIDC_MAX_TOKEN_BYTES: %d is not in 0..65536 (0 means %d)", c.MaxTokenBytes, DefaultMaxTokenBytes)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_OIDC_JWKS_REFETCH_INTERVAL", c.RefetchInterval}, {"SPINE_OIDC_JWKS_MAX_AGE", c.KeysMaxAge}, {"SPINE_OIDC_FETCH_TIMEOUT", c.FetchTimeout}} {
		if d.d < 0 {
			bad("%s: %s must not be negative (0 means the default)", d.name, d.d)
		}
	}
	for _, cl := range c.Claims {
		if strings.TrimSpace(cl) == "" {
			bad("SPINE_OIDC_CLAIMS: an empty claim name")
			break
		}
	}
	return errs
}

// checkIssuer accepts an absolute https URL without query or fragment, or
// http on a loopback host.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q does not parse as a URL", s)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return fmt.Errorf("%q must not carry user info", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q must not have a query or a fragment", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: the scheme must be https (http only on a loopback host)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withDefaults returns c with every zero optional field at its default.
func (c Config) withDefaults() Config {
	if c.Skew == 0 {
		c.Skew = MaxSkew
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.RefetchInterval == 0 {
		c.RefetchInterval = DefaultRefetchInterval
	}
	if c.KeysMaxAge == 0 {
		c.KeysMaxAge = DefaultKeysMaxAge
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.FetchTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Issuer = strings.TrimSpace(c.Issuer)
	c.Audience = strings.TrimSpace(c.Audience)
	var claims []string
	for _, cl := range c.Claims {
		if cl = strings.TrimSpace(cl); cl != "" {
			claims = append(claims, cl)
		}
	}
	c.Claims = claims
	return c
}
