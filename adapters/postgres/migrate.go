package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
)

// Migration is one versioned change of the sink's schema. Migrations are
// applied in version order, each once, in its own transaction with its
// row in schema_migrations.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations are the sink's schema, oldest first. Never edit an applied
// one: add the next version.
var Migrations = []Migration{
	{1, "thread tables", `
CREATE TABLE events (
	topic            text        NOT NULL,
	partition        integer     NOT NULL,
	kafka_offset     bigint      NOT NULL,
	event_id         text        NOT NULL,
	trace_id         text        NOT NULL,
	span_id          text        NOT NULL,
	parent_span_id   text        NOT NULL,
	event_type       text        NOT NULL,
	phase            text        NOT NULL,
	state            text        NOT NULL,
	actor            text        NOT NULL,
	kind             text        NOT NULL,
	tenant           text        NOT NULL,
	route            text        NOT NULL,
	contract_version text        NOT NULL,
	attempt          integer     NOT NULL,
	artifact_id      text        NOT NULL,
	error            text,
	at               timestamptz NOT NULL,
	run_started      timestamptz,
	provenance_issuer  text,
	provenance_subject text,
	input_bytes      integer     NOT NULL,
	body             jsonb       NOT NULL,
	PRIMARY KEY (topic, partition, kafka_offset)
);
CREATE INDEX events_trace_id ON events (trace_id, at);
CREATE INDEX events_event_id ON events (event_id);
CREATE INDEX events_type_at ON events (event_type, at);

CREATE TABLE gates (
	topic            text        NOT NULL,
	partition        integer     NOT NULL,
	kafka_offset     bigint      NOT NULL,
	event_id         text        NOT NULL,
	trace_id         text        NOT NULL,
	gate             text        NOT NULL,
	event_type       text        NOT NULL,
	passed           boolean     NOT NULL,
	reason           text        NOT NULL,
	measured         double precision NOT NULL,
	threshold        double precision NOT NULL,
	rule             text        NOT NULL,
	policy_version   text        NOT NULL,
	evidence         jsonb       NOT NULL,
	route            text        NOT NULL,
	contract_version text        NOT NULL,
	kind             text        NOT NULL,
	at               timestamptz NOT NULL,
	PRIMARY KEY (topic, partition, kafka_offset)
);
CREATE INDEX gates_trace_id ON gates (trace_id);
CREATE INDEX gates_gate_at ON gates (gate, at);

CREATE TABLE artifacts (
	artifact_id       text        PRIMARY KEY,
	trace_id          text        NOT NULL,
	content_type      text        NOT NULL,
	size_bytes        bigint      NOT NULL,
	content           bytea,
	content_truncated boolean     NOT NULL,
	topic             text        NOT NULL,
	partition         integer     NOT NULL,
	kafka_offset      bigint      NOT NULL,
	written_at        timestamptz NOT NULL
);
CREATE INDEX artifacts_trace_id ON artifacts (trace_id);

CREATE TABLE runs (
	trace_id           text        PRIMARY KEY,
	kind               text        NOT NULL,
	actor              text        NOT NULL,
	tenant             text        NOT NULL,
	provenance_issuer  text,
	provenance_subject text,
	route              text        NOT NULL,
	contract_version   text        NOT NULL,
	state              text        NOT NULL,
	attempts           integer     NOT NULL,
	outcome            text,
	error              text,
	artifact_id        text        NOT NULL,
	run_started        timestamptz,
	received_at        timestamptz,
	dispatched_at      timestamptz,
	delivered_at       timestamptz,
	gated_at           timestamptz,
	outcome_at         timestamptz,
	duration_ms        bigint,
	events             integer     NOT NULL,
	last_event         text        NOT NULL,
	last_at            timestamptz NOT NULL
);
CREATE INDEX runs_outcome_at ON runs (outcome_at);
CREATE INDEX runs_route_outcome_at ON runs (route, outcome_at);
CREATE INDEX runs_kind_outcome ON runs (kind, outcome);

CREATE TABLE kafka_offsets (
	group_id    text        NOT NULL,
	topic       text        NOT NULL,
	partition   integer     NOT NULL,
	next_offset bigint      NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_id, topic, partition)
);
`},
}

// lockKey is the advisory lock taken around migrating schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("spine-pgsink-migrate:" + schema))
	return int64(h.Sum64())
}

// Migrate creates schema if needed and applies the migrations it lacks,
// under a session advisory lock so that instances starting at once
// migrate one after the other (the second finds nothing to do). It
// returns the versions it applied.
func Migrate(ctx context.Context, conn *pgx.Conn, schema string) ([]int, error) {
	key := lockKey(schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return nil, fmt.Errorf("lock for migrating: %w", err)
	}
	defer func() {
		// A closed connection releases the lock itself.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	}()
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+q+`.schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("create %s.schema_migrations: %w", schema, err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM "+q+".schema_migrations")
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", schema, err)
	}
	for _, v := range vs {
		applied[v] = true
	}
	var done []int
	for _, m := range Migrations {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+q); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("migration %d (%s) in schema %s: %w", m.Version, m.Name, schema, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}
