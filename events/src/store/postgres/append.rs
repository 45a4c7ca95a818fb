//! The statements that write a batch of appends: set-based INSERTs for the
//! usual batches, and the append functions of the migrations for the rest.
//!
//! Why: `eventlog.append_batch` runs each append as a PL/pgSQL call with its
//! own checks and insert, planned again on every call, which costs several
//! times a plain insert per append (bench/README.md, "Seventh session").
//!
//! - A batch of new streams only (creates: `NoStream`) is one plain INSERT
//!   of all its events with a kept plan. It reads nothing: the log's unique
//!   (stream, version) and event ids refuse a stream that exists or an id
//!   that is stored, and that unique violation sends the batch to the
//!   functions, which answer each append exactly (conflict, duplicate, id
//!   mismatch).
//! - A batch with expected versions (changes) reads each stream's head in
//!   the same statement and inserts all its events, or nothing when any
//!   head is not where its append expects it; then the functions answer.
//!   Its plan is kept only once the log is known to hold `keep_plan_after`
//!   events: a plan made while the table is a few pages reads each head by
//!   scanning the whole table, and keeps doing so as the log grows, until
//!   the next ANALYZE. The planner sizes the table by its pages at planning
//!   time, and the log never shrinks, so a plan made after that point reads
//!   heads by the (stream, version) index for good. Before it, the
//!   statement is planned for each batch.
//! - `ExpectedVersion::Any`, and two appends to one stream in a batch of
//!   changes, go to the functions at once.
//!
//! A race none of these can see (a concurrent transaction taking the same
//! version or id) ends in a unique violation too.

use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::group_commit::Pending;
use super::{AppendRow, to_i64};
use crate::store::ExpectedVersion;

/// The final SELECT of the set-based statements: one row per append (its
/// place in the batch, `append_seq`) of the rows their CTE `inserted`
/// returned, as the append functions answer.
macro_rules! answer_per_append {
    () => {
        "
SELECT 'appended' AS outcome, max(version) AS stream_version,
       (max(tx_id)::text::bigint << 16) | append_seq AS commit_position,
       max(position) AS prepare_position
FROM inserted GROUP BY append_seq ORDER BY append_seq"
    };
}

/// Appends a batch of new streams: the events of append `seq` get versions
/// from 0 (`ord` counts from 1).
const INSERT_NEW: &str = concat!(
    "\
WITH inserted AS (
    INSERT INTO eventlog.events
        (stream_id, version, event_id, event_type, schema_version, data, metadata, append_seq)
    SELECT stream, ord - 1, id, typ, sv, d, m, seq
    FROM unnest($1::smallint[], $2::text[], $3::int[], $4::uuid[], $5::text[],
                $6::smallint[], $7::jsonb[], $8::jsonb[])
        AS t (seq, stream, ord, id, typ, sv, d, m)
    ORDER BY seq, ord
    RETURNING append_seq, version, position, tx_id
)",
    answer_per_append!()
);

/// Appends the whole batch if every stream's head is where its append
/// expects it; otherwise inserts nothing and returns no rows. Stored event
/// ids are not looked up: a retry whose events are stored finds its stream
/// past its expectation, and any other stored id fails the INSERT.
/// Events carry their append's place in the batch (`seq`), stream,
/// expectation and place in the append (`ord`, from 1), so a NoStream append
/// (expected -1) gets versions 0.. and an Exact(n) one n+1...
const SET_BASED: &str = concat!(
    "\
WITH ev AS (
    SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::int[], $5::uuid[],
                         $6::text[], $7::smallint[], $8::jsonb[], $9::jsonb[])
        AS t (seq, stream, expected, ord, id, typ, sv, d, m)
), refused AS (
    SELECT FROM ev
    LEFT JOIN LATERAL (
        SELECT e.version FROM eventlog.events e
        WHERE e.stream_id = ev.stream ORDER BY e.version DESC LIMIT 1
    ) head ON true
    WHERE ev.ord = 1 AND head.version IS DISTINCT FROM nullif(ev.expected, -1)
    LIMIT 1
), inserted AS (
    INSERT INTO eventlog.events
        (stream_id, version, event_id, event_type, schema_version, data, metadata, append_seq)
    SELECT stream, expected + ord, id, typ, sv, d, m, seq FROM ev
    WHERE NOT EXISTS (SELECT FROM refused)
    ORDER BY seq, ord
    RETURNING append_seq, version, position, tx_id
)",
    answer_per_append!()
);

/// Each append on its own, through the migrations' functions: exact
/// outcomes for every case, at a higher price.
const BY_FUNCTION: &str = "SELECT outcome, stream_version, commit_position, prepare_position \
     FROM eventlog.append_batch($1, $2, $3, $4, $5, $6, $7, $8)";

type AppendQuery<'q> = QueryAs<'q, Postgres, AppendRow, PgArguments>;

/// A batch as the arrays the statements bind: per append, then per event.
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

    /// Binds the event columns, which every statement takes after its own.
    fn bind_events<'q>(&'q self, query: AppendQuery<'q>) -> AppendQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.schemas)
            .bind(&self.data)
            .bind(&self.metadata)
    }

    /// Per event: its append's place in the batch, stream, expectation and
    /// its own place in the append. None when an append takes `Any` (its
    /// versions depend on the stream's head) or has no events, which only
    /// the functions handle.
    fn per_event(&self) -> Option<PerEvent<'a>> {
        let total = self.ids.len();
        let mut out = PerEvent {
            seqs: Vec::with_capacity(total),
            streams: Vec::with_capacity(total),
            expected: Vec::with_capacity(total),
            ords: Vec::with_capacity(total),
        };
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
                out.seqs.push(seq);
                out.streams.push(*stream);
                out.expected.push(want);
                out.ords.push(ord);
            }
        }
        Some(out)
    }
}

/// Each event's append: its place in the batch, stream, expected version
/// (-1: none) and the event's place in it from 1.
struct PerEvent<'a> {
    seqs: Vec<i16>,
    streams: Vec<&'a str>,
    expected: Vec<i64>,
    ords: Vec<i32>,
}

/// Appends `batch` set-based when it can and through the append functions
/// otherwise (see the module's comment).
pub(super) async fn append_first(
    conn: &mut PgConnection,
    batch: &[Pending],
    keep_change_plan: bool,
) -> Result<Vec<AppendRow>, sqlx::Error> {
    let columns = Columns::of(batch);
    let Some(events) = columns.per_event() else {
        return by_function(conn, &columns).await;
    };
    let written = if batch
        .iter()
        .all(|p| p.expected == ExpectedVersion::NoStream)
    {
        let query = sqlx::query_as(INSERT_NEW)
            .bind(&events.seqs)
            .bind(&events.streams)
            .bind(&events.ords);
        columns.bind_events(query).fetch_all(&mut *conn).await
    } else if shares_a_stream(batch) {
        return by_function(conn, &columns).await;
    } else {
        let query = sqlx::query_as(SET_BASED)
            .persistent(keep_change_plan)
            .bind(&events.seqs)
            .bind(&events.streams)
            .bind(&events.expected)
            .bind(&events.ords);
        columns.bind_events(query).fetch_all(&mut *conn).await
    };
    match written {
        Ok(rows) if !rows.is_empty() => Ok(rows),
        Ok(_) => by_function(conn, &columns).await,
        Err(e) if is_unique_violation(&e) => by_function(conn, &columns).await,
        Err(e) => Err(e),
    }
}

/// Whether two appends of `batch` go to one stream: set-based, the second
/// could not see the first's events.
fn shares_a_stream(batch: &[Pending]) -> bool {
    let mut streams: Vec<&str> = batch.iter().map(|p| p.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.windows(2).any(|w| w[0] == w[1])
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
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
    let query = sqlx::query_as(BY_FUNCTION)
        .bind(&columns.streams)
        .bind(&columns.expected)
        .bind(&columns.counts);
    columns.bind_events(query).fetch_all(conn).await
}
