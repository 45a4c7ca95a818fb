-- :rows TaskCreated events, one stream each, over :owners owners: the same
-- tasks rows.sql makes, as events, so `projector rebuild` can be timed
-- against COPY of the same rows. One statement is one transaction, which the
-- log's ordering rules allow (one tx_id, positions in order).
INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
SELECT 'task-' || t.id, 0, md5('event' || t.g)::uuid, 'TaskCreated', 2,
       jsonb_build_object(
           'task_id', t.id, 'owner_id', t.owner,
           'title', (array['alpha','bravo','charlie','delta','echo','foxtrot','golf','hotel'])[t.g % 8 + 1]
               || ' ' || (array['report','review','call','fix','plan'])[t.g % 5 + 1] || ' ' || t.g,
           'description', 'seeded task ' || t.g,
           'status', (array['todo','in_progress','done'])[t.g % 3 + 1],
           'priority', (array['low','medium','high','urgent'])[t.g % 4 + 1],
           'due_at', CASE WHEN t.g % 2 = 0 THEN timestamptz '2026-06-01' + t.g * interval '1 minute' END,
           'tags', jsonb_build_array((array['home','work','bench','later'])[t.g % 4 + 1]),
           'occurred_at', timestamptz '2025-01-01' + t.g * interval '1 second'),
       jsonb_build_object('actor_id', t.owner, 'owner_id', t.owner)
FROM (
    SELECT g, md5(g::text)::uuid AS id,
           ('00000000-0000-4000-8000-' || lpad(to_hex(g % :owners + 1), 12, '0'))::uuid AS owner
    FROM generate_series(1, :rows) AS g
) AS t;

-- Fresh statistics for the replay that follows.
VACUUM ANALYZE eventlog.events;
