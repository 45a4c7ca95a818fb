-- Appends no longer NOTIFY inside their transaction: the adapter notifies
-- right after the commit, in a transaction of its own.
--
-- Why: a transaction that has sent a NOTIFY holds a database-wide lock from
-- its pre-commit until its commit record is flushed, so notifying appends
-- committed one after another, one WAL flush each, and could not share a
-- flush with each other. Measured with pgbench (bench/limits.sh, 32 clients,
-- single-event appends): 110-160 tps with the NOTIFY, 1340-1400 tps without,
-- in the same minutes. A notify-only transaction writes no WAL of its own
-- before its commit record, so it commits without waiting for a flush and
-- holds that lock only briefly. Subscribers still poll, so a NOTIFY lost to
-- a crash between the commit and the notification only delays them.
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
        outcome := r.outcome;
        stream_version := r.stream_version;
        commit_position := r.commit_position;
        prepare_position := r.prepare_position;
        RETURN NEXT;
        v_offset := v_offset + v_n;
    END LOOP;
END $$;
