-- Generates a synthetic task log for measuring `tasklog-projector rebuild`.
-- Usage: psql "$DATABASE_URL" -v tasks=200000 -v per_tx=200 -f generate_log.sql
-- (the eventlog schema must exist: run any projector command once first).
-- Each task gets 5 events (created, title, status, priority, then done or
-- deleted), so tasks=200000 gives 1,000,000 events; per_tx tasks share one
-- transaction (one commit), as grouped appends would.
\set ON_ERROR_STOP on
SELECT set_config('gen.tasks', :'tasks', false), set_config('gen.per_tx', :'per_tx', false);

DO $$
DECLARE
    n_tasks int := current_setting('gen.tasks')::int;
    per_tx  int := current_setting('gen.per_tx')::int;
    n_owners int := greatest(n_tasks / 50, 1);
    owners uuid[];
    base int := 0;
BEGIN
    SELECT array_agg(gen_random_uuid()) INTO owners FROM generate_series(1, n_owners);
    WHILE base < n_tasks LOOP
        INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
        SELECT 'task-' || t.id, e.v, gen_random_uuid(), e.typ, e.sv, e.data,
               jsonb_build_object('actor_id', t.owner, 'owner_id', t.owner)
        FROM (
            SELECT gen_random_uuid() AS id, owners[1 + (i % n_owners)] AS owner, i,
                   (ARRAY['low','medium','high','urgent'])[1 + i % 4] AS prio,
                   timestamptz '2026-01-01' + make_interval(secs => i) AS at
            FROM generate_series(base, least(base + per_tx, n_tasks) - 1) AS i
        ) t
        CROSS JOIN LATERAL (VALUES
            (0, 'TaskCreated', 2::smallint, jsonb_build_object(
                'task_id', t.id, 'owner_id', t.owner, 'title', 'Task number ' || t.i,
                'description', 'Generated task ' || t.i || ' with some words to search in',
                'status', 'todo', 'priority', t.prio, 'due_at', NULL,
                'tags', jsonb_build_array('gen', 'batch' || (t.i % 10)), 'occurred_at', t.at)),
            (1, 'TaskTitleChanged', 1::smallint, jsonb_build_object(
                'title', 'Renamed task ' || t.i, 'occurred_at', t.at + interval '1 minute')),
            (2, 'TaskStatusChanged', 1::smallint, jsonb_build_object(
                'from', 'todo', 'to', 'in_progress', 'occurred_at', t.at + interval '2 minutes')),
            (3, 'TaskPriorityChanged', 1::smallint, jsonb_build_object(
                'from', t.prio, 'to', CASE WHEN t.prio = 'urgent' THEN 'low' ELSE 'urgent' END,
                'occurred_at', t.at + interval '3 minutes')),
            (4, CASE WHEN t.i % 10 = 0 THEN 'TaskDeleted' ELSE 'TaskStatusChanged' END, 1::smallint,
                CASE WHEN t.i % 10 = 0 THEN jsonb_build_object(
                        'status', 'in_progress',
                        'priority', CASE WHEN t.prio = 'urgent' THEN 'low' ELSE 'urgent' END,
                        'occurred_at', t.at + interval '4 minutes')
                     ELSE jsonb_build_object('from', 'in_progress', 'to', 'done',
                        'occurred_at', t.at + interval '4 minutes') END)
        ) AS e (v, typ, sv, data)
        ORDER BY e.v, t.i;
        COMMIT;
        base := base + per_tx;
    END LOOP;
END $$;
