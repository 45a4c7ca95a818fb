-- The read model the query service reads (see READMODEL.md).
--
-- Rows live in a generation table `readmodel.tasks_g<n>`; `readmodel.tasks` is a
-- simple view over the current one, so `rebuild` can fill a fresh generation
-- while the old one serves and then swap the view in one transaction. The DDL
-- of a generation lives here, in two functions, so the first generation and
-- every rebuilt one are the same.

-- Trigram indexes for substring search. In public so every schema sees the
-- operator class (migrations run with search_path = readmodel, public).
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

-- One row per projection. `generation` says which tasks_g<n> the position
-- belongs to; the projector locks this row at the start of every batch, which
-- fences out a second writer and a concurrent rebuild's swap.
CREATE TABLE readmodel.checkpoints (
    projection       text        PRIMARY KEY,
    commit_position  bigint      NOT NULL,
    prepare_position bigint      NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    generation       integer     NOT NULL DEFAULT 1
);

-- Creates the (empty, index-less) table of generation p_gen.
CREATE FUNCTION readmodel.create_generation(p_gen integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE readmodel.%I (
            id            uuid        NOT NULL,
            owner_id      uuid        NOT NULL,
            title         text        NOT NULL,
            description   text        NOT NULL DEFAULT '',
            status        text        NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
            priority      text        NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
            priority_rank smallint    NOT NULL GENERATED ALWAYS AS (
                CASE priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END
            ) STORED,
            due_at        timestamptz,
            tags          text[]      NOT NULL,
            created_at    timestamptz NOT NULL,
            updated_at    timestamptz NOT NULL,
            completed_at  timestamptz,
            version       bigint      NOT NULL,
            search        text        NOT NULL GENERATED ALWAYS AS (lower(title || ' ' || description)) STORED
        )$ddl$, 'tasks_g' || p_gen);
END $$;

-- The statements that index generation p_gen, one per index, so a rebuild can
-- run them on several connections after the bulk load.
CREATE FUNCTION readmodel.generation_indexes(p_gen integer) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    t text := 'tasks_g' || p_gen;
BEGIN
    RETURN NEXT format('ALTER TABLE readmodel.%I ADD CONSTRAINT %I PRIMARY KEY (id)', t, t || '_pkey');
    -- Keyset pagination per owner for every sort key.
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, created_at, id)', t || '_created', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, updated_at, id)', t || '_updated', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, due_at, id)', t || '_due', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, priority_rank, id)', t || '_priority_rank', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, (title COLLATE "C"), id)', t || '_title', t);
    -- Status and priority filters (with the default sort).
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, status, created_at, id)', t || '_status', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I (owner_id, priority, created_at, id)', t || '_priority', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I USING gin (tags)', t || '_tags', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I USING gin (search public.gin_trgm_ops)', t || '_search', t);
END $$;

-- Points readmodel.tasks at generation p_gen. Same column list for every
-- generation, so prepared statements of readers survive the swap.
CREATE FUNCTION readmodel.point_view_at(p_gen integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($ddl$
        CREATE OR REPLACE VIEW readmodel.tasks AS
        SELECT id, owner_id, title, description, status, priority, priority_rank, due_at, tags,
               created_at, updated_at, completed_at, version, search
        FROM readmodel.%I$ddl$, 'tasks_g' || p_gen);
END $$;

DO $$
DECLARE
    stmt text;
BEGIN
    PERFORM readmodel.create_generation(1);
    FOR stmt IN SELECT * FROM readmodel.generation_indexes(1) LOOP
        EXECUTE stmt;
    END LOOP;
    PERFORM readmodel.point_view_at(1);
END $$;

INSERT INTO readmodel.checkpoints (projection, commit_position, prepare_position, generation)
VALUES ('tasks', 0, 0, 1);
