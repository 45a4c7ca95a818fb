-- The plain reference for an append: one INSERT of a TaskCreated-sized jsonb
-- event (about 300 bytes, as events/bench/append.sql sends) into a table with a primary
-- key and a stream index, one transaction each (bench/pgbench/insert_table.sql).
-- No expected-version or event-id check, no function: what the server can
-- commit when the write does nothing else. Run with -M prepared.
INSERT INTO plain_events (stream_id, data)
VALUES ('task-' || gen_random_uuid()::text, jsonb_build_object(
    'task_id', gen_random_uuid(), 'owner_id', '0190a1b2-0000-7000-8000-000000000001',
    'title', 'alpha bravo 12345', 'description', 'made by tasklog-bench',
    'status', 'todo', 'priority', 'high', 'due_at', NULL, 'tags', jsonb_build_array('bench'),
    'occurred_at', '2026-01-01T00:00:00.000000Z',
    'actor_id', '0190a1b2-0000-7000-8000-000000000001',
    'request_id', gen_random_uuid()::text));
