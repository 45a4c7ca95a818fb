-- The change feed (issue 23): every task event again, keyed by its owner, so
-- `GET /v1/changes`, and the SSE stream read one owner's
-- changes by index and never scan anyone else's.
--
-- Why here and not in the log: the log is the `events` crate's and its
-- adapters' (Postgres or EventStoreDB); an owner index on the Postgres
-- `events` table would serve only one adapter and tie the query service to
-- a table private to it. A projection works for either adapter, is written
-- by the projector under a lease like the other projections, and is derived
-- 1:1 from an append-only log, so it is append-only itself: `rebuild` (which
-- swaps task-row generations) leaves it alone, and a batch replayed after a
-- crash is refused by the checkpoint (and would be a no-op by the key).
--
-- Positions are the u64 bit patterns in bigints, as in `checkpoints`; log
-- order is (commit_position, prepare_position).
CREATE TABLE readmodel.changes (
    owner_id         uuid        NOT NULL,
    commit_position  bigint      NOT NULL,
    prepare_position bigint      NOT NULL,
    task_id          uuid        NOT NULL,
    version          bigint      NOT NULL,
    event_type       text        NOT NULL,
    -- As the projector decoded it: upcast to the current schema of its type.
    data             jsonb       NOT NULL,
    actor_id         uuid,
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (owner_id, commit_position, prepare_position)
);

-- `task_id=` filter: one task's changes (one owner's by construction).
CREATE INDEX changes_task ON readmodel.changes (task_id, commit_position, prepare_position);

INSERT INTO readmodel.checkpoints (projection, commit_position, prepare_position)
VALUES ('changes', 0, 0);
