package ingress_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinerun/spine/adapters/ingress"
)

// BenchmarkIngress measures intents per second through HTTP into Kafka
// (kfake, or KAFKA_BROKERS), each acknowledged before its 202: "verified"
// with a bearer token verified per request (RS256, cached keys), "anonymous"
// without; the difference per request is the cost of verification.
func BenchmarkIngress(b *testing.B) {
	e := newEnv(b)
	tok := "Bearer " + e.issuer.token(b, "bench", time.Hour)
	for _, bc := range []struct {
		name string
		opts []ingress.Option
		auth string
	}{
		{"verified", []ingress.Option{ingress.WithVerifier(e.verifier(b))}, tok},
		{"anonymous", nil, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := e.server(b, ingress.Config{Rate: 0}, bc.opts...)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			body := `{"kind":"summarize","input":"benchmark intent: summarize the quarterly report"}`
			var failed atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+ingress.Path, strings.NewReader(body))
					req.Header.Set("Content-Type", jsonCT)
					if bc.auth != "" {
						req.Header.Set("Authorization", bc.auth)
					}
					resp, err := c.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						failed.Add(1)
					}
				}
			})
			el := time.Since(start)
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d requests failed", n, b.N)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "intents/s")
		})
	}
}

// BenchmarkVerify is the verification alone (RS256, cached keys).
func BenchmarkVerify(b *testing.B) {
	e := &env{issuer: newIssuer(b), logs: &syncBuffer{}}
	v := e.verifier(b)
	tok := e.issuer.token(b, "bench", time.Hour)
	if _, err := v.Verify(b.Context(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
