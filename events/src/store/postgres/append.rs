//! The statements that write a batch of appends: one set-based INSERT for
//! the usual batch, and the append functions of the migrations for the rest.
//!
//! Why two: `eventlog.append_batch` runs each append as a PL/pgSQL call with
//! its own checks and insert, which costs several times a plain insert per
//! append (measured with pgbench in bench/README.md). The set-based
//! statement checks every append's expectation and event ids in one snapshot
//! and inserts all the events at once, or nothing. When any append would not
//! simply be appended (a conflict, a retry whose ids are stored, two appends
//! to one stream, `ExpectedVersion::Any`), it inserts nothing and the batch
//! goes to `append_batch`, which answers each append exactly (conflict,
//! duplicate, id mismatch). A race it cannot see (a concurrent transaction
//! taking the same version or id) ends in a unique violation, which the
//! group commit already answers by running each append on its own.

use sqlx::PgConnection;
use uuid::Uuid;

use super::group_commit::Pending;
use super::{AppendRow, to_i64};
use crate::store::ExpectedVersion;

/// Appends the whole batch if every append's expectation holds and none of
/// its event ids is stored; otherwise inserts nothing and returns no rows.
/// Events carry their append's place in the batch (`seq`), stream,
/// expectation and place in the append (`ord`, from 1), so a NoStream append
/// (expected -1) gets versions 0.. and an Exact(n) one n+1...
const SET_BASED: &str = "\
WITH ev AS (
    SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::int[], $5::uuid[],
                         $6::text[], $7::smallint[], $8::jsonb[], $9::jsonb[])
        AS t (seq, stream, expected, ord, id, typ, sv, d, m)
), refused AS (
    SELECT FROM ev WHERE ev.ord = 1 AND CASE
        WHEN ev.expected = -1 THEN
            EXISTS (SELECT FROM eventlog.events e WHERE e.stream_id = ev.stream)
        ELSE
            NOT EXISTS (SELECT FROM eventlog.events e
                        WHERE e.stream_id = ev.stream AND e.version = ev.expected)
            OR EXISTS (SELECT FROM eventlog.events e
                       WHERE e.stream_id = ev.stream AND e.version = ev.expected + 1)
        END
    UNION ALL
    SELECT FROM eventlog.events e WHERE e.event_id IN (SELECT id FROM ev)
    UNION ALL
    SELECT FROM ev WHERE ev.ord = 1 GROUP BY ev.stream HAVING count(*) > 1
    LIMIT 1
), inserted AS (
    INSERT INTO eventlog.events
        (stream_id, version, event_id, event_type, schema_version, data, metadata, append_seq)
    SELECT stream, expected + ord, id, typ, sv, d, m, seq FROM ev
    WHERE NOT EXISTS (SELECT FROM refused)
    ORDER BY seq, ord
    RETURNING append_seq, version, position, tx_id
)
SELECT 'appended' AS outcome, max(version) AS stream_version,
       (max(tx_id)::text::bigint << 16) | append_seq AS commit_position,
       max(position) AS prepare_position
FROM inserted GROUP BY append_seq ORDER BY append_seq";

/// Each append on its own, through the migrations' functions: exact
/// outcomes for every case, at a higher price.
const BY_FUNCTION: &str = "SELECT outcome, stream_version, commit_position, prepare_position \
     FROM eventlog.append_batch($1, $2, $3, $4, $5, $6, $7, $8)";

/// A batch as the arrays both statements bind: per append, then per event.
struct Columns<'a> {
    streams: Vec<&'a str>,
    expected: Vec<Option<i64>>,
    counts: Vec<i32>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schemas: Vec<i16>,
    data: Vec<&'a serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Pending]) -> Self {
        let total: usize = batch.iter().map(|p| p.events.len()).sum();
        let mut columns = Self {
            streams: Vec::with_capacity(batch.len()),
            expected: Vec::with_capacity(batch.len()),
            counts: Vec::with_capacity(batch.len()),
            ids: Vec::with_capacity(total),
            types: Vec::with_capacity(total),
            schemas: Vec::with_capacity(total),
            data: Vec::with_capacity(total),
            metadata: Vec::with_capacity(total),
        };
        for p in batch {
            columns.streams.push(p.stream_id.as_str());
            columns.expected.push(match p.expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(-1_i64),
                ExpectedVersion::Exact(v) => Some(to_i64(v)),
            });
            columns
                .counts
                .push(i32::try_from(p.events.len()).unwrap_or(i32::MAX));
            for e in &p.events {
                columns.ids.push(e.event_id);
                columns.types.push(e.event_type.as_str());
                columns.schemas.push(e.schema_version);
                columns.data.push(&e.data);
                columns
                    .metadata
                    .push(serde_json::to_value(&e.metadata).unwrap_or_default());
            }
        }
        columns
    }

    /// Per event: its append's place in the batch, stream, expectation and
    /// its own place in the append. None when an append takes `Any` (its
    /// versions depend on the stream's head) or the batch is too large to
    /// number, which only the functions handle.
    #[allow(clippy::type_complexity)]
    fn per_event(&self) -> Option<(Vec<i16>, Vec<&'a str>, Vec<i64>, Vec<i32>)> {
        let total = self.ids.len();
        let (mut seqs, mut streams, mut expected, mut ords) = (
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
        );
        for (i, ((stream, want), count)) in self
            .streams
            .iter()
            .zip(&self.expected)
            .zip(&self.counts)
            .enumerate()
        {
            let seq = i16::try_from(i).ok()?;
            let want = (*want)?;
            if *count < 1 {
                return None;
            }
            for ord in 1..=*count {
                seqs.push(seq);
                streams.push(*stream);
                expected.push(want);
                ords.push(ord);
            }
        }
        Some((seqs, streams, expected, ords))
    }
}

/// Appends `batch` in one statement, set-based when it can and through the
/// append functions otherwise (see the module's comment).
pub(super) async fn append_first(
    conn: &mut PgConnection,
    batch: &[Pending],
) -> Result<Vec<AppendRow>, sqlx::Error> {
    let columns = Columns::of(batch);
    if let Some((seqs, streams, expected, ords)) = columns.per_event() {
        let rows = sqlx::query_as::<_, AppendRow>(SET_BASED)
            .bind(&seqs)
            .bind(&streams)
            .bind(&expected)
            .bind(&ords)
            .bind(&columns.ids)
            .bind(&columns.types)
            .bind(&columns.schemas)
            .bind(&columns.data)
            .bind(&columns.metadata)
            .fetch_all(&mut *conn)
            .await?;
        if !rows.is_empty() {
            return Ok(rows);
        }
    }
    by_function(conn, &columns).await
}

/// Appends `batch` through the append functions: each append's exact
/// outcome, also after a failure whose result is unknown.
pub(super) async fn append_exactly(
    conn: &mut PgConnection,
    batch: &[Pending],
) -> Result<Vec<AppendRow>, sqlx::Error> {
    by_function(conn, &Columns::of(batch)).await
}

async fn by_function(
    conn: &mut PgConnection,
    columns: &Columns<'_>,
) -> Result<Vec<AppendRow>, sqlx::Error> {
    sqlx::query_as::<_, AppendRow>(BY_FUNCTION)
        .bind(&columns.streams)
        .bind(&columns.expected)
        .bind(&columns.counts)
        .bind(&columns.ids)
        .bind(&columns.types)
        .bind(&columns.schemas)
        .bind(&columns.data)
        .bind(&columns.metadata)
        .fetch_all(conn)
        .await
}
