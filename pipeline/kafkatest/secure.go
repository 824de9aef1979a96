package kafkatest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
)

// SecureCluster is a cluster reached over SASL_SSL: TLS, SCRAM-SHA-512
// authentication and an authorizer that refuses what no ACL allows. An
// admin (a superuser) creates users, topics and ACLs.
type SecureCluster struct {
	Brokers []string
	// CAFile is the PEM file of the CA the brokers' certificate chains to.
	CAFile string
	// Admin and AdminPassword are the superuser's credentials.
	Admin, AdminPassword string

	pool *x509.CertPool
}

// SecureExternal reports whether KAFKA_SASL_SSL_BROKERS names a real
// broker's SASL_SSL listener (deploy/kafka/start.sh with
// KAFKA_SASL_SSL_PORT).
func SecureExternal() bool { return strings.TrimSpace(os.Getenv("KAFKA_SASL_SSL_BROKERS")) != "" }

// Secure returns a SASL_SSL cluster for a test: with KAFKA_SASL_SSL_BROKERS
// set, that listener (its CA in KAFKA_SASL_SSL_CA_FILE, the superuser in
// KAFKA_SASL_SSL_ADMIN and KAFKA_SASL_SSL_ADMIN_PASSWORD), shared by every
// test (isolate with Prefix); otherwise a new kfake cluster with a
// certificate of a CA made for this test, SASL and ACLs on, closed with
// the test.
func Secure(t testing.TB) *SecureCluster {
	t.Helper()
	if SecureExternal() {
		s := &SecureCluster{
			CAFile:        os.Getenv("KAFKA_SASL_SSL_CA_FILE"),
			Admin:         os.Getenv("KAFKA_SASL_SSL_ADMIN"),
			AdminPassword: os.Getenv("KAFKA_SASL_SSL_ADMIN_PASSWORD"),
		}
		for _, b := range strings.Split(os.Getenv("KAFKA_SASL_SSL_BROKERS"), ",") {
			if b = strings.TrimSpace(b); b != "" {
				s.Brokers = append(s.Brokers, b)
			}
		}
		if s.Admin == "" {
			s.Admin = "admin"
		}
		if s.CAFile == "" || s.AdminPassword == "" {
			t.Fatal("KAFKA_SASL_SSL_BROKERS needs KAFKA_SASL_SSL_CA_FILE and KAFKA_SASL_SSL_ADMIN_PASSWORD")
		}
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		s.pool = x509.NewCertPool()
		if !s.pool.AppendCertsFromPEM(pem) {
			t.Fatalf("KAFKA_SASL_SSL_CA_FILE %s holds no certificate", s.CAFile)
		}
		return s
	}
	certs := spinetest.NewCerts(t)
	s := &SecureCluster{CAFile: certs.CAFile, Admin: "admin", AdminPassword: Password(t), pool: certs.Pool}
	e := pipeline.NewEmbedded(pipeline.EmbeddedConfig{
		CleanerIntervalMs: 1000,
		TLS:               certs.Server,
		SASL:              &pipeline.EmbeddedSASL{Mechanism: "SCRAM-SHA-512", Superuser: s.Admin, SuperPassword: s.AdminPassword, ACLs: true},
	})
	if err := e.Start(); err != nil {
		t.Fatalf("start kfake with SASL_SSL: %v", err)
	}
	t.Cleanup(e.Close)
	s.Brokers = e.Addrs()
	return s
}

// Password returns a random password.
func Password(t testing.TB) string {
	t.Helper()
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// Opts are client options for user over SASL_SSL.
func (s *SecureCluster) Opts(user, pass string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(s.Brokers...),
		kgo.DialTLSConfig(&tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()),
	}
}

// AdminClient is a client of the superuser, closed with the test.
func (s *SecureCluster) AdminClient(t testing.TB) *kgo.Client {
	t.Helper()
	return Client(t, s.Brokers, s.Opts(s.Admin, s.AdminPassword)...)
}

// AddUsers creates SCRAM-SHA-512 users with random passwords through the
// admin and returns the passwords by user. On a shared broker give names
// a test's own prefix.
func (s *SecureCluster) AddUsers(t testing.TB, users ...string) map[string]string {
	t.Helper()
	pass := map[string]string{}
	var ups []kadm.UpsertSCRAM
	for _, u := range users {
		pass[u] = Password(t)
		ups = append(ups, kadm.UpsertSCRAM{User: u, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pass[u]})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := kadm.NewClient(s.AdminClient(t)).AlterUserSCRAMs(ctx, nil, ups)
	if err != nil {
		t.Fatalf("create SCRAM users: %v", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("create SCRAM user %s: %v", r.User, r.Err)
		}
	}
	return pass
}
