package pipeline

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// outsideIP is an address of this machine that is not loopback: a listener
// on 127.0.0.1 must refuse connections to it. Machines without one (a
// sandbox with lo only) cannot show the difference.
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

// refused reports whether dialing addr is refused (nothing listens there).
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// The embedded broker binds the loopback interface unless told otherwise;
// with Host 0.0.0.0 it is reachable on the machine's other addresses and
// advertises the host clients should dial.
func TestEmbeddedBindHost(t *testing.T) {
	t.Parallel()
	ip := outsideIP(t)

	e := NewEmbedded(EmbeddedConfig{})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	host, port, _ := net.SplitHostPort(e.Addrs()[0])
	if host != "127.0.0.1" {
		t.Fatalf("default broker address %s, want 127.0.0.1", e.Addrs()[0])
	}
	if !refused(net.JoinHostPort(ip, port)) {
		t.Fatalf("the default embedded broker answers on %s: it must listen on loopback only", ip)
	}

	all := NewEmbedded(EmbeddedConfig{Host: "0.0.0.0", AdvertisedHost: ip})
	if err := all.Start(); err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	if h, _, _ := net.SplitHostPort(all.Addrs()[0]); h != ip {
		t.Fatalf("broker on 0.0.0.0 advertises %s, want %s", all.Addrs()[0], ip)
	}
	// A client seeded with the outside address follows the advertised one
	// for its requests: a topic round trip proves both.
	cl, err := kgo.NewClient(kgo.SeedBrokers(all.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "bind-test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "bind-test", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce through %s: %v", ip, err)
	}
}

func TestConfigListenAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bind, addr, want string }{
		{"127.0.0.1", ":8080", "127.0.0.1:8080"},
		{"0.0.0.0", ":8080", "0.0.0.0:8080"},
		{"::1", ":8081", "[::1]:8081"},
		{"127.0.0.1", "0.0.0.0:8080", "0.0.0.0:8080"},
		{"127.0.0.1", "10.1.2.3:9000", "10.1.2.3:9000"},
	} {
		c := Config{BindHost: tc.bind}
		if got := c.ListenAddr(tc.addr); got != tc.want {
			t.Errorf("BindHost %s, addr %s: %s, want %s", tc.bind, tc.addr, got, tc.want)
		}
	}
}

// An HTTP server made by Config.HTTPServer from ":0" listens on loopback
// only by default, on every interface with SPINE_BIND_HOST=0.0.0.0, and
// carries the timeouts.
func TestHTTPServerBindHost(t *testing.T) {
	t.Parallel()
	ip := outsideIP(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		bind    string
		outside bool
	}{{"127.0.0.1", false}, {"0.0.0.0", true}} {
		c := Config{BindHost: tc.bind, ShutdownTimeout: time.Second}
		srv := c.HTTPServer("test", ":0", ok, nil)
		if err := srv.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		_, port, _ := net.SplitHostPort(srv.BoundAddr())
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatalf("bind %s: loopback: %v", tc.bind, err)
		}
		resp.Body.Close()
		if got := !refused(net.JoinHostPort(ip, port)); got != tc.outside {
			t.Errorf("bind %s: reachable on %s = %v, want %v", tc.bind, ip, got, tc.outside)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
