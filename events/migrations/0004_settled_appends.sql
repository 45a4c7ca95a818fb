-- Two fixes to the append functions of migration 0002.
--
-- 1. An append reads whether its event ids are stored and where its stream
--    stands in ONE statement, so both answers come from one snapshot. They
--    were two statements, and in READ COMMITTED each takes its own snapshot:
--    a twin append (the same event ids, a retry) that committed between them
--    was missed by the id check and then seen by the version read, and the
--    retry got a false conflict instead of the original append's result. Now
--    a twin that committed before the statement is a duplicate, and one that
--    commits after it makes the insert wait and fail with unique_violation,
--    which the adapter answers by running the append again (a duplicate).
--
-- 2. The batch-size guard matches append_seq: a smallint numbered from 0
--    holds 32768 appends (0 to 32767), not 65536.
CREATE OR REPLACE FUNCTION eventlog.append_one(
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
    SELECT (SELECT count(*) FROM eventlog.events e WHERE e.event_id = ANY (p_ids)),
           (SELECT e.version FROM eventlog.events e
            WHERE e.stream_id = p_stream ORDER BY e.version DESC LIMIT 1)
    INTO v_found, v_current;

    -- A retried request: its ids are stored already. Answer as the first time.
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

CREATE OR REPLACE FUNCTION eventlog.append_batch(
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
    r          record;
BEGIN
    IF cardinality(p_streams) > 32768 THEN
        RAISE EXCEPTION 'at most 32768 appends per batch (append_seq numbers them 0 to 32767)'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_streams), 0) LOOP
        v_n := p_counts[i];
        SELECT * INTO r FROM eventlog.append_one(
            (i - 1)::smallint, p_streams[i], p_expected[i],
            p_ids[v_offset + 1 : v_offset + v_n], p_types[v_offset + 1 : v_offset + v_n],
            p_schemas[v_offset + 1 : v_offset + v_n], p_data[v_offset + 1 : v_offset + v_n],
            p_metadata[v_offset + 1 : v_offset + v_n]);
        outcome := r.outcome;
        stream_version := r.stream_version;
        commit_position := r.commit_position;
        prepare_position := r.prepare_position;
        RETURN NEXT;
        v_offset := v_offset + v_n;
    END LOOP;
END $$;
