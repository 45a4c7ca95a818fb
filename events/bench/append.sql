-- One single-event append per transaction, the statement the Postgres event
-- log adapter sends for a create (a batch of one, NoStream = -1), with a
-- TaskCreated payload and metadata of the size the command service writes.
-- Run with -M prepared: sqlx prepares its statements too.
SELECT outcome, stream_version, commit_position, prepare_position
FROM eventlog.append_batch(
    ARRAY['task-' || gen_random_uuid()::text],
    ARRAY[-1]::bigint[],
    ARRAY[1]::int[],
    ARRAY[gen_random_uuid()],
    ARRAY['TaskCreated']::text[],
    ARRAY[2]::smallint[],
    ARRAY[jsonb_build_object(
        'task_id', gen_random_uuid(), 'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'title', 'alpha bravo 12345', 'description', 'made by tasklog-bench',
        'status', 'todo', 'priority', 'high', 'due_at', NULL, 'tags', jsonb_build_array('bench'),
        'occurred_at', '2026-01-01T00:00:00.000000Z')],
    ARRAY[jsonb_build_object(
        'actor_id', '0190a1b2-0000-7000-8000-000000000001',
        'owner_id', '0190a1b2-0000-7000-8000-000000000001',
        'request_id', gen_random_uuid()::text)]);
