-- readmodel.tasks as READMODEL.md specifies it (columns and indexes), for
-- measuring the list query and COPY before the projector's migrations are
-- available. limits.sh uses projector/migrations instead when they exist.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE SCHEMA IF NOT EXISTS readmodel;
CREATE TABLE readmodel.tasks (
    id            uuid PRIMARY KEY,
    owner_id      uuid        NOT NULL,
    title         text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    status        text        NOT NULL,
    priority      text        NOT NULL,
    priority_rank smallint    NOT NULL,
    due_at        timestamptz,
    tags          text[]      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    version       bigint      NOT NULL,
    search        text        NOT NULL
);
CREATE INDEX tasks_owner_created ON readmodel.tasks (owner_id, created_at, id);
CREATE INDEX tasks_owner_updated ON readmodel.tasks (owner_id, updated_at, id);
CREATE INDEX tasks_owner_due ON readmodel.tasks (owner_id, due_at, id);
CREATE INDEX tasks_owner_priority ON readmodel.tasks (owner_id, priority_rank, id);
CREATE INDEX tasks_owner_title ON readmodel.tasks (owner_id, (title COLLATE "C"), id);
CREATE INDEX tasks_owner_status ON readmodel.tasks (owner_id, status);
CREATE INDEX tasks_tags ON readmodel.tasks USING gin (tags);
CREATE INDEX tasks_search ON readmodel.tasks USING gin (search gin_trgm_ops);
