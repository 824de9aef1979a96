package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/schemas/registry"
)

// testHTTPClient is a client for the stack's HTTP servers: it trusts the
// CA of SCHEMA_REGISTRY_CA_FILE when the stack serves https.
func testHTTPClient(t *testing.T, cfg *stack.Config) *http.Client {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	if cfg.RegistryCAFile == "" {
		return hc
	}
	pem, err := os.ReadFile(cfg.RegistryCAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc
}

// outsideIP is an IPv4 address of this machine that is not loopback.
func outsideIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to dial")
	return ""
}

// answers reports whether something accepts connections on addr.
func answers(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return true
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v (neither accepted nor refused)", addr, err)
	}
	return false
}

// `spine up` binds every listener — the broker, the registry, the API with
// /metrics — to 127.0.0.1 when their addresses name no host, and to every
// interface only when SPINE_BIND_HOST says so.
func TestUpBindsLoopbackByDefault(t *testing.T) {
	t.Parallel()
	ip := outsideIP(t)
	for _, tc := range []struct {
		bind    string
		outside bool
	}{{"", false}, {"0.0.0.0", true}} {
		kafka, registry, api := testPort(t), testPort(t), testPort(t)
		env := map[string]string{
			"SPINE_DATA_DIR":      t.TempDir(),
			"SPINE_KAFKA_PORT":    fmt.Sprint(kafka),
			"SPINE_REGISTRY_ADDR": fmt.Sprintf(":%d", registry),
			"SPINE_HTTP_ADDR":     fmt.Sprintf(":%d", api),
			"SPINE_PARTITIONS":    "1",
		}
		if tc.bind != "" {
			env["SPINE_BIND_HOST"] = tc.bind
			env["SPINE_KAFKA_ADVERTISED_HOST"] = ip
		}
		cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(env))
		if err != nil {
			t.Fatal(err)
		}
		stop := upOnce(t, cfg)
		for name, port := range map[string]int{"kafka": kafka, "registry": registry, "api": api} {
			if !answers(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))) && !tc.outside {
				t.Errorf("bind %q: %s does not answer on 127.0.0.1:%d", tc.bind, name, port)
			}
			if got := answers(t, net.JoinHostPort(ip, strconv.Itoa(port))); got != tc.outside {
				t.Errorf("bind %q: %s answers on %s:%d = %v, want %v", tc.bind, name, ip, port, got, tc.outside)
			}
		}
		stop()
	}
}

// With SPINE_TLS_CERT/KEY and an OIDC issuer, `spine up` serves its API
// and registry over https only, every write needs a bearer token the
// issuer signed (intents, schema registration), reads stay open, the
// registry client reaches the https registry with SCHEMA_REGISTRY_CA_FILE
// and SCHEMA_REGISTRY_BEARER_TOKEN, and a request that stalls is cut off
// by SPINE_HTTP_READ_TIMEOUT.
func TestUpTLSAndBearerWrites(t *testing.T) {
	t.Parallel()
	certs := spinetest.NewCerts(t)
	is := spinetest.NewIssuer(t)
	const aud = "spine-test"
	registryPort, apiPort := testPort(t), testPort(t)
	env := map[string]string{
		"SPINE_DATA_DIR":          t.TempDir(),
		"SPINE_KAFKA_PORT":        fmt.Sprint(testPort(t)),
		"SPINE_REGISTRY_ADDR":     fmt.Sprintf(":%d", registryPort),
		"SPINE_HTTP_ADDR":         fmt.Sprintf(":%d", apiPort),
		"SPINE_PARTITIONS":        "1",
		"SPINE_TLS_CERT":          certs.CertFile,
		"SPINE_TLS_KEY":           certs.KeyFile,
		"SCHEMA_REGISTRY_CA_FILE": certs.CAFile,
		"SPINE_OIDC_ISSUER":       is.URL,
		"SPINE_OIDC_AUDIENCE":     aud,
		"SPINE_HTTP_READ_TIMEOUT": "1s",
	}
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	upOnce(t, cfg)
	hc := testHTTPClient(t, cfg)
	api := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	reg := fmt.Sprintf("https://127.0.0.1:%d", registryPort)
	good := is.Token(t, "ops", aud, time.Hour)
	bad := map[string]string{
		"none":         "",
		"expired":      is.Token(t, "ops", aud, -time.Hour),
		"wrong_aud":    is.Token(t, "ops", "someone-else", time.Hour),
		"not_a_token":  "abc.def.ghi",
		"other_issuer": spinetest.NewIssuer(t).Token(t, "ops", aud, time.Hour),
	}
	do := func(method, url, token, ctype, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// Plain http on the https ports is refused.
	for _, port := range []int{apiPort, registryPort} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("port %d answers plain http with 200", port)
			}
		}
	}

	// Every write: refused without a good token, accepted with one.
	schema := `{"schema":"{\"type\":\"record\",\"name\":\"Sec\",\"fields\":[{\"name\":\"id\",\"type\":\"string\"}]}"}`
	intent := `{"kind":"summarize","input":"secure"}`
	writes := []struct {
		name, method, url, ctype, body string
		ok                             int
	}{
		{"intent", "POST", api + "/v1/intents", "application/json", intent, http.StatusAccepted},
		{"schema registration", "POST", reg + "/subjects/sec-value/versions", registry.ContentType, schema, http.StatusOK},
		{"compatibility level", "PUT", reg + "/config/sec-value", registry.ContentType, `{"compatibility":"FULL"}`, http.StatusOK},
		{"subject deletion", "DELETE", reg + "/subjects/sec-other-value", "", "", http.StatusNotFound},
	}
	for _, w := range writes {
		for why, tok := range bad {
			if code := do(w.method, w.url, tok, w.ctype, w.body); code != http.StatusUnauthorized {
				t.Errorf("%s with token %s: %d, want 401", w.name, why, code)
			}
		}
		if code := do(w.method, w.url, good, w.ctype, w.body); code != w.ok {
			t.Errorf("%s with a good token: %d, want %d", w.name, code, w.ok)
		}
	}
	// Reads, and the registry's POSTs that only read, need no token.
	for _, r := range []struct{ method, url, ctype, body string }{
		{"GET", api + "/v1/stats/golden-path", "", ""},
		{"GET", reg + "/subjects", "", ""},
		{"POST", reg + "/subjects/sec-value", registry.ContentType, schema},
		{"POST", reg + "/compatibility/subjects/sec-value/versions/latest", registry.ContentType, schema},
	} {
		if code := do(r.method, r.url, "", r.ctype, r.body); code != http.StatusOK {
			t.Errorf("%s %s without a token: %d, want 200", r.method, r.url, code)
		}
	}

	// The registry client: https with the CA file, a bearer token for writes.
	ccfg := *cfg
	ccfg.RegistryBearerToken = good
	cl, err := stack.RegistryClient(&ccfg.Config, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateSchema(t.Context(), "sec-client-value", sr.Schema{Schema: `{"type":"record","name":"C","fields":[]}`}); err != nil {
		t.Fatalf("registry client with CA and bearer token: %v", err)
	}
	ccfg.RegistryBearerToken = ""
	if cl, err = stack.RegistryClient(&ccfg.Config, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateSchema(t.Context(), "sec-client2-value", sr.Schema{Schema: `{"type":"record","name":"C","fields":[]}`}); err == nil {
		t.Fatal("registry client without a token registered a schema")
	}

	// A request whose body stalls is cut off after SPINE_HTTP_READ_TIMEOUT
	// (the ingress sets its own, SPINE_INGRESS_READ_TIMEOUT; the registry
	// has the server's).
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", registryPort), certs.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /subjects/slow-value/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{", good)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a stalled request got no answer: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); took > 5*time.Second || resp.StatusCode == http.StatusOK {
		t.Fatalf("a stalled request was answered %d after %s, want an error after about SPINE_HTTP_READ_TIMEOUT (1s)", resp.StatusCode, took)
	}
}
