-- Group commit: appends that arrive together share one transaction, one
-- fsync and one NOTIFY. Each append keeps its own expected-version check and
-- its own result; a conflicting one fails alone.
--
-- Appends sharing a transaction share tx_id, yet a client's position must
-- grow with every append. append_seq numbers the appends inside their
-- transaction; the commit position a client sees is (tx_id << 16) | append_seq,
-- which still orders exactly as (tx_id, position) does.
ALTER TABLE eventlog.events ADD COLUMN append_seq smallint NOT NULL DEFAULT 0;

CREATE FUNCTION eventlog.append_one(
    p_seq      smallint,
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
                SELECT 'duplicate'::text, e.version,
                       (e.tx_id::text::bigint << 16) | e.append_seq, e.position
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
        INSERT INTO eventlog.events
            (stream_id, version, event_id, event_type, schema_version, data, metadata, append_seq)
        SELECT p_stream, coalesce(v_current, -1) + t.ord, t.id, t.typ, t.sv, t.d, t.m, p_seq
        FROM unnest(p_ids, p_types, p_schemas, p_data, p_metadata)
             WITH ORDINALITY AS t (id, typ, sv, d, m, ord)
        RETURNING position
    )
    SELECT max(position) INTO v_last FROM inserted;

    RETURN QUERY SELECT 'appended'::text, coalesce(v_current, -1) + v_count,
                        (pg_current_xact_id()::text::bigint << 16) | p_seq, v_last;
END $$;

-- p_counts[i] events of the flattened event arrays belong to append i. One
-- result row per append, in order. A race with another transaction on the same
-- stream version aborts the whole batch with unique_violation (23505); the
-- caller then retries the batch's appends one by one.
CREATE FUNCTION eventlog.append_batch(
    p_streams  text[],
    p_expected bigint[],
    p_counts   int[],
    p_ids      uuid[],
    p_types    text[],
    p_schemas  smallint[],
    p_data     jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (outcome text, stream_version bigint, commit_position bigint, prepare_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_offset   int := 0;
    v_n        int;
    v_appended boolean := false;
    r          record;
BEGIN
    IF cardinality(p_streams) > 65536 THEN
        RAISE EXCEPTION 'at most 65536 appends per batch';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_streams), 0) LOOP
        v_n := p_counts[i];
        SELECT * INTO r FROM eventlog.append_one(
            (i - 1)::smallint, p_streams[i], p_expected[i],
            p_ids[v_offset + 1 : v_offset + v_n], p_types[v_offset + 1 : v_offset + v_n],
            p_schemas[v_offset + 1 : v_offset + v_n], p_data[v_offset + 1 : v_offset + v_n],
            p_metadata[v_offset + 1 : v_offset + v_n]);
        v_appended := v_appended OR r.outcome = 'appended';
        outcome := r.outcome;
        stream_version := r.stream_version;
        commit_position := r.commit_position;
        prepare_position := r.prepare_position;
        RETURN NEXT;
        v_offset := v_offset + v_n;
    END LOOP;
    IF v_appended THEN
        PERFORM pg_notify('tasklog_events', '');
    END IF;
END $$;

-- The single-append entry point keeps its signature (tools and pgbench use it).
CREATE OR REPLACE FUNCTION eventlog.append(
    p_stream   text,
    p_expected bigint,
    p_ids      uuid[],
    p_types    text[],
    p_schemas  smallint[],
    p_data     jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (outcome text, stream_version bigint, commit_position bigint, prepare_position bigint)
LANGUAGE sql AS $$
    SELECT * FROM eventlog.append_batch(ARRAY[p_stream], ARRAY[p_expected],
        ARRAY[cardinality(p_ids)], p_ids, p_types, p_schemas, p_data, p_metadata);
$$;
