-- The rows of BATCH creates (default 32) in one transaction, each table
-- written by one multi-row INSERT, as Tasklog batches them (the append
-- worker's batch, then the projector's): the event rows into the log's own
-- table, the read-model rows (ten indexes) and the change-feed rows. Without
-- HTTP, sealing, the expected-version and event-id checks, checkpoints,
-- NOTIFY or reading the log back: an upper bound on the creates/s the
-- database allows for a create's rows when every per-transaction cost is
-- shared, so creates/s = tps x BATCH. Needs the events and readmodel
-- migrations (bench/limits.sh applies them). Run with -M prepared.
\set owner random(1, 2000)
BEGIN;
INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
SELECT 'task-' || gen_random_uuid()::text, 0, gen_random_uuid(), 'TaskCreated', 2,
    jsonb_build_object(
        'task_id', gen_random_uuid(), 'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'title', 'alpha bravo ' || g, 'description', 'made by tasklog-bench',
        'status', 'todo', 'priority', 'high', 'due_at', NULL, 'tags', jsonb_build_array('bench'),
        'occurred_at', '2026-01-01T00:00:00.000000Z'),
    jsonb_build_object(
        'actor_id', '0190a1b2-0000-7000-8000-000000000001',
        'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'request_id', gen_random_uuid()::text)
FROM generate_series(1, :batch) AS g;
INSERT INTO readmodel.tasks (id, owner_id, title, description, status, priority, due_at, tags,
                             created_at, updated_at, completed_at, version)
SELECT gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(((:owner + g) % 2000)::text, 12, '0'))::uuid,
       'alpha bravo ' || g, 'made by tasklog-bench', 'todo', 'high', NULL, ARRAY['bench'],
       now(), now(), NULL, 0
FROM generate_series(1, :batch) AS g;
INSERT INTO readmodel.changes (owner_id, commit_position, prepare_position, task_id, version,
                               event_type, data, actor_id, recorded_at)
SELECT ('00000000-0000-7000-8000-' || lpad(((:owner + g) % 2000)::text, 12, '0'))::uuid,
       (random() * 9e18)::bigint, (random() * 9e18)::bigint, gen_random_uuid(), 0, 'TaskCreated',
       jsonb_build_object('title', 'alpha bravo ' || g, 'status', 'todo', 'priority', 'high'),
       NULL, now()
FROM generate_series(1, :batch) AS g;
END;
