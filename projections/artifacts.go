package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas/thread"
)

// Artifact is an artifact's content as the data plane kept it, redeemed by
// its claim check.
type Artifact struct {
	ID          string
	TraceID     string
	ContentType string
	Content     []byte
	// Partition and Offset are where it was found on the artifacts topic;
	// Read is how many records the lookup read to find it.
	Partition int32
	Offset    int64
	Read      int
}

// Artifacts redeems artifact ids against the artifacts topic
// (pipeline.Layout.Artifacts). A lookup reads one partition (the one the id
// hashes to) from the offset of the dispatch time the id carries, so its
// cost does not grow with the topic. It is safe for concurrent use.
type Artifacts struct {
	kafka  []kgo.Opt
	topic  pipeline.Topic
	lookup time.Duration
}

// Clock skew allowed between the process that wrote an artifact and the
// one that dispatched it: the lookup starts this much before the dispatch
// time the id carries.
const artifactSkew = time.Minute

// NewArtifacts returns a reader of layout's artifacts topic through a
// client built from kafka (seed brokers, SASL, TLS). It does no I/O.
func NewArtifacts(kafka []kgo.Opt, layout pipeline.Layout) *Artifacts {
	return &Artifacts{kafka: kafka, topic: layout.Artifacts(), lookup: 15 * time.Second}
}

// ErrBadArtifactID is returned for a string that is not an artifact id.
var ErrBadArtifactID = thread.ErrNotArtifactID

// Get returns the artifact id names: ErrNotFound (wrapped, with what was
// read) when no committed record has the id, ErrBadArtifactID when id is
// not an artifact id.
func (a *Artifacts) Get(ctx context.Context, id string) (Artifact, error) {
	at, err := thread.ParseArtifactID(id)
	if err != nil {
		return Artifact{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.lookup)
	defer cancel()
	f, err := pipeline.FindKey(ctx, a.kafka, a.topic, []byte(id), at.Add(-artifactSkew))
	if errors.Is(err, pipeline.ErrKeyNotFound) {
		return Artifact{}, fmt.Errorf("artifact %s: %w: no committed record with this id on %s from offset %d (%d records read): it was never delivered, or it has expired", id, ErrNotFound, a.topic, f.From, f.Read)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("look up artifact %s: %w", id, err)
	}
	r := f.Record
	out := Artifact{ID: id, Content: r.Value, Partition: r.Partition, Offset: r.Offset, Read: f.Read, ContentType: "application/octet-stream"}
	if out.Content == nil {
		out.Content = []byte{}
	}
	for _, h := range r.Headers {
		switch h.Key {
		case thread.HeaderContentType:
			out.ContentType = string(h.Value)
		case thread.HeaderTraceID:
			out.TraceID = string(h.Value)
		}
	}
	return out, nil
}

// Mount adds GET /v1/artifacts/{artifact_id} to mux: the artifact's bytes
// with its content type, or a JSON error (400 for a string that is not an
// artifact id, 404 with the reason for an unknown one). Headers say where
// it was found: X-Spine-Trace-Id, X-Spine-Artifact-Location
// (topic/partition@offset) and X-Spine-Records-Read.
func (a *Artifacts) Mount(mux *http.ServeMux, log *slog.Logger) {
	mux.HandleFunc("GET /v1/artifacts/{artifact_id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("artifact_id")
		art, err := a.Get(r.Context(), id)
		switch {
		case errors.Is(err, ErrBadArtifactID):
			writeErr(w, http.StatusBadRequest, "bad_artifact_id", err)
			return
		case errors.Is(err, ErrNotFound):
			writeErr(w, http.StatusNotFound, "artifact_not_found", err)
			return
		case err != nil:
			if log != nil {
				log.Warn("artifact lookup failed", "artifact_id", id, "err", err)
			}
			writeErr(w, http.StatusServiceUnavailable, "unavailable", err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", art.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(art.Content)))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "private, max-age=3600, immutable") // an id names one content forever
		h.Set("X-Spine-Trace-Id", art.TraceID)
		h.Set("X-Spine-Artifact-Location", fmt.Sprintf("%s/%d@%d", a.topic, art.Partition, art.Offset))
		h.Set("X-Spine-Records-Read", strconv.Itoa(art.Read))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(art.Content)
	})
}
