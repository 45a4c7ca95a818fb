-- The SQL work one create causes, without HTTP, tokens, sealing or
-- batching, one transaction each: the event row into the log's own table
-- (its four indexes), the task's read-model row (its ten indexes) and its
-- change-feed row. Not what Tasklog sends (it batches appends and
-- projections, and adds checkpoints and notifications): the database's own
-- ceiling for the rows a create writes, beside pgbench_insert's one row.
-- Needs the events and readmodel migrations (bench/limits.sh applies them).
-- Run with -M prepared.
\set owner random(1, 2000)
BEGIN;
INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
VALUES ('task-' || gen_random_uuid()::text, 0, gen_random_uuid(), 'TaskCreated', 2,
    jsonb_build_object(
        'task_id', gen_random_uuid(), 'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'title', 'alpha bravo 12345', 'description', 'made by tasklog-bench',
        'status', 'todo', 'priority', 'high', 'due_at', NULL, 'tags', jsonb_build_array('bench'),
        'occurred_at', '2026-01-01T00:00:00.000000Z'),
    jsonb_build_object(
        'actor_id', '0190a1b2-0000-7000-8000-000000000001',
        'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'request_id', gen_random_uuid()::text));
INSERT INTO readmodel.tasks (id, owner_id, title, description, status, priority, due_at, tags,
                             created_at, updated_at, completed_at, version)
VALUES (gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(:owner::text, 12, '0'))::uuid,
        'alpha bravo 12345', 'made by tasklog-bench', 'todo', 'high', NULL, ARRAY['bench'],
        now(), now(), NULL, 0);
INSERT INTO readmodel.changes (owner_id, commit_position, prepare_position, task_id, version,
                               event_type, data, actor_id, recorded_at)
VALUES (('00000000-0000-7000-8000-' || lpad(:owner::text, 12, '0'))::uuid,
        (random() * 9e18)::bigint, (random() * 9e18)::bigint, gen_random_uuid(), 0, 'TaskCreated',
        jsonb_build_object('title', 'alpha bravo 12345', 'status', 'todo', 'priority', 'high'),
        NULL, now());
END;
