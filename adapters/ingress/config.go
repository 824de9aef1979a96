package ingress

import (
	"fmt"
	"net/http"
	"time"
)

// Config is the ingress's settings, read from the environment by the
// composition root. Every field documents its variable and default; a zero
// field of a Config built in code takes its default.
type Config struct {
	// MaxBodyBytes is SPINE_INGRESS_MAX_BODY_BYTES, the largest request
	// body read; a larger one is 413. Default 1114112 (1 MiB of input
	// plus 64 KiB of envelope).
	MaxBodyBytes int64 `env:"SPINE_INGRESS_MAX_BODY_BYTES, default=1114112"`
	// Rate is SPINE_INGRESS_RATE, the requests per second one caller (a
	// verified subject, or a remote address without verification) may
	// sustain; more are 429. 0 means no limit. Default 50.
	Rate float64 `env:"SPINE_INGRESS_RATE, default=50"`
	// Burst is SPINE_INGRESS_BURST, the requests one caller may send at
	// once above Rate. Default 100.
	Burst int `env:"SPINE_INGRESS_BURST, default=100"`
	// IdempotencyTTL is SPINE_INGRESS_IDEMPOTENCY_TTL, how long an
	// Idempotency-Key's answer is kept. Default 24h.
	IdempotencyTTL time.Duration `env:"SPINE_INGRESS_IDEMPOTENCY_TTL, default=24h"`
	// IdempotencyKeys is SPINE_INGRESS_IDEMPOTENCY_KEYS, the most keys
	// kept (the oldest go first). Default 100000.
	IdempotencyKeys int `env:"SPINE_INGRESS_IDEMPOTENCY_KEYS, default=100000"`
	// ReadTimeout is SPINE_INGRESS_READ_TIMEOUT, how long the body may
	// take to arrive; a slower client is cut off (408). Default 10s.
	ReadTimeout time.Duration `env:"SPINE_INGRESS_READ_TIMEOUT, default=10s"`
	// WriteTimeout is SPINE_INGRESS_WRITE_TIMEOUT, how long a request may
	// take from its start to the end of its answer, the produce included.
	// Default 20s.
	WriteTimeout time.Duration `env:"SPINE_INGRESS_WRITE_TIMEOUT, default=20s"`
	// ProduceTimeout is SPINE_INGRESS_PRODUCE_TIMEOUT, how long Kafka may
	// take to acknowledge the record; then 503. Default 10s.
	ProduceTimeout time.Duration `env:"SPINE_INGRESS_PRODUCE_TIMEOUT, default=10s"`
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes    = 1<<20 + 64<<10
	DefaultRate            = 50
	DefaultBurst           = 100
	DefaultIdempotencyTTL  = 24 * time.Hour
	DefaultIdempotencyKeys = 100000
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 20 * time.Second
	DefaultProduceTimeout  = 10 * time.Second
)

// Validate checks the settings, returning every problem.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > 64<<20 {
		bad("SPINE_INGRESS_MAX_BODY_BYTES: %d is not in 0..%d", c.MaxBodyBytes, 64<<20)
	}
	if c.Rate < 0 {
		bad("SPINE_INGRESS_RATE: %v must not be negative (0: no limit)", c.Rate)
	}
	if c.Burst < 0 {
		bad("SPINE_INGRESS_BURST: %d must not be negative", c.Burst)
	}
	if c.IdempotencyKeys < 0 {
		bad("SPINE_INGRESS_IDEMPOTENCY_KEYS: %d must not be negative", c.IdempotencyKeys)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"SPINE_INGRESS_IDEMPOTENCY_TTL", c.IdempotencyTTL}, {"SPINE_INGRESS_READ_TIMEOUT", c.ReadTimeout},
		{"SPINE_INGRESS_WRITE_TIMEOUT", c.WriteTimeout}, {"SPINE_INGRESS_PRODUCE_TIMEOUT", c.ProduceTimeout}} {
		if d.d < 0 {
			bad("%s: %s must not be negative", d.name, d.d)
		}
	}
	if c.WriteTimeout > 0 && c.ProduceTimeout > 0 && c.WriteTimeout <= c.ProduceTimeout {
		bad("SPINE_INGRESS_WRITE_TIMEOUT: %s must exceed SPINE_INGRESS_PRODUCE_TIMEOUT %s, or a produce Kafka acknowledged could go unanswered", c.WriteTimeout, c.ProduceTimeout)
	}
	return errs
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.IdempotencyKeys == 0 {
		c.IdempotencyKeys = DefaultIdempotencyKeys
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = DefaultProduceTimeout
	}
	return c
}

// ServerTimeouts sets the timeouts the http.Server serving the ingress
// should have: ReadHeaderTimeout 10s (a client trickling its headers) and
// IdleTimeout 2m, when they are unset. The server's ReadTimeout and
// WriteTimeout (pipeline.HTTPServer: 30 s and 90 s by default) bound every
// request, the long poll GET /v1/runs/{id}?wait=60s included; the ingress
// sets its own, tighter per-request deadlines (Config.ReadTimeout and
// Config.WriteTimeout) on the connection.
func ServerTimeouts(s *http.Server) {
	if s.ReadHeaderTimeout == 0 {
		s.ReadHeaderTimeout = 10 * time.Second
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 2 * time.Minute
	}
}
