-- The rows of BATCH patches (default 32) in one transaction, as Tasklog
-- batches them: the title-change events into the log's own table, the
-- projector's read of the tasks' current rows, its upsert of the changed
-- rows (the same ON CONFLICT statement, so every patch rewrites a row whose
-- updated_at is indexed: no HOT update, every index gets an entry) and the
-- change-feed rows. Without HTTP, sealing, the expected-version and event-id
-- checks, checkpoints, NOTIFY or reading the log back: an upper bound on the
-- patches/s the database allows for a patch's rows when every
-- per-transaction cost is shared, so patches/s = tps x BATCH. The tasks are
-- the patch_tasks seeded by bench/limits.sh (ROWS of them); a transaction
-- patches BATCH consecutive ones, in id order, so two clients never
-- deadlock. Run with -M prepared.
\set first random(1, :rows - :batch + 1)
\set last :first + :batch - 1
BEGIN;
INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
SELECT 'task-' || p.id, 1 + :first % 1000, gen_random_uuid(), 'TaskTitleChanged', 1,
    jsonb_build_object('task_id', p.id, 'title', 'charlie delta ' || p.n || ' ' || :first,
                       'occurred_at', '2026-01-01T00:00:00.000000Z'),
    jsonb_build_object(
        'actor_id', '0190a1b2-0000-7000-8000-000000000001',
        'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'request_id', gen_random_uuid()::text)
FROM patch_tasks AS p
WHERE p.n BETWEEN :first AND :last
ON CONFLICT DO NOTHING;
SELECT t.id, t.owner_id, t.title, t.description, t.status, t.priority, t.due_at, t.tags,
       t.created_at, t.updated_at, t.completed_at, t.version
FROM readmodel.tasks_g1 AS t
WHERE t.id = ANY (ARRAY(SELECT id FROM patch_tasks WHERE n BETWEEN :first AND :last));
INSERT INTO readmodel.tasks_g1 (id, owner_id, title, description, status, priority, due_at, tags,
                                created_at, updated_at, completed_at, version)
SELECT t.id, t.owner_id, 'charlie delta ' || p.n || ' ' || :first, t.description, t.status,
       t.priority, t.due_at, t.tags, t.created_at, now(), t.completed_at, t.version + 1
FROM patch_tasks AS p JOIN readmodel.tasks_g1 AS t ON t.id = p.id
WHERE p.n BETWEEN :first AND :last
ORDER BY p.n
ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id, title = EXCLUDED.title,
    description = EXCLUDED.description, status = EXCLUDED.status,
    priority = EXCLUDED.priority, due_at = EXCLUDED.due_at, tags = EXCLUDED.tags,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    completed_at = EXCLUDED.completed_at, version = EXCLUDED.version
WHERE readmodel.tasks_g1.version < EXCLUDED.version;
INSERT INTO readmodel.changes (owner_id, commit_position, prepare_position, task_id, version,
                               event_type, data, actor_id, recorded_at)
SELECT p.owner_id, (random() * 9e18)::bigint, (random() * 9e18)::bigint, p.id, 1,
       'TaskTitleChanged', jsonb_build_object('title', 'charlie delta ' || p.n), NULL, now()
FROM patch_tasks AS p
WHERE p.n BETWEEN :first AND :last;
END;
