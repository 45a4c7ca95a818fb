-- The event log. One row per event; streams are `task-<uuid>`.
-- The log's order is (tx_id, position): identity values become visible out of
-- order when transactions commit out of order, but every transaction whose id
-- is below the oldest running one has finished, so a reader that stops there
-- never skips an event that commits later (see DESIGN.md, rule 3).
CREATE TABLE eventlog.events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    schema_version smallint    NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, version)
);

-- Tailing the log walks this index in (commit, prepare) order.
CREATE INDEX events_log_order ON eventlog.events (tx_id, position);

-- Events are facts: the application never rewrites or removes one.
CREATE FUNCTION eventlog.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON eventlog.events
    FOR EACH ROW EXECUTE FUNCTION eventlog.refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON eventlog.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventlog.refuse_change();

-- One round trip per append: idempotency check, expected-version check, insert
-- and wake-up of subscribers. p_expected: NULL = any, -1 = no stream, n = exact.
-- A race with another appender on the same version surfaces as unique_violation
-- (23505); the caller retries and then gets a precise outcome.
CREATE FUNCTION eventlog.append(
    p_stream   text,
    p_expected bigint,
    p_ids      uuid[],
    p_types    text[],
    p_schemas  smallint[],
    p_data     jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (outcome text, stream_version bigint, commit_position bigint, prepare_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_count   int := cardinality(p_ids);
    v_found   int;
    v_current bigint;
    v_last    bigint;
BEGIN
    -- A retried request: its ids are stored already. Answer as the first time.
    SELECT count(*) INTO v_found FROM eventlog.events e WHERE e.event_id = ANY (p_ids);
    IF v_found > 0 THEN
        IF v_found = v_count AND NOT EXISTS (
            SELECT 1 FROM eventlog.events e
            WHERE e.event_id = ANY (p_ids) AND e.stream_id <> p_stream) THEN
            RETURN QUERY
                SELECT 'duplicate'::text, e.version, e.tx_id::text::bigint, e.position
                FROM eventlog.events e
                WHERE e.event_id = ANY (p_ids)
                ORDER BY e.version DESC LIMIT 1;
        ELSE
            RETURN QUERY SELECT 'id_mismatch'::text, NULL::bigint, NULL::bigint, NULL::bigint;
        END IF;
        RETURN;
    END IF;

    SELECT e.version INTO v_current FROM eventlog.events e
    WHERE e.stream_id = p_stream ORDER BY e.version DESC LIMIT 1;

    IF (p_expected = -1 AND v_current IS NOT NULL)
       OR (p_expected >= 0 AND v_current IS DISTINCT FROM p_expected) THEN
        RETURN QUERY SELECT 'conflict'::text, v_current, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;

    WITH inserted AS (
        INSERT INTO eventlog.events (stream_id, version, event_id, event_type, schema_version, data, metadata)
        SELECT p_stream, coalesce(v_current, -1) + t.ord, t.id, t.typ, t.sv, t.d, t.m
        FROM unnest(p_ids, p_types, p_schemas, p_data, p_metadata)
             WITH ORDINALITY AS t (id, typ, sv, d, m, ord)
        RETURNING position
    )
    SELECT max(position) INTO v_last FROM inserted;

    PERFORM pg_notify('tasklog_events', '');

    RETURN QUERY SELECT 'appended'::text, coalesce(v_current, -1) + v_count,
                        pg_current_xact_id()::text::bigint, v_last;
END $$;
