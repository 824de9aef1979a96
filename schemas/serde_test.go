package schemas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

// countingTransport counts the HTTP requests a registry client makes.
type countingTransport struct {
	calls atomic.Int64
	byID  atomic.Int64 // GET /schemas/ids/...
	next  http.RoundTripper
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	if strings.HasPrefix(req.URL.Path, "/schemas/ids/") {
		c.byID.Add(1)
	}
	return c.next.RoundTrip(req)
}

// fixture is Spine's own schema registry (on a kfake cluster, or the real
// Kafka of KAFKA_BROKERS) serving over loopback HTTP, with every contract
// version registered under "spine.control-value" and
// "spine.intents-value", a client that counts its calls, and a serde on it.
type fixture struct {
	srv     *httptest.Server
	admin   *sr.Client // uncounted, for test set-up
	failing atomic.Bool
	counter *countingTransport
	cl      *sr.Client
	serde   *schemas.Serde
	ids     map[schemas.Contract]map[schemas.ContractVersion]int
}

const (
	eventSubject  = "spine.control-value"
	intentSubject = "spine.intents-value"
)

func newFixture(tb testing.TB, opts ...schemas.Option) *fixture {
	tb.Helper()
	brokers, prefix := kafkatest.Brokers(tb), kafkatest.Prefix(tb)
	reg := registrytest.Start(tb,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(prefix+"_schemas"),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	f := &fixture{ids: map[schemas.Contract]map[schemas.ContractVersion]int{}}
	h := reg.Handler()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failing.Load() {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error_code":50003,"message":"unavailable (test outage)"}`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(f.srv.Close)
	var err error
	if f.admin, err = sr.NewClient(sr.URLs(f.srv.URL)); err != nil {
		tb.Fatal(err)
	}
	for _, v := range schemas.Versions {
		for c, subject := range map[schemas.Contract]string{schemas.ContractRuntimeEvent: eventSubject, schemas.ContractIntent: intentSubject} {
			if f.ids[c] == nil {
				f.ids[c] = map[schemas.ContractVersion]int{}
			}
			f.ids[c][v] = f.register(tb, subject, schemas.MustSource(c, v))
		}
	}
	f.counter = &countingTransport{next: http.DefaultTransport}
	if f.cl, err = sr.NewClient(sr.URLs(f.srv.URL), sr.HTTPClient(&http.Client{Transport: f.counter, Timeout: 5 * time.Second})); err != nil {
		tb.Fatal(err)
	}
	f.serde = f.newSerde(tb, opts...)
	return f
}

// register registers an Avro schema under subject and returns its id.
func (f *fixture) register(tb testing.TB, subject, schema string) int {
	tb.Helper()
	id, err := f.admin.RegisterSchema(context.Background(), subject, sr.Schema{Schema: schema}, -1, -1)
	if err != nil {
		tb.Fatalf("register under %s: %v", subject, err)
	}
	return id
}

func (f *fixture) newSerde(tb testing.TB, opts ...schemas.Option) *schemas.Serde {
	tb.Helper()
	s, err := schemas.NewSerde(f.cl, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// idOf returns the registry id of a contract version.
func (f *fixture) idOf(c schemas.Contract, v schemas.ContractVersion) int { return f.ids[c][v] }

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func fullEvent() *schemas.RuntimeEvent {
	errText := "upstream 503"
	return &schemas.RuntimeEvent{
		EventID: "ev-1", TraceID: "tr-1", SpanID: "sp-2", ParentSpanID: "sp-1",
		Actor: "agent:planner", Intent: "summarize", ArtifactID: "art-9",
		SchemaVersion: schemas.V2, Timestamp: t0, RunStarted: t0.Add(-time.Second),
		Phase: schemas.PhaseData, EventType: "artifact.delivered", State: "delivered",
		Artifact: &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "héllo ✓", Score: 0.9, SizeBytes: 1234, LatencyMs: 87},
		Gate: &schemas.GateOutcome{Name: "drift", Passed: true, Reason: "ok", Measured: 0.1, Threshold: 0.2,
			Rule: "psi", PolicyVersion: "sha256:ab12", Evidence: map[string]string{"n_ref": "500", "n_cur": "200"}},
		Route: "canary", Attempt: 2, Error: &errText,
		Usage:    &schemas.Usage{InputTokens: 10, OutputTokens: 20, CostUSD: 0.003},
		Priority: 7, Tenant: "acme", Attributes: map[string]string{"model": "m-1", "ключ": "значение"},
		Input: "summarize {\"q\": 3} ✓",
		Provenance: &schemas.Provenance{Issuer: "https://issuer.example", Subject: "user-42", VerifiedAt: t0.Add(-2 * time.Second),
			Claims: map[string]string{"email": "ada@example.com"}},
		StateflowVersion: "sha256:cd34",
	}
}

func fullIntent() *schemas.Intent {
	return &schemas.Intent{
		IntentID: "in-1", TraceID: "tr-1", Actor: "user:ada", Kind: "summarize", Input: "read this",
		SchemaVersion: schemas.V2, Timestamp: t0, Priority: 3, Tenant: "acme", DeadlineMs: 30000,
		Attributes: map[string]string{"lang": "en"},
	}
}

// v1Defaults is ev with every V2-only field as a V2 reader sees it in a V1
// record: at its Avro default. Attempt, error, usage and input are in V1
// too, so a run's retries never depend on its contract version.
func v1Defaults(ev schemas.RuntimeEvent) *schemas.RuntimeEvent {
	ev.Route, ev.Priority, ev.Tenant = "baseline", 0, ""
	ev.Attributes = map[string]string{}
	return &ev
}

// v1Only is ev as a V1 reader sees it: V2-only fields at their Go zero.
func v1Only(ev schemas.RuntimeEvent) *schemas.RuntimeEvent {
	ev.Route, ev.Priority, ev.Tenant, ev.Attributes = "", 0, "", nil
	return &ev
}

func TestRoundTripAcrossVersions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v1Reader := f.newSerde(t, schemas.WithReaderVersion(schemas.V1))
	ev := fullEvent()
	in := fullIntent()
	in1 := *in
	in1.Priority, in1.Tenant, in1.DeadlineMs, in1.Attributes = 0, "", 0, map[string]string{}
	in1only := *in
	in1only.Priority, in1only.Tenant, in1only.DeadlineMs, in1only.Attributes = 0, "", 0, nil

	tests := []struct {
		name    string
		subject string
		writer  schemas.ContractVersion
		reader  *schemas.Serde
		value   any
		want    any
	}{
		{"event v2→v2 keeps every field", eventSubject, schemas.V2, f.serde, ev, ev},
		{"event v1→v2 fills v2 defaults", eventSubject, schemas.V1, f.serde, ev, v1Defaults(*ev)},
		{"event v2→v1 reads v1 fields", eventSubject, schemas.V2, v1Reader, ev, v1Only(*ev)},
		{"event v1→v1", eventSubject, schemas.V1, v1Reader, ev, v1Only(*ev)},
		{"intent v2→v2", intentSubject, schemas.V2, f.serde, in, in},
		{"intent v1→v2 fills v2 defaults", intentSubject, schemas.V1, f.serde, in, &in1},
		{"intent v2→v1", intentSubject, schemas.V2, v1Reader, in, &in1only},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := f.serde.Encode(t.Context(), tt.subject, tt.writer, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0 {
				t.Fatalf("magic byte %d", b[0])
			}
			c, _ := schemas.ContractOf(tt.value)
			if id := int(binary.BigEndian.Uint32(b[1:5])); id != f.idOf(c, tt.writer) {
				t.Fatalf("header id %d, registry has %s %s as %d", id, c, tt.writer, f.idOf(c, tt.writer))
			}
			got, id, ver, err := tt.reader.Decode(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			if ver != tt.writer || id != f.idOf(c, tt.writer) {
				t.Fatalf("writer %s id %d, want %s id %d", ver, id, tt.writer, f.idOf(c, tt.writer))
			}
			normalize(got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// normalize puts decoded times in UTC so DeepEqual compares instants.
func normalize(v any) {
	switch x := v.(type) {
	case *schemas.RuntimeEvent:
		x.Timestamp, x.RunStarted = x.Timestamp.UTC(), x.RunStarted.UTC()
	case *schemas.Intent:
		x.Timestamp = x.Timestamp.UTC()
	}
}

// sameNaNs replaces every NaN float of a decoded event with one sentinel,
// so a comparison tells a stable NaN from a changed value.
func sameNaNs(v any) {
	x, ok := v.(*schemas.RuntimeEvent)
	if !ok {
		return
	}
	fix := func(f *float64) {
		if math.IsNaN(*f) {
			*f = -1e308
		}
	}
	if x.Artifact != nil {
		fix(&x.Artifact.Score)
	}
	if x.Gate != nil {
		fix(&x.Gate.Measured)
		fix(&x.Gate.Threshold)
	}
	if x.Usage != nil {
		fix(&x.Usage.CostUSD)
	}
}

// TestV1SchemaAloneDropsV2Data shows the trap resolution avoids: hamba
// "succeeds" decoding v2 bytes with the v1 schema and silently loses every
// v2 field, while the serde reads them with the writer schema.
func TestV1SchemaAloneDropsV2Data(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	b, err := f.serde.Encode(t.Context(), eventSubject, schemas.V2, fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	// The first revision of v1, whose fields are a prefix of v2's: the
	// naive decode then "succeeds" (with today's v1 it fails outright).
	v1, err := avro.ParseWithCache(schemas.History(schemas.ContractRuntimeEvent, schemas.V1)[0], "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	var naive schemas.RuntimeEvent
	if err := avro.Unmarshal(v1, b[5:], &naive); err != nil {
		t.Fatalf("naive decode should 'succeed', got %v", err)
	}
	if naive.Route != "" || naive.Attributes != nil {
		t.Fatalf("naive v1 decode kept v2 data: %+v", naive)
	}
	var got schemas.RuntimeEvent
	if _, err := f.serde.DecodeInto(t.Context(), b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Route != "canary" || got.Attributes["model"] != "m-1" || got.Usage == nil || got.Usage.OutputTokens != 20 {
		t.Fatalf("serde lost v2 data: %+v", got)
	}

	// The same v2 body under an id that claims v1 is caught, not misread.
	v1id := f.idOf(schemas.ContractRuntimeEvent, schemas.V1)
	lie := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(v1id)), b[5:]...)
	if _, _, _, err := f.serde.Decode(t.Context(), lie); !errors.Is(err, schemas.ErrTrailingBytes) && !errors.Is(err, schemas.ErrMalformed) {
		t.Fatalf("v2 body under the v1 id: %v, want trailing_bytes or malformed", err)
	}
}

// raw encodes v with the contract's schema straight through hamba, with no
// validation, under id: how a buggy or hostile producer writes.
func raw(tb testing.TB, id int, c schemas.Contract, ver schemas.ContractVersion, v any) []byte {
	tb.Helper()
	s, err := avro.ParseWithCache(schemas.MustSource(c, ver), "", &avro.SchemaCache{})
	if err != nil {
		tb.Fatal(err)
	}
	body, err := avro.Marshal(s, v)
	if err != nil {
		tb.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
}

func header(id int) []byte { return binary.BigEndian.AppendUint32([]byte{0}, uint32(id)) }

func zigzag(n int64) []byte { return binary.AppendUvarint(nil, uint64(n<<1^n>>63)) }

func TestDecodeBadBytes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, schemas.WithClock(func() time.Time { return t0 }))
	evID := f.idOf(schemas.ContractRuntimeEvent, schemas.V2)
	inID := f.idOf(schemas.ContractIntent, schemas.V2)
	otherID := f.register(t, "other-value", `{"type":"record","name":"Other","namespace":"x","fields":[{"name":"a","type":"string"}]}`)
	stringID := f.register(t, "str-value", `"string"`)
	// A RuntimeEvent whose event_id is an int: it cannot resolve against the reader.
	badEvID := f.register(t, "bad-value", `{"type":"record","name":"RuntimeEvent","namespace":"io.spine.contracts","fields":[{"name":"event_id","type":"int"}]}`)

	good, err := f.serde.Encode(t.Context(), eventSubject, schemas.V2, fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	goodIntent, err := f.serde.Encode(t.Context(), intentSubject, schemas.V2, fullIntent())
	if err != nil {
		t.Fatal(err)
	}
	with := func(mut func(*schemas.RuntimeEvent)) []byte {
		ev := fullEvent()
		mut(ev)
		return raw(t, evID, schemas.ContractRuntimeEvent, schemas.V2, ev)
	}
	withIntent := func(mut func(*schemas.Intent)) []byte {
		in := fullIntent()
		mut(in)
		return raw(t, inID, schemas.ContractIntent, schemas.V2, in)
	}
	// 2^31 as the length of event_id.
	hugeLen := append(header(evID), zigzag(1<<31)...)
	// schema_version enum index 7: event_id..artifact_id, then the enum.
	badEnum := func() []byte {
		b := header(evID)
		for range 7 {
			b = append(b, zigzag(1)...)
			b = append(b, 'x')
		}
		return append(b, zigzag(7)...)
	}()
	badUnion := func() []byte {
		// Fields up to artifact (index 13) are set; artifact's union index 5.
		b := raw(t, evID, schemas.ContractRuntimeEvent, schemas.V1, &schemas.RuntimeEvent{
			EventID: "e", TraceID: "t", SchemaVersion: schemas.V1, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseGate, EventType: "x",
		})
		// The v1 body ends with artifact (null=0), gate (null=0), attempt
		// (0), error (null=0), usage (null=0), input (""), provenance
		// (null=0) and stateflow_version (""): make artifact's index 5.
		b[len(b)-8] = 10
		return b
	}()
	tooBig := with(func(e *schemas.RuntimeEvent) {
		e.Attributes = map[string]string{"k": strings.Repeat("v", schemas.DefaultMaxRecordBytes)}
	})
	// A map block claiming 2^40 entries.
	hugeMap := func() []byte {
		b := raw(t, evID, schemas.ContractRuntimeEvent, schemas.V2, &schemas.RuntimeEvent{
			EventID: "e", TraceID: "t", SchemaVersion: schemas.V1, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseGate, EventType: "x",
		})
		return append(b[:len(b)-1], zigzag(1<<40)...) // replace the empty map's 0 count
	}()
	// A sized map block (count -1) whose size, 5, is not its entry's 2
	// bytes: a decoder skipping by size would land inside the next field.
	missizedBlock := func() []byte {
		b := raw(t, evID, schemas.ContractRuntimeEvent, schemas.V2, &schemas.RuntimeEvent{
			EventID: "e", TraceID: "t", SchemaVersion: schemas.V1, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseGate, EventType: "x",
		})
		b = append(b[:len(b)-1], zigzag(-1)...)
		b = append(b, zigzag(5)...)
		return append(b, 0, 0, 0, 0, 0) // key "", value "", end of map, two spare bytes
	}()

	tests := []struct {
		name string
		b    []byte
		into any // nil: Decode
		code schemas.ErrorCode
	}{
		{"empty", nil, nil, schemas.CodeEmpty},
		{"empty slice", []byte{}, nil, schemas.CodeEmpty},
		{"one byte", []byte{0}, nil, schemas.CodeTooShort},
		{"four bytes", []byte{0, 0, 0, 1}, nil, schemas.CodeTooShort},
		{"bad magic", append([]byte{1}, good[1:]...), nil, schemas.CodeBadMagic},
		{"json text", []byte(`{"event_id":"x"}`), nil, schemas.CodeBadMagic},
		{"unknown id", append(header(99999), good[5:]...), nil, schemas.CodeUnknownSchemaID},
		{"id zero", append(header(0), good[5:]...), nil, schemas.CodeUnknownSchemaID},
		{"another contract's record", append(header(otherID), 2, 'a'), nil, schemas.CodeWrongContract},
		{"primitive schema id", append(header(stringID), 2, 'a'), nil, schemas.CodeWrongContract},
		{"unresolvable contract", append(header(badEvID), 2), nil, schemas.CodeWrongContract},
		{"intent bytes into event", goodIntent, &schemas.RuntimeEvent{}, schemas.CodeWrongContract},
		{"event bytes into intent", good, &schemas.Intent{}, schemas.CodeWrongContract},
		{"header only", header(evID), nil, schemas.CodeTruncated},
		{"truncated by one", good[:len(good)-1], nil, schemas.CodeTruncated},
		{"truncated mid-string", good[:12], nil, schemas.CodeTruncated},
		{"truncated mid-varint", append(header(evID), 0x80), nil, schemas.CodeTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), nil, schemas.CodeTrailingBytes},
		{"trailing record", append(bytes.Clone(good), good[5:]...), nil, schemas.CodeTrailingBytes},
		{"length prefix 2^31", hugeLen, nil, schemas.CodeTooLarge},
		{"record over the bound", tooBig, nil, schemas.CodeTooLarge},
		{"map of 2^40 entries", hugeMap, nil, schemas.CodeTooLarge},
		{"negative length", append(header(evID), zigzag(-5)...), nil, schemas.CodeMalformed},
		{"block size not its entries' size", missizedBlock, nil, schemas.CodeMalformed},
		{"enum index out of range", badEnum, nil, schemas.CodeMalformed},
		{"union index out of range", badUnion, nil, schemas.CodeMalformed},
		{"overlong varint", append(header(evID), bytes.Repeat([]byte{0xff}, 11)...), nil, schemas.CodeMalformed},
		{"invalid utf8 field", with(func(e *schemas.RuntimeEvent) { e.EventID = "ev\xff" }), nil, schemas.CodeInvalidUTF8},
		{"invalid utf8 nested", with(func(e *schemas.RuntimeEvent) { e.Artifact.Summary = "\xc3\x28" }), nil, schemas.CodeInvalidUTF8},
		{"invalid utf8 map key", with(func(e *schemas.RuntimeEvent) { e.Attributes = map[string]string{"k\xfe": "v"} }), nil, schemas.CodeInvalidUTF8},
		{"invalid utf8 map value", with(func(e *schemas.RuntimeEvent) { e.Attributes = map[string]string{"k": "\xed\xa0\x80"} }), nil, schemas.CodeInvalidUTF8},
		{"invalid utf8 error", with(func(e *schemas.RuntimeEvent) { s := "\xff"; e.Error = &s }), nil, schemas.CodeInvalidUTF8},
		{"empty event_id", with(func(e *schemas.RuntimeEvent) { e.EventID = "" }), nil, schemas.CodeInvalidContract},
		{"empty trace_id", with(func(e *schemas.RuntimeEvent) { e.TraceID = "" }), nil, schemas.CodeInvalidContract},
		{"empty event_type", with(func(e *schemas.RuntimeEvent) { e.EventType = "" }), nil, schemas.CodeInvalidContract},
		{"timestamp 2h ahead", with(func(e *schemas.RuntimeEvent) { e.Timestamp = t0.Add(2 * time.Hour) }), nil, schemas.CodeInvalidContract},
		{"timestamp unset", with(func(e *schemas.RuntimeEvent) { e.Timestamp = time.UnixMilli(0) }), nil, schemas.CodeInvalidContract},
		{"summary over bound", with(func(e *schemas.RuntimeEvent) { e.Artifact.Summary = strings.Repeat("s", schemas.MaxSummaryBytes+1) }), nil, schemas.CodeInvalidContract},
		{"negative attempt", with(func(e *schemas.RuntimeEvent) { e.Attempt = -1 }), nil, schemas.CodeInvalidContract},
		{"intent invalid utf8", withIntent(func(i *schemas.Intent) { i.Input = "in\xff" }), &schemas.Intent{}, schemas.CodeInvalidUTF8},
		{"intent empty trace_id", withIntent(func(i *schemas.Intent) { i.TraceID = "" }), nil, schemas.CodeInvalidContract},
		{"intent input over bound", withIntent(func(i *schemas.Intent) { i.Input = strings.Repeat("i", schemas.MaxInputBytes+1) }), nil, schemas.CodeInvalidContract},
		{"intent timestamp ahead", withIntent(func(i *schemas.Intent) { i.Timestamp = t0.Add(61 * time.Minute) }), &schemas.Intent{}, schemas.CodeInvalidContract},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.into != nil {
				_, err = f.serde.DecodeInto(t.Context(), tt.b, tt.into)
			} else {
				var v any
				v, _, _, err = f.serde.Decode(t.Context(), tt.b)
				if err == nil {
					t.Fatalf("decoded %+v, want %s", v, tt.code)
				}
			}
			var de *schemas.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T), want a *DecodeError %s", err, err, tt.code)
			}
			if de.Code != tt.code || de.ErrorCode() != string(tt.code) || schemas.CodeOf(err) != tt.code {
				t.Fatalf("code %s (%v), want %s", de.Code, err, tt.code)
			}
			if !errors.Is(err, &schemas.DecodeError{Code: tt.code}) {
				t.Fatalf("errors.Is does not match code %s", tt.code)
			}
		})
	}
}

func TestRegistryCallsSteadyState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	values := []struct {
		subject string
		v       schemas.ContractVersion
		value   any
	}{
		{eventSubject, schemas.V1, fullEvent()}, {eventSubject, schemas.V2, fullEvent()},
		{intentSubject, schemas.V1, fullIntent()}, {intentSubject, schemas.V2, fullIntent()},
	}
	roundTrip := func() {
		t.Helper()
		for _, x := range values {
			b, err := f.serde.Encode(ctx, x.subject, x.v, x.value)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := f.serde.Decode(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	roundTrip() // warm-up: one lookup per (subject, version), one fetch per id
	if got := f.counter.calls.Load(); got != 8 {
		t.Fatalf("warm-up made %d registry calls, want 4 lookups + 4 fetches", got)
	}
	f.counter.calls.Store(0)
	for range 1000 { // 4000 records each way
		roundTrip()
	}
	if got := f.counter.calls.Load(); got != 0 {
		t.Fatalf("steady state made %d registry calls, want 0", got)
	}
}

func TestConcurrentMissesCoalesce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	b, err := f.serde.Encode(t.Context(), eventSubject, schemas.V2, fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	fresh := f.newSerde(t) // empty caches
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			<-start
			if _, _, _, err := fresh.Decode(t.Context(), b); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := f.counter.byID.Load(); got != 1 {
		t.Fatalf("64 concurrent decodes of one new id fetched it %d times, want 1", got)
	}
}

func TestUnknownIDFetchedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	b := append(header(4242), 0)
	for range 100 {
		if _, _, _, err := f.serde.Decode(t.Context(), b); !errors.Is(err, schemas.ErrUnknownSchemaID) {
			t.Fatalf("%v, want unknown_schema_id", err)
		}
	}
	if got := f.counter.byID.Load(); got != 1 {
		t.Fatalf("100 decodes of an unknown id made %d registry calls, want 1", got)
	}
}

func TestRegistryOutageIsTransient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good, err := f.serde.Encode(t.Context(), eventSubject, schemas.V2, fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	down := newFixture(t)
	down.failing.Store(true)
	closed := newFixture(t)
	closed.srv.Close()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name  string
		serde *schemas.Serde
		ctx   context.Context
	}{
		{"registry answers 503", down.serde, t.Context()},
		{"registry is gone", closed.serde, t.Context()},
		{"context cancelled", f.newSerde(t), cancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { // not parallel: recovery below flips the registry back
			_, _, _, err := tt.serde.Decode(tt.ctx, good)
			if err == nil || schemas.CodeOf(err) != "" {
				t.Fatalf("decode: %v (code %q), want a transient error without a code", err, schemas.CodeOf(err))
			}
			var de *schemas.DecodeError
			if errors.As(err, &de) {
				t.Fatalf("decode: an outage is not a DecodeError: %v", err)
			}
			_, err = tt.serde.Encode(tt.ctx, "fresh-value", schemas.V2, fullEvent())
			if err == nil || schemas.CodeOf(err) != "" {
				t.Fatalf("encode: %v (code %q), want a transient error without a code", err, schemas.CodeOf(err))
			}
		})
	}
	// Recovery: once the registry answers, the same serde decodes.
	down.failing.Store(false)
	b, err := down.serde.Encode(t.Context(), eventSubject, schemas.V2, fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := down.serde.Decode(t.Context(), b); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, schemas.WithClock(func() time.Time { return t0 }))
	bad := fullEvent()
	bad.TraceID = ""
	badUTF := fullEvent()
	badUTF.Actor = "\xff"
	tests := []struct {
		name    string
		subject string
		v       schemas.ContractVersion
		value   any
		code    schemas.ErrorCode
	}{
		{"unsupported type", eventSubject, schemas.V2, "a string", schemas.CodeUnsupportedType},
		{"nil value", eventSubject, schemas.V2, nil, schemas.CodeUnsupportedType},
		{"version zero", eventSubject, 0, fullEvent(), schemas.CodeInvalidVersion},
		{"version three", eventSubject, 3, fullEvent(), schemas.CodeInvalidVersion},
		{"invalid value", eventSubject, schemas.V2, bad, schemas.CodeInvalidContract},
		{"invalid utf8", eventSubject, schemas.V2, badUTF, schemas.CodeInvalidUTF8},
		{"subject unknown", "nobody-value", schemas.V2, fullEvent(), schemas.CodeNotRegistered},
		{"contract not under subject", intentSubject, schemas.V2, fullEvent(), schemas.CodeNotRegistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := f.serde.Encode(t.Context(), tt.subject, tt.v, tt.value)
			var ee *schemas.EncodeError
			if !errors.As(err, &ee) || ee.Code != tt.code {
				t.Fatalf("encode: %x, %v; want EncodeError %s", b, err, tt.code)
			}
		})
	}
}

func TestAutoRegisterAndValueTypes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := f.newSerde(t, schemas.WithAutoRegister())
	// By value works as well as by pointer.
	b, err := reg.Encode(t.Context(), "brand-new-value", schemas.V1, *fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	if id := int(binary.BigEndian.Uint32(b[1:5])); id != f.idOf(schemas.ContractRuntimeEvent, schemas.V1) {
		t.Fatalf("registered under id %d", id)
	}
	// The plain serde now finds it by lookup.
	if _, err := f.serde.Encode(t.Context(), "brand-new-value", schemas.V1, fullEvent()); err != nil {
		t.Fatal(err)
	}
	// AppendEncode appends.
	prefix := []byte("keep")
	out, err := f.serde.AppendEncode(t.Context(), prefix, intentSubject, schemas.V2, *fullIntent())
	if err != nil || !bytes.HasPrefix(out, []byte("keep\x00")) {
		t.Fatalf("append: %q, %v", out, err)
	}
	var in schemas.Intent
	in.Attributes = map[string]string{"stale": "x"} // DecodeInto resets
	ver, err := f.serde.DecodeInto(t.Context(), out[4:], &in)
	if err != nil || ver != schemas.V2 {
		t.Fatal(ver, err)
	}
	if want := fullIntent().Attributes; !maps.Equal(in.Attributes, want) {
		t.Fatalf("attributes %v, want %v", in.Attributes, want)
	}
}

// A writer schema the serde has never seen — a later v3 with one more
// defaulted field — decodes into the newest Go type and counts as V2.
func TestLaterWriterVersionCountsAsNewest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v3 := strings.Replace(schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2),
		`"name": "attributes"`, `"name": "shard", "type": "long", "default": 0}, {"name": "attributes"`, 1)
	if v3 == schemas.MustSource(schemas.ContractRuntimeEvent, schemas.V2) {
		t.Fatal("could not derive v3")
	}
	id := f.register(t, eventSubject, v3)
	s, err := avro.ParseWithCache(v3, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	ev := fullEvent()
	type v3Event struct {
		schemas.RuntimeEvent
		Shard int64 `avro:"shard"`
	}
	body, err := avro.Marshal(s, &v3Event{RuntimeEvent: *ev, Shard: 12})
	if err != nil {
		t.Fatal(err)
	}
	got, _, ver, err := f.serde.Decode(t.Context(), append(header(id), body...))
	if err != nil {
		t.Fatal(err)
	}
	normalize(got)
	if ver != schemas.V2 || !reflect.DeepEqual(got, ev) {
		t.Fatalf("v3 decoded as %s: %+v", ver, got)
	}
}

func TestNewSerdeRejectsBadOptions(t *testing.T) {
	t.Parallel()
	cl, err := sr.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cl   *sr.Client
		opts []schemas.Option
	}{
		{"nil client", nil, nil},
		{"reader v3", cl, []schemas.Option{schemas.WithReaderVersion(3)}},
		{"tiny max", cl, []schemas.Option{schemas.WithMaxRecordBytes(4)}},
		{"nil logger", cl, []schemas.Option{schemas.WithLogger(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := schemas.NewSerde(tt.cl, tt.opts...); err == nil {
				t.Fatal("NewSerde accepted it")
			}
		})
	}
}

// fuzzSeeds returns valid v1/v2 records of both contracts and one of every
// bad kind, for the fuzz corpora.
func fuzzSeeds(tb testing.TB, f *fixture) [][]byte {
	tb.Helper()
	ctx := context.Background()
	var seeds [][]byte
	for _, v := range schemas.Versions {
		for _, x := range []struct {
			s string
			v any
		}{{eventSubject, fullEvent()}, {intentSubject, fullIntent()}} {
			b, err := f.serde.Encode(ctx, x.s, v, x.v)
			if err != nil {
				tb.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	good := seeds[len(seeds)-2]
	evID := f.idOf(schemas.ContractRuntimeEvent, schemas.V2)
	seeds = append(seeds,
		nil, []byte{0}, []byte{0, 0, 0, 1},
		append([]byte{1}, good[1:]...),
		append(header(9999), good[5:]...),
		good[:len(good)-1], good[:9],
		append(bytes.Clone(good), 0),
		append(header(evID), zigzag(1<<31)...),
		append(header(evID), zigzag(-1)...),
		append(header(evID), 2, 0xff),
	)
	return seeds
}

func FuzzDecode(f *testing.F) {
	fx := newFixture(f, schemas.WithClock(func() time.Time { return t0 }))
	v1Reader := fx.newSerde(f, schemas.WithReaderVersion(schemas.V1), schemas.WithClock(func() time.Time { return t0 }))
	for _, s := range fuzzSeeds(f, fx) {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range []*schemas.Serde{fx.serde, v1Reader} {
			v, _, ver, err := s.Decode(ctx, b)
			if err != nil {
				if schemas.CodeOf(err) == "" {
					t.Fatalf("error without a code: %v", err)
				}
				continue
			}
			// Re-encoding a decoded value and decoding it again is stable.
			c, _ := schemas.ContractOf(v)
			subject := eventSubject
			if c == schemas.ContractIntent {
				subject = intentSubject
			}
			again, err := s.Encode(ctx, subject, ver, v)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", v, err)
			}
			v2, _, ver2, err := s.Decode(ctx, again)
			if err != nil || ver2 != ver {
				t.Fatalf("decode of re-encoded: %v (%s, want %s)", err, ver2, ver)
			}
			normalize(v)
			normalize(v2)
			// NaN never equals itself; a NaN that stays NaN is stable.
			sameNaNs(v)
			sameNaNs(v2)
			if !reflect.DeepEqual(v, v2) {
				t.Fatalf("unstable round trip:\n%+v\n%+v", v, v2)
			}
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	fx := newFixture(f, schemas.WithClock(func() time.Time { return t0 }))
	f.Add("ev-1", "tr-1", "agent", "artifact.delivered", "canary", "k", "v", "summary", int32(1), int64(t0.UnixMilli()), uint8(2), true)
	f.Add("e", "t", "", "x", "", "", "", "", int32(0), int64(1), uint8(0), false)
	f.Add("é✓", "\u2028", "a\x00b", "gate.passed", "baseline", "ключ", "значение", "", int32(-1), int64(-5), uint8(1), true)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, eventID, traceID, actor, eventType, route, key, val, summary string, attempt int32, tsMs int64, phase uint8, v2 bool) {
		ev := &schemas.RuntimeEvent{
			EventID: eventID, TraceID: traceID, Actor: actor, EventType: schemas.EventType(eventType), Route: route,
			Attempt: attempt, SchemaVersion: schemas.V1, Timestamp: time.UnixMilli(tsMs).UTC(), RunStarted: time.UnixMilli(tsMs / 2).UTC(),
			Phase:      []schemas.Phase{schemas.PhaseControl, schemas.PhaseData, schemas.PhaseGate}[phase%3],
			Attributes: map[string]string{key: val},
			Artifact:   &schemas.ArtifactSummary{Summary: summary},
		}
		ver := schemas.V1
		if v2 {
			ver, ev.SchemaVersion = schemas.V2, schemas.V2
		}
		b, err := fx.serde.Encode(ctx, eventSubject, ver, ev)
		if err != nil {
			if ev.ValidateAt(t0) == nil {
				t.Fatalf("encode of a valid event: %v", err)
			}
			if schemas.CodeOf(err) == "" {
				t.Fatalf("encode error without a code: %v", err)
			}
			return
		}
		got, _, gotVer, err := fx.serde.Decode(ctx, b)
		if err != nil || gotVer != ver {
			t.Fatalf("decode: %v (%s, want %s)", err, gotVer, ver)
		}
		want := ev
		if !v2 {
			want = v1Defaults(*ev)
		}
		normalize(got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip\n%+v\nwant\n%+v", got, want)
		}
	})
}

func benchSerde(b *testing.B) *fixture {
	b.Helper()
	return newFixture(b)
}

func BenchmarkEncodeRuntimeEvent(b *testing.B) {
	f := benchSerde(b)
	ctx := context.Background()
	ev := fullEvent()
	for _, v := range schemas.Versions {
		b.Run(v.String(), func(b *testing.B) {
			buf, err := f.serde.Encode(ctx, eventSubject, v, ev)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf, err = f.serde.AppendEncode(ctx, buf[:0], eventSubject, v, ev)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeRuntimeEvent(b *testing.B) {
	f := benchSerde(b)
	ctx := context.Background()
	for _, v := range schemas.Versions {
		b.Run(v.String(), func(b *testing.B) {
			buf, err := f.serde.Encode(ctx, eventSubject, v, fullEvent())
			if err != nil {
				b.Fatal(err)
			}
			var ev schemas.RuntimeEvent
			if _, err := f.serde.DecodeInto(ctx, buf, &ev); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := f.serde.DecodeInto(ctx, buf, &ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var _ = fmt.Sprint

// TestHostileLengthsAllocateNothing: lengths and counts that promise more
// than the record holds are refused before anything is allocated for them
// (hamba alone would make([]byte, n) first, and, skipping a map a v1 reader
// lacks, loop over a 2^40 count). Not parallel: it reads the process's
// allocation counter.
func TestHostileLengthsAllocateNothing(t *testing.T) {
	f := newFixture(t)
	v1Reader := f.newSerde(t, schemas.WithReaderVersion(schemas.V1))
	evID := f.idOf(schemas.ContractRuntimeEvent, schemas.V2)
	claimsMiB := append(header(evID), zigzag(1_000_000)...) // event_id of ~1 MB, 0 bytes present
	hugeMap := raw(t, evID, schemas.ContractRuntimeEvent, schemas.V2, &schemas.RuntimeEvent{
		EventID: "e", TraceID: "t", SchemaVersion: schemas.V1, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseGate, EventType: "x",
	})
	hugeMap = append(hugeMap[:len(hugeMap)-1], zigzag(1<<40)...)
	tests := []struct {
		name  string
		serde *schemas.Serde
		b     []byte
		code  schemas.ErrorCode
	}{
		{"string claiming 1 MB", f.serde, claimsMiB, schemas.CodeTruncated},
		{"map claiming 2^40 entries, decoded", f.serde, hugeMap, schemas.CodeTooLarge},
		{"map claiming 2^40 entries, skipped by a v1 reader", v1Reader, hugeMap, schemas.CodeTooLarge},
	}
	const n = 1000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := tt.serde.Decode(t.Context(), tt.b); schemas.CodeOf(err) != tt.code { // warm the id cache
				t.Fatalf("%v, want %s", err, tt.code)
			}
			var wrong error
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			allocs := testing.AllocsPerRun(n, func() {
				if _, _, _, err := tt.serde.Decode(t.Context(), tt.b); schemas.CodeOf(err) != tt.code && wrong == nil {
					wrong = err
				}
			})
			runtime.ReadMemStats(&after)
			if wrong != nil {
				t.Fatalf("%v, want %s", wrong, tt.code)
			}
			// Both counters are the whole process's (the in-process broker
			// and registry allocate meanwhile), averaged over the n+1 runs
			// AllocsPerRun makes. A decode allocates about 8 times, 600
			// bytes (its error); one that trusts the length allocates 1 MB
			// or more. The bounds leave room for the rest of the process
			// and still catch that. A decoder looping over 2^40 entries
			// never returns: the go test timeout reports it.
			perDecode := (after.TotalAlloc - before.TotalAlloc) / (n + 1)
			if allocs > 64 || perDecode > 64<<10 {
				t.Fatalf("a decode allocated %.0f times, %d bytes; want a small constant, not the claimed length", allocs, perDecode)
			}
		})
	}
}

// TestEarlierRevisionsStillDecode is an upgrade: a registry holding the
// first revisions of the RuntimeEvent contract (as an earlier Spine
// registered them) takes today's v1 and v2 as new versions of the subject
// under FULL_TRANSITIVE, and a record written with an old revision still
// decodes as the version it was written under, input empty.
func TestEarlierRevisionsStillDecode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	subject := "upgrade-" + eventSubject
	if r := f.admin.SetCompatibility(t.Context(), sr.SetCompatibility{Level: schemas.ContractLevel}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	old := map[schemas.ContractVersion]int{}
	for _, v := range schemas.Versions {
		hist := schemas.History(schemas.ContractRuntimeEvent, v)
		if len(hist) == 0 {
			t.Fatalf("no earlier revision of runtime_event %s", v)
		}
		old[v] = f.register(t, subject, hist[0])
	}
	for _, v := range schemas.Versions {
		if id := f.register(t, subject, schemas.MustSource(schemas.ContractRuntimeEvent, v)); id == old[v] {
			t.Fatalf("today's %s has the id of its first revision %d: the contract did not change?", v, id)
		}
	}
	for _, v := range schemas.Versions {
		s, err := avro.ParseWithCache(schemas.History(schemas.ContractRuntimeEvent, v)[0], "", &avro.SchemaCache{})
		if err != nil {
			t.Fatal(err)
		}
		ev := fullEvent()
		body, err := avro.Marshal(s, ev)
		if err != nil {
			t.Fatal(err)
		}
		b := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(old[v])), body...)
		got, _, ver, err := f.serde.Decode(t.Context(), b)
		if err != nil {
			t.Fatalf("%s revision 1: %v", v, err)
		}
		if ver != v {
			t.Fatalf("revision 1 of %s decodes as %s", v, ver)
		}
		if e := got.(*schemas.RuntimeEvent); e.Input != "" || e.EventID != ev.EventID {
			t.Fatalf("%s revision 1 decoded as %+v", v, e)
		}
	}
}
