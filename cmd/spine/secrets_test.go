package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// lockedBuffer is a log sink the stack's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// The stack runs with known secrets — the Kafka SASL password, an OpenAI
// API key, the bearer tokens of the callers and of the registry client —
// and a model server that, like OpenAI, echoes the key in its 401 answer.
// Everything the stack wrote — its debug log, the errors it answered, its
// /metrics and every GET endpoint, every record (key, value, headers) of
// every topic — holds none of them, raw or in base64.
func TestSecretsAppearNowhere(t *testing.T) { // not parallel: the API key is in the process environment
	sec := kafkatest.Secure(t)
	is := spinetest.NewIssuer(t)
	const aud = "spine-secrets"
	apiKey := "sk-test-" + kafkatest.Password(t)
	callerToken := is.Token(t, "caller", aud, time.Hour)
	registryToken := is.Token(t, "registry-client", aud, time.Hour)

	// An OpenAI-wire model: it checks the key, and answers an input that
	// asks for it with a 401 that quotes the key, as OpenAI's does.
	var keyed atomic.Int64
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		last := ""
		if n := len(req.Messages); n > 0 {
			last = req.Messages[n-1].Content
		}
		if got != apiKey || strings.Contains(last, "refuse") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s. You can find your API key at https://example.com.","type":"invalid_request_error","code":"invalid_api_key"}}`, got)
			return
		}
		keyed.Add(1)
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok: %d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`, len(last))
	}))
	t.Cleanup(model.Close)
	agents := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(agents, []byte(fmt.Sprintf("agents:\n  - kind: summarize\n    executor: openai\n    base_url: %s/v1\n    model: m\n    api_key_env: SECRETS_TEST_OPENAI_KEY\n", model.URL)), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SECRETS_TEST_OPENAI_KEY", apiKey)
	prefix := kafkatest.Prefix(t)
	apiPort := testPort(t)
	cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{
		"KAFKA_BROKERS":                strings.Join(sec.Brokers, ","),
		"KAFKA_SASL_MECHANISM":         "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME":          sec.Admin,
		"KAFKA_SASL_PASSWORD":          sec.AdminPassword,
		"KAFKA_TLS_CA_FILE":            sec.CAFile,
		"SPINE_TOPIC_PREFIX":           prefix,
		"SPINE_PARTITIONS":             "2",
		"SPINE_DATA_DIR":               t.TempDir(),
		"SPINE_REGISTRY_ADDR":          fmt.Sprintf(":%d", testPort(t)),
		"SPINE_HTTP_ADDR":              fmt.Sprintf(":%d", apiPort),
		"SPINE_AGENTS":                 agents,
		"SECRETS_TEST_OPENAI_KEY":      apiKey,
		"SPINE_OIDC_ISSUER":            is.URL,
		"SPINE_OIDC_AUDIENCE":          aud,
		"SCHEMA_REGISTRY_BEARER_TOKEN": registryToken,
		"SPINE_LOG_LEVEL":              "debug",
		"SPINE_SHUTDOWN_TIMEOUT":       "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runUp(ctx, &app{stdout: io.Discard, stderr: io.Discard, cfg: cfg, log: log}, cfg) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("spine up did not stop within 30s")
		}
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	var written bytes.Buffer // every answer the stack gave
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, api+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(&written, "%s %s -> %d %v\n%s\n", method, path, resp.StatusCode, resp.Header, b)
		return resp.StatusCode, b
	}
	spinetest.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("spine up exited: %v\n%s", err, logs.Bytes())
		default:
		}
		if code, _ := call("GET", "/healthz", "", ""); code != http.StatusOK {
			return fmt.Errorf("healthz %d", code)
		}
		return nil
	})

	// Runs that pass, runs the model refuses quoting the key, and callers
	// with a token that fails (an expired one, the registry's audience).
	var traces []string
	for i, input := range []string{"summarize this", "please refuse", "summarize that", "refuse again"} {
		code, b := call("POST", "/v1/intents", callerToken, fmt.Sprintf(`{"kind":"summarize","input":%q}`, input))
		if code != http.StatusAccepted {
			t.Fatalf("intent %d: %d %s", i, code, b)
		}
		var r struct {
			TraceID string `json:"trace_id"`
		}
		_ = json.Unmarshal(b, &r)
		traces = append(traces, r.TraceID)
	}
	call("POST", "/v1/intents", is.Token(t, "caller", aud, -time.Hour), `{"kind":"summarize","input":"late"}`)
	call("POST", "/v1/intents", callerToken+"x", `{"kind":"summarize","input":"forged"}`)
	outcomes := map[string]int{}
	for _, tr := range traces {
		code, b := call("GET", "/v1/runs/"+tr+"?wait=30s", "", "")
		var run struct{ Outcome string }
		if _ = json.Unmarshal(b, &run); code != http.StatusOK || run.Outcome == "" {
			t.Fatalf("run %s not over: %d %s", tr, code, b)
		}
		outcomes[run.Outcome]++
	}
	if keyed.Load() == 0 || outcomes["completed"] != 2 || len(outcomes) < 2 {
		t.Fatalf("outcomes %v, %d calls with the key: want 2 completed runs and 2 refused by the model", outcomes, keyed.Load())
	}
	for _, p := range []string{"/metrics", "/v1/stats/golden-path", "/v1/gates", "/v1/canary", "/v1/projections/status", "/v1/stack", "/v1/agents", "/v1/flags", "/"} {
		call("GET", p, "", "")
	}

	// Every record of every topic, keys, values and headers, as the admin.
	var records bytes.Buffer
	adm := kadm.NewClient(sec.AdminClient(t))
	tds, err := adm.ListTopics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(t.Context(), tds.Names()...)
	if err != nil {
		t.Fatal(err)
	}
	// A partition is read to its end when its last record is at least the
	// one before the end offset: a transaction's commit marker, which is
	// not a record, can follow it.
	want := map[string]map[int32]kgo.Offset{}
	left := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]kgo.Offset{}
			}
			want[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
			left[fmt.Sprint(o.Topic, "/", o.Partition)] = o.Offset - 2
		}
	})
	cl := kafkatest.Client(t, sec.Brokers, append(sec.Opts(sec.Admin, sec.AdminPassword), kgo.ConsumePartitions(want),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()))...)
	var n int64
	rctx, rcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer rcancel()
	for len(left) > 0 && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			n++
			records.Write(r.Key)
			records.Write(r.Value)
			for _, h := range r.Headers {
				records.WriteString(h.Key)
				records.Write(h.Value)
			}
			k := fmt.Sprint(r.Topic, "/", r.Partition)
			if last, ok := left[k]; ok && r.Offset >= last {
				delete(left, k)
			}
		})
	}
	cancel()
	<-done
	done <- nil // the deferred stop finds it stopped

	secrets := map[string]string{
		"KAFKA_SASL_PASSWORD":          sec.AdminPassword,
		"OpenAI API key":               apiKey,
		"caller's bearer token":        callerToken,
		"SCHEMA_REGISTRY_BEARER_TOKEN": registryToken,
	}
	written.Write(logs.Bytes())
	haystacks := map[string][]byte{"log": logs.Bytes(), "HTTP answers": written.Bytes(), "topics": records.Bytes()}
	for name, s := range secrets {
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s))} {
			for where, b := range haystacks {
				if i := bytes.Index(b, []byte(form)); i >= 0 {
					lo, hi := max(0, i-120), min(len(b), i+len(form)+40)
					t.Errorf("the %s appears in the %s: …%q…", name, where, b[lo:hi])
				}
			}
		}
	}
	t.Logf("searched %d bytes of log, %d bytes of HTTP answers and %d records (%d bytes) of %d topics for %d secrets",
		len(logs.Bytes()), written.Len(), n, records.Len(), len(want), len(secrets))
	// The model's answer that quoted the key reached the thread (scrubbed):
	// the path a leak would take was taken.
	if !bytes.Contains(records.Bytes(), []byte("Incorrect API key provided")) {
		t.Error("the model's 401 message is on no topic: the echo of the key was never exercised")
	}
	if len(left) > 0 || len(logs.Bytes()) == 0 {
		t.Fatalf("partitions not read to their end: %v; %d bytes of log: not everything was searched", left, len(logs.Bytes()))
	}
}
