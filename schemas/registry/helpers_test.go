package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas/registry"
)

// instance is one running registry served over a loopback HTTP server.
type instance struct {
	reg  *registry.Registry
	url  string
	sr   *sr.Client
	stop func() // stops the registry early (idempotent)
}

// backend is a Kafka cluster and a topic for one test's registries.
type backend struct {
	brokers []string
	prefix  string
}

func newBackend(t testing.TB) backend {
	t.Helper()
	return backend{brokers: kafkatest.Brokers(t), prefix: kafkatest.Prefix(t)}
}

// start runs a registry on the backend's topic until the test ends.
func (b backend) start(t testing.TB, opts ...registry.Opt) *instance {
	t.Helper()
	opts = append([]registry.Opt{
		registry.WithKafka(kgo.SeedBrokers(b.brokers...)),
		registry.WithTopic(b.prefix + "_schemas"),
		registry.WithTransactionalID(b.prefix + "schema-registry"),
	}, opts...)
	r, err := registry.New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = r.Run(ctx); close(done) }()
	srv := httptest.NewServer(r.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Close()
			cancel()
			select {
			case <-done:
				if runErr != nil {
					t.Errorf("Run: %v", runErr)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-r.Ready():
	case <-done:
		t.Fatalf("Run ended before ready: %v", runErr)
	case <-time.After(30 * time.Second):
		t.Fatalf("registry not ready after 30s")
	}
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return &instance{reg: r, url: srv.URL, sr: cl, stop: stop}
}

// call sends a raw request and returns the status, the error_code (0 when
// the body is not an error) and the body.
func call(t testing.TB, method, url, body string) (int, int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", registry.ContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != registry.ContentType {
		t.Errorf("%s %s: Content-Type %q, want %q", method, url, ct, registry.ContentType)
	}
	var e struct {
		Code int `json:"error_code"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code, b
}

// srCode returns the registry error code of an sr client error, or 0.
func srCode(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}

func schemaJSON(s string) string {
	b, _ := json.Marshal(map[string]string{"schema": s})
	return string(b)
}
