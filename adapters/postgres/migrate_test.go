package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/adapters/postgres/pgtest"
)

// Migrations are applied once, whoever runs them and however many run at
// once: eight connections migrate the same fresh database concurrently
// (under the advisory lock), one applies every version, the others none,
// and a later run applies nothing.
func TestMigrateOnceConcurrently(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	url := srv.CreateDB(t)
	ctx := t.Context()
	const n = 8
	applied := make([][]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(context.Background())
			applied[i], errs[i] = postgres.Migrate(ctx, conn, "spine")
		})
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(postgres.Migrations) {
		t.Errorf("%d migrations applied in all, want %d (each once): %v", total, len(postgres.Migrations), applied)
	}
	conn := connect(t, url, "spine")
	if got, err := postgres.Migrate(ctx, conn, "spine"); err != nil || len(got) != 0 {
		t.Errorf("migrating again applied %v, %v; want nothing", got, err)
	}
	var versions int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&versions); err != nil || versions != len(postgres.Migrations) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", versions, err, len(postgres.Migrations))
	}
	for _, table := range []string{"runs", "events", "gates", "artifacts", "kafka_offsets"} {
		if _, err := conn.Exec(ctx, "SELECT 1 FROM "+table+" LIMIT 1"); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}
