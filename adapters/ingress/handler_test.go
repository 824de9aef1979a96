package ingress_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

const jsonCT = "application/json"
const ceCT = "application/cloudevents+json"

// Every kind of bad request gets its status and a JSON error with its
// code, and nothing of it reaches Kafka; good requests produce exactly one
// record each, carrying the verified provenance and never the token.
func TestIngress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	srv := e.server(t, ingress.Config{}, ingress.WithVerifier(e.verifier(t)), ingress.WithMaxInputBytes(64<<10), ingress.WithRegisterer(reg))
	c := srv.Client()
	tok := e.issuer.token(t, "alice", 5*time.Minute)
	bearer := "Bearer " + tok
	good := `{"kind":"summarize","input":"hello"}`

	// Used once first, so that reusing it with another body is a conflict.
	if resp, body := post(t, c, srv.URL, jsonCT, good, "Authorization", bearer, "Idempotency-Key", "k-1"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("first use of k-1: %d %s", resp.StatusCode, body)
	}

	bad := []badRequest{
		{name: "oversize body", body: `{"kind":"summarize","input":"` + strings.Repeat("a", ingress.DefaultMaxBodyBytes) + `"}`, status: 413, code: "body_too_large"},
		{name: "input over the orchestrator's limit", body: `{"kind":"summarize","input":"` + strings.Repeat("a", 65<<10) + `"}`, status: 413, code: "input_too_large", field: "input"},
		{name: "invalid JSON", body: `{"kind":"summarize",`, status: 400, code: "invalid_json"},
		{name: "trailing garbage", body: good + `{}`, status: 400, code: "invalid_json"},
		{name: "wrong types, all named", body: `{"kind":5,"input":true,"priority":"high","attributes":[1],"actor":{}}`, status: 400, code: "wrong_type", field: "kind", fields: 5},
		{name: "unknown kind", body: `{"kind":"launch_missiles","input":"x"}`, status: 422, code: "unknown_kind", field: "kind"},
		{name: "missing input", body: `{"kind":"summarize"}`, status: 400, code: "missing_field", field: "input"},
		{name: "missing kind", body: `{"input":"x"}`, status: 400, code: "missing_field", field: "kind"},
		{name: "missing both", body: `{}`, status: 400, code: "missing_field", field: "kind", fields: 2},
		{name: "invalid UTF-8", body: "{\"kind\":\"summarize\",\"input\":\"\xff\xfe\"}", status: 400, code: "invalid_utf8"},
		{name: "CloudEvent without specversion", ctype: ceCT, body: `{"id":"1","source":"/x","type":"t","data":` + good + `}`, status: 400, code: "bad_cloudevent", field: "specversion"},
		{name: "CloudEvent 0.3", ctype: ceCT, body: `{"specversion":"0.3","id":"1","source":"/x","type":"t","data":` + good + `}`, status: 400, code: "bad_cloudevent", field: "specversion"},
		{name: "CloudEvent without id, source, type", ctype: ceCT, body: `{"specversion":"1.0","data":` + good + `}`, status: 400, code: "bad_cloudevent", fields: 3},
		{name: "CloudEvent data_base64", ctype: ceCT, body: `{"specversion":"1.0","id":"1","source":"/x","type":"t","data_base64":"e30="}`, status: 400, code: "bad_cloudevent", field: "data_base64"},
		{name: "CloudEvent data not an object", ctype: ceCT, body: `{"specversion":"1.0","id":"1","source":"/x","type":"t","data":"hi"}`, status: 400, code: "not_object", field: "data"},
		{name: "CloudEvent bad intent", ctype: ceCT, body: `{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"kind":"summarize"}}`, status: 400, code: "missing_field", field: "data.input"},
		{name: "same key, another body", body: `{"kind":"summarize","input":"other"}`, hdr: []string{"Idempotency-Key", "k-1"}, status: 409, code: "idempotency_conflict"},
		{name: "bad idempotency key", body: good, hdr: []string{"Idempotency-Key", "é"}, status: 400, code: "bad_idempotency_key"},
		{name: "wrong method", method: http.MethodGet, status: 405, code: "method_not_allowed"},
		{name: "PUT", method: http.MethodPut, body: good, status: 405, code: "method_not_allowed"},
		{name: "wrong content type", ctype: "text/plain", body: good, status: 415, code: "unsupported_media_type"},
		{name: "no content type", ctype: "-", body: good, status: 415, code: "unsupported_media_type"},
		{name: "latin-1", ctype: "application/json; charset=iso-8859-1", body: good, status: 415, code: "unsupported_media_type"},
		{name: "empty body", body: "", status: 400, code: "empty_body"},
		{name: "array", body: `[` + good + `]`, status: 400, code: "not_object"},
		{name: "unknown field", body: `{"kind":"summarize","input":"x","colour":"red"}`, status: 400, code: "unknown_field", field: "colour"},
		{name: "duplicate field", body: `{"kind":"summarize","input":"x","kind":"classify"}`, status: 400, code: "duplicate_field", field: "kind"},
		{name: "negative priority", body: `{"kind":"summarize","input":"x","priority":-1}`, status: 400, code: "invalid_value", field: "priority"},
		{name: "fractional priority", body: `{"kind":"summarize","input":"x","priority":1.5}`, status: 400, code: "wrong_type", field: "priority"},
		{name: "bad contract", body: `{"kind":"summarize","input":"x","contract":"v3"}`, status: 400, code: "bad_contract", field: "contract"},
		{name: "v2 field on v1", body: `{"kind":"summarize","input":"x","contract":"v1","tenant":"acme"}`, status: 400, code: "needs_v2", field: "tenant"},
		{name: "bad trace id", body: `{"kind":"summarize","input":"x","trace_id":"a b"}`, status: 400, code: "invalid_value", field: "trace_id"},
		{name: "attribute not a string", body: `{"kind":"summarize","input":"x","attributes":{"a":1}}`, status: 400, code: "wrong_type", field: "attributes.a"},
		{name: "no token", body: good, hdr: []string{"Authorization", ""}, status: 401, code: "missing", field: "Authorization"},
		{name: "token in the query only", body: good, hdr: []string{"Authorization", "", "?", "access_token=" + tok}, status: 401, code: "missing"},
		{name: "basic auth", body: good, hdr: []string{"Authorization", "Basic dXNlcjpwYXNz"}, status: 401, code: "missing"},
		{name: "garbage token", body: good, hdr: []string{"Authorization", "Bearer not-a-token"}, status: 401, code: "malformed"},
		{name: "expired token", body: good, hdr: []string{"Authorization", "Bearer " + e.issuer.token(t, "alice", -5*time.Minute)}, status: 401, code: "expired"},
		{name: "tampered token", body: good, hdr: []string{"Authorization", bearer[:len(bearer)-4] + "AAAA"}, status: 401, code: "bad_signature"},
	}
	t.Run("refused", func(t *testing.T) {
		for _, tt := range bad {
			refused(t, c, srv.URL, bearer, tok, tt)
		}
	})
	// After every refusal is answered: the record count proves none was
	// produced.
	checkGood(t, e, c, srv.URL, bearer, tok)

	want := map[string]float64{"accepted": 5, "replayed": 2, "unknown_kind": 1, "expired": 1, "missing": 3, "idempotency_conflict": 1}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "spine_ingress_requests_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for code, n := range want {
		if got[code] != n {
			t.Errorf("spine_ingress_requests_total{code=%q} = %v, want %v (all: %v)", code, got[code], n, got)
		}
	}
}

type badRequest struct {
	name   string
	method string
	ctype  string
	body   string
	hdr    []string // more headers; an Authorization here replaces the good one
	status int
	code   string
	field  string
	fields int // at least this many entries in errors
}

func refused(t *testing.T, c *http.Client, srvURL, bearer, tok string, tt badRequest) {
	t.Run(tt.name, func(t *testing.T) {
		t.Parallel()
		method := tt.method
		if method == "" {
			method = http.MethodPost
		}
		url := srvURL + ingress.Path
		auth := bearer
		hdr := map[string]string{}
		for i := 0; i+1 < len(tt.hdr); i += 2 {
			switch tt.hdr[i] {
			case "Authorization":
				auth = tt.hdr[i+1]
			case "?":
				url += "?" + tt.hdr[i+1]
			default:
				hdr[tt.hdr[i]] = tt.hdr[i+1]
			}
		}
		req, _ := http.NewRequest(method, url, strings.NewReader(tt.body))
		switch tt.ctype {
		case "":
			req.Header.Set("Content-Type", jsonCT)
		case "-":
		default:
			req.Header.Set("Content-Type", tt.ctype)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, body := do(t, c, req)
		var eb ingress.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || resp.Header.Get("Content-Type") != jsonCT {
			t.Fatalf("%d, not a JSON error (%v): %.200s", resp.StatusCode, err, body)
		}
		if resp.StatusCode != tt.status || eb.Code != tt.code || (tt.field != "" && eb.Field != tt.field) || eb.Error == "" {
			t.Fatalf("%d %+v, want %d %s field %q", resp.StatusCode, eb, tt.status, tt.code, tt.field)
		}
		if len(eb.Errors) < tt.fields {
			t.Errorf("errors %+v, want at least %d", eb.Errors, tt.fields)
		}
		switch resp.StatusCode {
		case 401:
			if w := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(w, "Bearer") || (tt.code != "missing" && !strings.Contains(w, `error="invalid_token"`)) {
				t.Errorf("WWW-Authenticate %q", w)
			}
		case 405:
			if resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		}
		if strings.Contains(string(body), tok[len(tok)-20:]) {
			t.Error("the answer quotes the token")
		}
	})
}

// checkGood sends good requests and checks the topic holds exactly one
// record per new intent (k-1's included).
func checkGood(t *testing.T, e *env, c *http.Client, url, bearer, tok string) {
	type answer struct {
		ingress.Accepted
		status int
		hdr    http.Header
	}
	send := func(ctype, body string, hdr ...string) answer {
		resp, b := post(t, c, url, ctype, body, append([]string{"Authorization", bearer}, hdr...)...)
		var a answer
		_ = json.Unmarshal(b, &a.Accepted)
		a.status, a.hdr = resp.StatusCode, resp.Header
		if resp.StatusCode != http.StatusAccepted || a.TraceID == "" || a.Topic != string(e.layout.Intents()) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		return a
	}
	v1 := send(jsonCT, `{"kind":"summarize","input":"hello","actor":"mallory"}`)
	v2 := send(jsonCT+"; charset=utf-8", `{"kind":"classify","input":"hi","priority":5,"tenant":"acme","attributes":{"team":"ops"},"trace_id":"my-trace-1"}`)
	ce := send(ceCT, `{"specversion":"1.0","id":"ev-1","source":"/crm","type":"com.example.intent","data":{"kind":"summarize","input":"from an event","contract":"v2"}}`)
	ceAgain := send(ceCT, `{"specversion":"1.0","id":"ev-1","source":"/crm","type":"com.example.intent","data":{"kind":"summarize","input":"from an event","contract":"v2"}}`)
	k2 := send(jsonCT, `{"kind":"summarize","input":"once"}`, "Idempotency-Key", "k-2")
	k2Again := send(jsonCT, `{"kind":"summarize","input":"once"}`, "Idempotency-Key", "k-2")
	if k2Again.Accepted != k2.Accepted || k2Again.hdr.Get("Idempotent-Replayed") != "true" || ceAgain.Accepted != ce.Accepted {
		t.Errorf("retries answered %+v and %+v, want %+v and %+v replayed", k2Again, ceAgain, k2, ce)
	}
	if v2.TraceID != "my-trace-1" || v1.hdr.Get("Location") != "/v1/runs/"+v1.TraceID {
		t.Errorf("trace %s, location %s", v2.TraceID, v1.hdr.Get("Location"))
	}

	recs := e.records(t)
	if len(recs) != 5 { // k-1, v1, v2, ce, k-2
		t.Fatalf("%d records on the topic, want 5: a refusal or a retry reached Kafka", len(recs))
	}
	byTrace := map[string]*schemas.Intent{}
	for _, r := range recs {
		if strings.Contains(string(r.Value), tok[len(tok)-20:]) || strings.Contains(string(r.Value), tok[:20]) {
			t.Fatal("a record carries the token")
		}
		in := e.decode(t, r)
		if string(r.Key) != in.TraceID {
			t.Errorf("key %s, trace %s", r.Key, in.TraceID)
		}
		byTrace[in.TraceID] = in
	}
	in := byTrace[v1.TraceID]
	if in == nil || in.Actor != "alice" || in.Provenance == nil || in.Provenance.Subject != "alice" || in.Provenance.Issuer != e.issuer.URL ||
		in.Provenance.Claims["email"] != "alice@example.com" || in.SchemaVersion != schemas.V1 || in.Input != "hello" {
		t.Errorf("v1 intent %+v", in)
	}
	if in := byTrace["my-trace-1"]; in == nil || in.SchemaVersion != schemas.V2 || in.Priority != 5 || in.Tenant != "acme" || in.Attributes["team"] != "ops" {
		t.Errorf("v2 intent %+v", in)
	}
	if in := byTrace[ce.TraceID]; in == nil || in.Attributes["ce_source"] != "/crm" || in.Attributes["ce_id"] != "ev-1" {
		t.Errorf("CloudEvent intent %+v", in)
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, tok[:20]) || strings.Contains(line, tok[len(tok)-20:]) {
			t.Fatalf("a log line carries the token: %s", line)
		}
	}
}

// A retry with the same key on another instance (a fresh cache) carries
// the same trace id, for the orchestrator to deduplicate; another caller's
// same key is another run.
func TestIdempotencyAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := e.verifier(t)
	a, b := e.server(t, ingress.Config{}, ingress.WithVerifier(v)), e.server(t, ingress.Config{}, ingress.WithVerifier(v))
	body := `{"kind":"summarize","input":"once"}`
	send := func(url, sub string) ingress.Accepted {
		resp, out := post(t, a.Client(), url, jsonCT, body, "Authorization", "Bearer "+e.issuer.token(t, sub, time.Minute), "Idempotency-Key", "order-7")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
		var acc ingress.Accepted
		_ = json.Unmarshal(out, &acc)
		return acc
	}
	x, y, z := send(a.URL, "alice"), send(b.URL, "alice"), send(a.URL, "bob")
	if x.TraceID != y.TraceID || x.IntentID != y.IntentID {
		t.Errorf("instances derived %s/%s and %s/%s", x.TraceID, x.IntentID, y.TraceID, y.IntentID)
	}
	if z.TraceID == x.TraceID {
		t.Error("another caller's key collides")
	}
}

// A client that trickles its body is cut off at the read timeout.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.server(t, ingress.Config{ReadTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"kind":"summarize","input":"slow"}`
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", ingress.Path, len(body))
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		for i := range len(body) {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("cut off after %s", took)
	}
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var eb ingress.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != http.StatusRequestTimeout || eb.Code != "request_timeout" {
		t.Fatalf("%d %+v, want 408 request_timeout", resp.StatusCode, eb)
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records", n)
	}
}

// Past its bucket a caller gets 429 with Retry-After; another caller is
// not affected.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.server(t, ingress.Config{Rate: 0.5, Burst: 2}, ingress.WithVerifier(e.verifier(t)))
	body := `{"kind":"summarize","input":"x"}`
	alice := "Bearer " + e.issuer.token(t, "alice", time.Minute)
	for i := range 3 {
		resp, out := post(t, srv.Client(), srv.URL, jsonCT, body, "Authorization", alice)
		if i < 2 && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, out)
		}
		// The next token is at most 1/rate = 2 s away, less the time the
		// first two requests took (a real broker's acknowledgements), in
		// whole seconds, rounded up.
		if ra := resp.Header.Get("Retry-After"); i == 2 && (resp.StatusCode != http.StatusTooManyRequests || (ra != "1" && ra != "2") || !strings.Contains(string(out), "rate_limited")) {
			t.Fatalf("request %d: %d Retry-After %q %s", i, resp.StatusCode, ra, out)
		}
	}
	if resp, out := post(t, srv.Client(), srv.URL, jsonCT, body, "Authorization", "Bearer "+e.issuer.token(t, "bob", time.Minute)); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bob: %d %s", resp.StatusCode, out)
	}
	if n := len(e.records(t)); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
}

// failingProducer never gets an acknowledgement.
type failingProducer struct{ calls atomic.Int64 }

func (f *failingProducer) Produce(context.Context, ...pipeline.Output) ([]pipeline.Produced, error) {
	f.calls.Add(1)
	return nil, errors.New("broker down")
}

// When Kafka does not acknowledge, the answer is 503 and the key is free
// for the retry.
func TestKafkaUnavailable(t *testing.T) {
	t.Parallel()
	p := &failingProducer{}
	h, err := ingress.New(ingress.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptestServer(t, mux)
	for range 2 {
		resp, out := post(t, srv.Client(), srv.URL, jsonCT, `{"kind":"k","input":"x"}`, "Idempotency-Key", "a")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(out), "kafka_unavailable") {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
	}
	if p.calls.Load() != 2 {
		t.Fatalf("%d produce calls, want 2: the failed key must be free again", p.calls.Load())
	}
}
