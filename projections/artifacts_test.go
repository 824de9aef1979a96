package projections_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas/thread"
)

// TestArtifactsRedeemed: an artifact kept on the artifacts topic is served
// byte for byte with its content type, reading only the records written to
// its partition since its dispatch; an unknown id is a 404 naming what was
// read, a string that is not an id a 400; an aborted write is never served.
func TestArtifactsRedeemed(t *testing.T) {
	t.Parallel()
	brokers, l := kafkatest.Layout(t, 3)
	cl := kafkatest.Client(t, brokers, kgo.DefaultProduceTopic(string(l.Artifacts())), kgo.ProducerBatchMaxBytes(pipeline.MaxMessageBytes))
	dispatched := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	// Noise before the dispatch (older timestamps), which a lookup must skip.
	var old []*kgo.Record
	for i := range 500 {
		old = append(old, &kgo.Record{Key: []byte(thread.ArtifactID("old", string(rune('a'+i%26))+strings.Repeat("x", i), dispatched.Add(-2*time.Hour))),
			Value: []byte("old"), Timestamp: dispatched.Add(-2 * time.Hour)})
	}
	if err := cl.ProduceSync(t.Context(), old...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	id := thread.ArtifactID("trace-1", "span-1", dispatched)
	content := bytes.Repeat([]byte{0, 1, 2, 0xff, 'a'}, 220000) // 1.1 MB, binary
	rec := &kgo.Record{Key: []byte(id), Value: content, Timestamp: dispatched.Add(2 * time.Second), Headers: []kgo.RecordHeader{
		{Key: thread.HeaderContentType, Value: []byte("application/x-test")}, {Key: thread.HeaderTraceID, Value: []byte("trace-1")},
	}}
	if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	arts := projections.NewArtifacts([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l)
	got, err := arts.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Content, content) || got.ContentType != "application/x-test" || got.TraceID != "trace-1" {
		t.Fatalf("got %d bytes %q of %q, want %d bytes", len(got.Content), got.ContentType, got.TraceID, len(content))
	}
	if got.Read > 10 {
		t.Fatalf("the lookup read %d records: it scanned what was written before the dispatch", got.Read)
	}

	mux := http.NewServeMux()
	arts.Mount(mux, nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, id string
		status   int
		code     string
	}{
		{"known", id, http.StatusOK, ""},
		{"unknown", thread.ArtifactID("trace-1", "span-2", dispatched), http.StatusNotFound, "artifact_not_found"},
		{"not an id", "art-zz-nothex", http.StatusBadRequest, "bad_artifact_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/v1/artifacts/" + tc.id)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusOK {
				if !bytes.Equal(body, content) || resp.Header.Get("Content-Type") != "application/x-test" || resp.Header.Get("X-Spine-Trace-Id") != "trace-1" {
					t.Fatalf("served %d bytes as %q", len(body), resp.Header.Get("Content-Type"))
				}
				return
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code || e.Error == "" {
				t.Fatalf("error body %s, want code %s", body, tc.code)
			}
		})
	}

	// A write whose transaction aborts is never served.
	txn := kafkatest.Client(t, brokers, kgo.TransactionalID(l.Prefix+"art-txn"), kgo.DefaultProduceTopic(string(l.Artifacts())))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	aborted := thread.ArtifactID("trace-2", "span-1", dispatched)
	if err := txn.ProduceSync(t.Context(), &kgo.Record{Key: []byte(aborted), Value: []byte("never")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(t.Context(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if _, err := arts.Get(t.Context(), aborted); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("an aborted artifact: %v, want not found", err)
	}
}
