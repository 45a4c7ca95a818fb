-- The first page of one owner's list, newest first (the default sort
-- `-created_at`, limit 20, one extra row to know whether a next page exists),
-- as the query service's keyset paging sends it (query/src/read_model/list_sql.rs).
-- Owners are numbered 1..:owners the way rows.sql makes their ids.
\set owner random(1, :owners)
SELECT id, title, description, status, priority, priority_rank, due_at, tags,
       created_at, updated_at, completed_at, version
FROM readmodel.tasks
WHERE owner_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:owner::bigint), 12, '0'))::uuid
ORDER BY created_at DESC, id DESC
LIMIT 21;
