package postgres

// lockRuns takes the transaction's advisory locks on the runs of the
// traces in $1, in one order (so two writers never deadlock), bucketed so
// that a batch holds at most 1024 locks. One run's events can be written by
// two instances at once (its partition of spine.control owned by one, of
// gate.verdict by the other): with the lock, the second recomputes the run
// after the first committed, in a statement whose snapshot sees the first's
// events (READ COMMITTED takes one per statement).
const lockRuns = `
SELECT count(pg_advisory_xact_lock(21328, b)) FROM (
	SELECT DISTINCT abs(hashtext(t) % 1024) AS b FROM unnest($1::text[]) AS t ORDER BY b
) AS s`

// upsertRuns recomputes the runs row of every trace in $1 from its events
// (the events of the canary analysis topic $2 and drift windows excluded), the way the
// projections merge a run (projections.MergeRun): the control plane is the
// authority for state, outcome and route; hops keep their earliest time;
// the outcome is the first terminal event. Recomputing from the events
// makes the row independent of the order partitions are written in.
const upsertRuns = `
WITH e AS (
	-- lk orders an event last-wins (control plane first, then the latest
	-- offset), fk first-wins (control plane first, then the earliest): a
	-- fixed-width prefix, so max/min of prefix||value picks the value of
	-- the event that wins, in one pass without a sort per field.
	SELECT trace_id, kind, actor, tenant, provenance_issuer, provenance_subject, route, contract_version, state,
		attempt, event_type, at, error, artifact_id, run_started, phase = 'control_plane' AS ctl,
		CASE WHEN phase = 'control_plane' THEN '1' ELSE '0' END || lpad(kafka_offset::text, 20, '0') AS lk,
		CASE WHEN phase = 'control_plane' THEN '0' ELSE '1' END || lpad(kafka_offset::text, 20, '0') AS fk
	FROM events
	WHERE trace_id = ANY($1::text[]) AND trace_id <> '' AND trace_id NOT LIKE 'drift/%' AND topic <> $2
), a AS (
	SELECT trace_id,
		coalesce(substr(max(lk || kind) FILTER (WHERE kind <> ''), 22), '') AS kind,
		coalesce(substr(max(lk || actor) FILTER (WHERE actor <> ''), 22), '') AS actor,
		coalesce(substr(max(lk || tenant) FILTER (WHERE tenant <> ''), 22), '') AS tenant,
		substr(max(lk || provenance_issuer), 22) AS provenance_issuer,
		substr(max(lk || provenance_subject), 22) AS provenance_subject,
		substr(max(lk || route), 22) AS route,
		substr(max(lk || contract_version), 22) AS contract_version,
		coalesce(substr(max(lk || state) FILTER (WHERE ctl), 22), '') AS state,
		max(attempt) AS attempts,
		CASE substr(min(fk || event_type) FILTER (WHERE event_type IN ('run.completed', 'run.rejected', 'run.failed', 'run.timed_out')), 22)
			WHEN 'run.completed' THEN 'completed' WHEN 'run.rejected' THEN 'rejected'
			WHEN 'run.failed' THEN 'failed' WHEN 'run.timed_out' THEN 'timed_out' END AS outcome,
		to_timestamp(substr(min(fk || lpad((extract(epoch FROM at) * 1000)::bigint::text, 16, '0'))
			FILTER (WHERE event_type IN ('run.completed', 'run.rejected', 'run.failed', 'run.timed_out')), 22)::bigint / 1000.0) AS outcome_at,
		substr(max(lk || error), 22) AS error,
		coalesce(substr(max(lk || artifact_id) FILTER (WHERE artifact_id <> ''), 22), '') AS artifact_id,
		min(run_started) AS run_started,
		min(at) FILTER (WHERE event_type = 'intent.received') AS received_at,
		min(at) FILTER (WHERE event_type = 'dataplane.dispatched') AS dispatched_at,
		min(at) FILTER (WHERE event_type = 'artifact.delivered') AS delivered_at,
		min(at) FILTER (WHERE event_type IN ('gate.passed', 'gate.failed')) AS gated_at,
		count(*) AS events,
		substr(max(lpad((extract(epoch FROM at) * 1000)::bigint::text, 16, '0') || lk || event_type), 38) AS last_event,
		max(at) AS last_at
	FROM e GROUP BY trace_id
)
INSERT INTO runs AS r (trace_id, kind, actor, tenant, provenance_issuer, provenance_subject, route, contract_version,
	state, attempts, outcome, error, artifact_id, run_started, received_at, dispatched_at, delivered_at, gated_at,
	outcome_at, duration_ms, events, last_event, last_at)
SELECT trace_id, kind, actor, tenant, provenance_issuer, provenance_subject, route, contract_version,
	state, attempts, outcome, error, artifact_id, run_started, received_at, dispatched_at, delivered_at, gated_at,
	outcome_at,
	CASE WHEN outcome_at IS NOT NULL AND run_started IS NOT NULL
		THEN (extract(epoch FROM outcome_at - run_started) * 1000)::bigint END,
	events, last_event, last_at
FROM a
ON CONFLICT (trace_id) DO UPDATE SET
	kind = excluded.kind, actor = excluded.actor, tenant = excluded.tenant,
	provenance_issuer = excluded.provenance_issuer, provenance_subject = excluded.provenance_subject,
	route = excluded.route, contract_version = excluded.contract_version, state = excluded.state,
	attempts = excluded.attempts, outcome = excluded.outcome, error = excluded.error,
	artifact_id = excluded.artifact_id, run_started = excluded.run_started,
	received_at = excluded.received_at, dispatched_at = excluded.dispatched_at,
	delivered_at = excluded.delivered_at, gated_at = excluded.gated_at, outcome_at = excluded.outcome_at,
	duration_ms = excluded.duration_ms, events = excluded.events, last_event = excluded.last_event,
	last_at = excluded.last_at`

// fenceOffsets moves each partition's next offset from the value this
// instance read ($4) to the batch's next ($5). A partition whose row holds
// another value was written by another instance since (this one no longer
// owns it): fewer rows are updated than partitions, and the transaction is
// rolled back. The row locks it takes serialise two writers of one
// partition; the second then finds the value changed.
const fenceOffsets = `
UPDATE kafka_offsets o SET next_offset = v.next, updated_at = now()
FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS v(topic, partition, expected, next)
WHERE o.group_id = $1 AND o.topic = v.topic AND o.partition = v.partition AND o.next_offset = v.expected`

// claimOffsets makes sure every assigned partition has an offsets row (-1:
// from the start of the partition) and returns them all.
const claimOffsets = `
WITH ins AS (
	INSERT INTO kafka_offsets (group_id, topic, partition, next_offset)
	SELECT $1, t, p, -1 FROM unnest($2::text[], $3::int[]) AS v(t, p)
	ON CONFLICT DO NOTHING
)
SELECT topic, partition, next_offset FROM kafka_offsets
WHERE group_id = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))`
