package dataplane_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestArtifactKept: the dispatch's input and idempotency key reach the
// executor, and the artifact's whole content is produced, byte for byte,
// to the artifacts topic under the id artifact.delivered names, in the same
// result (so the same transaction).
func TestArtifactKept(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("résumé ✓\x00\xff"), 100000) // 1.3 MB, not UTF-8
	var got dataplane.Request
	d := newDP(t, dataplane.Config{
		MaxArtifactBytes: 2 << 20,
		Executor: dataplane.ExecutorFunc(func(_ context.Context, req dataplane.Request) (dataplane.Result, error) {
			got = req
			return dataplane.Result{ContentType: "application/x-test", Content: content}, nil
		}),
	})
	for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
		disp := dispatch("tr-art", 1, thread.RouteBaseline)
		disp.SchemaVersion = v
		disp.Input = strings.Repeat("in ✓", 1000)
		res := pipeline.Result{Outputs: run(t, d, disp, v)}
		if string(got.Input) != disp.Input || got.IdempotencyKey != dataplane.IdempotencyKey("tr-art", disp.SpanID) || got.IdempotencyKey == "" {
			t.Fatalf("%s: executor got input %d bytes, key %q", v, len(got.Input), got.IdempotencyKey)
		}
		var delivered *schemas.RuntimeEvent
		var art *pipeline.Output
		for i, o := range res.Outputs {
			switch {
			case o.Topic == "t.spine.artifacts":
				art = &res.Outputs[i]
			case o.Value.(*schemas.RuntimeEvent).EventType == thread.ArtifactDelivered:
				delivered = o.Value.(*schemas.RuntimeEvent)
			}
		}
		if delivered == nil || art == nil {
			t.Fatalf("%s: outputs lack artifact.delivered or the artifact record: %+v", v, res.Outputs)
		}
		if string(art.Key) != delivered.ArtifactID || !bytes.Equal(art.Raw, content) {
			t.Fatalf("%s: artifact record key %q (event says %q), %d bytes (want %d)", v, art.Key, delivered.ArtifactID, len(art.Raw), len(content))
		}
		hdr := map[string]string{}
		for _, h := range art.Headers {
			hdr[h.Key] = string(h.Value)
		}
		if hdr[thread.HeaderContentType] != "application/x-test" || hdr[thread.HeaderTraceID] != "tr-art" {
			t.Fatalf("%s: artifact headers %v", v, hdr)
		}
		if delivered.Artifact.SizeBytes != int64(len(content)) || len(delivered.Artifact.Summary) > schemas.MaxSummaryBytes {
			t.Fatalf("%s: summary %+v", v, delivered.Artifact)
		}
	}
}

// TestArtifactTooLarge: content over the limit fails the call, not
// retryable, and nothing is kept.
func TestArtifactTooLarge(t *testing.T) {
	t.Parallel()
	d := newDP(t, dataplane.Config{
		MaxArtifactBytes: 10,
		Executor: dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
			return dataplane.Result{ContentType: "text/plain", Content: []byte("eleven byte")}, nil
		}),
	})
	disp := dispatch("tr-big", 0, thread.RouteBaseline)
	res := pipeline.Result{Outputs: run(t, d, disp, schemas.V1)}
	last := res.Outputs[len(res.Outputs)-1]
	ev := last.Value.(*schemas.RuntimeEvent)
	if ev.EventType != thread.DataplaneFailed || ev.Error == nil || !strings.HasPrefix(*ev.Error, dataplane.KindArtifactTooLarge+": ") {
		t.Fatalf("last output %s %v, want dataplane.failed artifact_too_large", ev.EventType, ev.Error)
	}
	for _, o := range res.Outputs {
		if o.Raw != nil {
			t.Fatalf("an artifact over the limit was kept on %s", o.Topic)
		}
	}
	if _, err := dataplane.New(pipeline.Layout{}, dataplane.Config{Executor: d2(), MaxArtifactBytes: thread.MaxArtifactBytes + 1}); err == nil {
		t.Fatal("a limit over the ceiling was accepted")
	}
}

func d2() dataplane.Executor {
	return dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
		return dataplane.Result{}, nil
	})
}
