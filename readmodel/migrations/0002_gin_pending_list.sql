-- A GIN index keeps new entries in a pending list and merges the list into
-- the index once it passes gin_pending_list_limit (4 MB by default), inside
-- whichever insert crosses the limit. Under a steady write load that insert
-- was a projector batch, stalled 100 to 300 ms every few seconds: the
-- projection lag's p99. At 256 kB each merge is about 16 times smaller, and
-- searches scan a shorter list. Turning fastupdate off instead (every insert
-- goes straight into the index) doubled the median lag.
--
-- Generations are created by readmodel.generation_indexes (0001), which is
-- redefined here whole; existing generations are altered in place.

CREATE OR REPLACE FUNCTION readmodel.generation_indexes(p_gen integer) RETURNS SETOF text
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
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I USING gin (tags) WITH (gin_pending_list_limit = 256)', t || '_tags', t);
    RETURN NEXT format('CREATE INDEX %I ON readmodel.%I USING gin (search public.gin_trgm_ops) WITH (gin_pending_list_limit = 256)', t || '_search', t);
END $$;

DO $$
DECLARE
    gin record;
BEGIN
    FOR gin IN
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_am am ON am.oid = c.relam
        WHERE n.nspname = 'readmodel' AND c.relkind = 'i' AND am.amname = 'gin'
          AND c.relname ~ '^tasks_g[0-9]+_(tags|search)$'
    LOOP
        EXECUTE format('ALTER INDEX readmodel.%I SET (gin_pending_list_limit = 256)', gin.relname);
    END LOOP;
END $$;
