-- The tasks patch_batched.sql patches: :rows read-model rows over :owners
-- owners, numbered 1..:rows so a transaction can take a consecutive run.
CREATE TABLE patch_tasks (
    n        integer PRIMARY KEY,
    id       uuid    NOT NULL,
    owner_id uuid    NOT NULL
);
INSERT INTO patch_tasks
SELECT g, md5('patch ' || g)::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex(g % :owners + 1), 12, '0'))::uuid
FROM generate_series(1, :rows) AS g;
INSERT INTO readmodel.tasks_g1 (id, owner_id, title, description, status, priority, due_at, tags,
                                created_at, updated_at, completed_at, version)
SELECT id, owner_id, 'alpha bravo ' || n, 'made by tasklog-bench', 'todo', 'high', NULL,
       ARRAY['bench'], now(), now(), NULL, 0
FROM patch_tasks;
VACUUM ANALYZE patch_tasks, readmodel.tasks_g1;
