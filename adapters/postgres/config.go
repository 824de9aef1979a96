package postgres

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Config is the sink's settings, read from the environment by the
// composition root. The sink is off while URL is empty.
type Config struct {
	// URL is SPINE_PG_URL, the database to write to: a postgres:// URL or
	// a key=value DSN. It is a secret (it may carry a password): it is
	// never printed or logged. Empty (the default): no sink.
	URL Secret `env:"SPINE_PG_URL"`
	// Schema is SPINE_PG_SCHEMA, the schema the sink creates and migrates
	// its tables in. Default spine.
	Schema string `env:"SPINE_PG_SCHEMA, default=spine"`
	// MaxArtifactBytes is SPINE_PG_MAX_ARTIFACT_BYTES: an artifact up to
	// this size is stored with its content; a larger one with its id, type
	// and size only (content NULL). 0 stores no content. Default 65536.
	MaxArtifactBytes int `env:"SPINE_PG_MAX_ARTIFACT_BYTES, default=65536"`
	// BatchRecords is SPINE_PG_BATCH_RECORDS, the most records written in
	// one database transaction. Default 5000.
	BatchRecords int `env:"SPINE_PG_BATCH_RECORDS, default=5000"`
}

// Enabled reports whether a database is configured.
func (c *Config) Enabled() bool { return c.URL != "" }

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate checks the settings, returning every problem. It does no I/O
// and never quotes the URL.
func (c *Config) Validate() []error {
	var errs []error
	if c.URL != "" {
		if _, err := pgx.ParseConfig(string(c.URL)); err != nil {
			errs = append(errs, fmt.Errorf("SPINE_PG_URL: cannot be parsed (want postgres://user:password@host:port/db or a key=value DSN)"))
		}
	}
	if !schemaName.MatchString(c.Schema) {
		errs = append(errs, fmt.Errorf("SPINE_PG_SCHEMA: %q must be a lower-case identifier (letters, digits, _)", c.Schema))
	}
	if c.MaxArtifactBytes < 0 {
		errs = append(errs, fmt.Errorf("SPINE_PG_MAX_ARTIFACT_BYTES: %d must not be negative", c.MaxArtifactBytes))
	}
	if c.BatchRecords < 1 {
		errs = append(errs, fmt.Errorf("SPINE_PG_BATCH_RECORDS: %d must be at least 1", c.BatchRecords))
	}
	return errs
}

// Secret is a connection string that never prints: String and LogValue
// show it with its password (and any password parameter) hidden.
type Secret string

// String returns the connection string with its password hidden.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	if u, err := url.Parse(string(s)); err == nil && u.Scheme != "" && u.Host != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.Redacted()
	}
	return "[redacted DSN]"
}

// GoString hides the password under %#v too.
func (s Secret) GoString() string { return fmt.Sprintf("postgres.Secret(%q)", s.String()) }

// LogValue hides the password in logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
