package postgres

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/postgres/pgtest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// A writer whose view of a partition's offset is stale — another instance
// wrote the partition since it was assigned — is fenced: its transaction
// rolls back whole, no row of the batch lands, and the offsets row keeps
// the other instance's value. A writer with the right view writes.
func TestFenceRefusesAStaleOwner(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	url := srv.CreateDB(t)
	ctx := t.Context()
	s, err := New(SinkConfig{Config: Config{URL: Secret(url), Schema: "spine", BatchRecords: 10}, Layout: pipeline.Layout{Prefix: "f."}, Codec: nopCodec{}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := s.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := Migrate(ctx, db, "spine"); err != nil {
		t.Fatal(err)
	}
	if err := prepareStaging(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO kafka_offsets (group_id, topic, partition, next_offset) VALUES ('g', 'f.spine.control', 0, 10)"); err != nil {
		t.Fatal(err)
	}
	ss := &session{s: s, db: db}
	k := tp{"f.spine.control", 0}
	odd := "nul\x00inside"
	ev := &schemas.RuntimeEvent{EventID: "e1", TraceID: "t1", EventType: "intent.received", Phase: schemas.PhaseControl,
		Error: &odd, Artifact: &schemas.ArtifactSummary{Score: math.NaN()},
		Gate: &schemas.GateOutcome{Name: odd, Measured: math.Inf(1), Evidence: map[string]string{odd: odd}}}
	batchAt := func(expected, offset int64) *batch {
		row, err := eventRow(&kgo.Record{Topic: k.topic, Partition: 0, Offset: offset}, ev, schemas.V1)
		if err != nil {
			t.Fatal(err)
		}
		g, err := gateRow(&kgo.Record{Topic: k.topic, Partition: 0, Offset: offset}, "spine.control", ev, schemas.V1)
		if err != nil {
			t.Fatal(err)
		}
		return &batch{events: [][]any{row}, gates: [][]any{g}, traces: map[string]bool{"t1": true},
			expected: map[tp]int64{k: expected}, next: map[tp]int64{k: offset + 1}}
	}
	// Stale: this writer thinks the partition is at 5.
	if err := ss.commit(ctx, batchAt(5, 5)); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale writer: %v, want ErrFenced", err)
	}
	var events, runs, next int64
	check := func() {
		t.Helper()
		for q, dst := range map[string]*int64{"SELECT count(*) FROM events": &events, "SELECT count(*) FROM runs": &runs,
			"SELECT next_offset FROM kafka_offsets WHERE group_id = 'g'": &next} {
			if err := db.QueryRow(ctx, q).Scan(dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	check()
	if events != 0 || runs != 0 || next != 10 {
		t.Fatalf("after a fenced batch: %d events, %d runs, next offset %d; want 0, 0, 10", events, runs, next)
	}
	// The owner's view is right: it writes.
	if err := ss.commit(ctx, batchAt(10, 12)); err != nil {
		t.Fatalf("owner: %v", err)
	}
	check()
	if events != 1 || runs != 1 || next != 13 {
		t.Fatalf("after the owner's batch: %d events, %d runs, next offset %d; want 1, 1, 13", events, runs, next)
	}
	// The staging tables are empty again after the commit.
	var staged int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM stage_events").Scan(&staged); err != nil || staged != 0 {
		t.Errorf("stage_events holds %d rows (%v) after commit", staged, err)
	}
}

type nopCodec struct{}

func (nopCodec) Decode(context.Context, pipeline.Topic, []byte) (any, schemas.ContractVersion, error) {
	return nil, 0, errors.New("nop")
}

func (nopCodec) Encode(context.Context, pipeline.Topic, schemas.ContractVersion, any) ([]byte, error) {
	return nil, errors.New("nop")
}
