//! The Postgres event log: the embedded default, one table in schema `eventlog`.

mod append;
mod group_commit;
mod migrate;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

pub use group_commit::{GroupCommitSettings, MAX_BATCH};
pub use migrate::{MigrateError, migrate_schema};

use group_commit::GroupCommit;

use super::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The channel appends notify (in their own transaction) to wake subscribers.
pub const NOTIFY_CHANNEL: &str = "tasklog_events";

/// How often a subscriber polls even without a notification, so a lost one only
/// delays.
const DEFAULT_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    poll_interval: Duration,
    group_commit: GroupCommitSettings,
    committer: Arc<OnceLock<GroupCommit>>,
}

impl PgEventStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            poll_interval: DEFAULT_POLL,
            group_commit: GroupCommitSettings::default(),
            committer: Arc::new(OnceLock::new()),
        }
    }

    /// Sets how many transactions append at once and how many appends one may carry.
    pub fn with_group_commit(mut self, settings: GroupCommitSettings) -> Self {
        self.group_commit = settings;
        self
    }

    /// The workers start with the first append, on the runtime that makes it.
    fn committer(&self) -> &GroupCommit {
        self.committer
            .get_or_init(|| GroupCommit::start(self.pool.clone(), self.group_commit))
    }

    /// Sets how often subscribers poll without a notification.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates or upgrades the log's schema; safe when many instances start at once.
    ///
    /// # Errors
    /// When Postgres is unreachable or a migration fails.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        migrate_schema(&self.pool, "eventlog", &MIGRATOR).await
    }
}

#[derive(sqlx::FromRow)]
struct AppendRow {
    outcome: String,
    stream_version: Option<i64>,
    commit_position: Option<i64>,
    prepare_position: Option<i64>,
}

/// Turns the append function's row into the trait's result.
fn outcome_of(row: AppendRow, expected: ExpectedVersion) -> Result<AppendOutcome, StoreError> {
    let stream_version = row.stream_version.map(to_u64).transpose()?;
    match row.outcome.as_str() {
        "appended" | "duplicate" => {
            let (Some(version), Some(commit), Some(prepare)) =
                (stream_version, row.commit_position, row.prepare_position)
            else {
                return Err(StoreError::Corrupt("append returned no position".into()));
            };
            Ok(AppendOutcome {
                version,
                position: Position::new(to_u64(commit)?, to_u64(prepare)?),
                duplicate: row.outcome == "duplicate",
            })
        }
        "conflict" => Err(StoreError::Conflict {
            expected,
            actual: stream_version,
        }),
        "id_mismatch" => Err(StoreError::IdempotencyMismatch),
        other => Err(StoreError::Corrupt(format!(
            "unknown append outcome {other}"
        ))),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative position or version {v}")))
}

/// The commit position a client sees: the appending transaction, then the
/// append's place in it (see migration 0002).
const EVENT_COLUMNS: &str = "(tx_id::text::bigint << 16) | append_seq AS commit_position, position, stream_id, version, \
     event_id, event_type, schema_version, data, metadata, recorded_at";

fn recorded_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    // Straight from the column's bytes: through a `serde_json::Value` first,
    // each event's metadata was built twice.
    let metadata = row
        .try_get::<sqlx::types::Json<Metadata>, _>("metadata")
        .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?
        .0;
    Ok(RecordedEvent {
        position: Position::new(
            to_u64(row.try_get("commit_position").map_err(get)?)?,
            to_u64(row.try_get("position").map_err(get)?)?,
        ),
        stream_id: row.try_get("stream_id").map_err(get)?,
        version: to_u64(row.try_get("version").map_err(get)?)?,
        event_id: row.try_get::<Uuid, _>("event_id").map_err(get)?,
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: row.try_get("schema_version").map_err(get)?,
        data: row.try_get("data").map_err(get)?,
        metadata,
        recorded_at: row
            .try_get::<DateTime<Utc>, _>("recorded_at")
            .map_err(get)?,
    })
}

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(skip(self, events), fields(events = events.len()))]
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        self.committer().submit(stream_id, expected, events).await
    }

    #[tracing::instrument(skip(self))]
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM eventlog.events \
             WHERE stream_id = $1 AND version >= $2 AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
             ORDER BY version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(to_i64(from_version))
            .bind(until)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(recorded_event).collect()
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        subscription::read_committed(&self.pool, after.unwrap_or(Position::START), max)
            .await
            .map(|page| page.events)
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventBatches {
        subscription::subscribe(
            self.pool.clone(),
            after.unwrap_or(Position::START),
            self.poll_interval,
        )
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT (tx_id::text::bigint << 16) | append_seq, position FROM eventlog.events \
             ORDER BY tx_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        row.map(|(c, p)| Ok(Position::new(to_u64(c)?, to_u64(p)?)))
            .transpose()
    }

    /// Reachable, and the log's table is there: a reader that does not
    /// migrate (the query service) is not ready before a writer has.
    async fn ping(&self) -> Result<(), StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('eventlog.events') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "eventlog.events does not exist yet (has the command service run?)".into(),
            ))
        }
    }

    /// An index-only count in the log's own order (`commit >> 16` is the
    /// appending transaction, see `EVENT_COLUMNS`).
    async fn count_after(
        &self,
        after: Option<Position>,
        cap: u64,
    ) -> Result<(u64, bool), StoreError> {
        let after = after.unwrap_or(Position::START);
        let cap = to_i64(cap);
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM eventlog.events \
             WHERE (tx_id, position) > (($1::bigint >> 16)::text::xid8, $2) LIMIT $3) behind",
        )
        .bind(to_i64(after.commit))
        .bind(to_i64(after.prepare))
        .bind(cap)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok((u64::try_from(n).unwrap_or(0), n >= cap))
    }

    /// The identity's high mark: instant, and the event count give or take gaps.
    async fn approximate_len(&self) -> Result<Option<u64>, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM eventlog.events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(max.and_then(|n| u64::try_from(n).ok()))
    }

    fn split_points(&self, first: Position, head: Position, parts: usize) -> Vec<Position> {
        split_points(first, head, parts)
    }
}

/// Cuts of about equal transaction-id span, each after the last event a
/// transaction can hold (a commit position is `tx_id << 16 | append_seq`).
fn split_points(first: Position, head: Position, parts: usize) -> Vec<Position> {
    let (low, high) = (first.commit >> 16, head.commit >> 16);
    let parts = parts.max(1) as u64;
    let mut cuts: Vec<Position> = (1..parts)
        .map(|i| low + (high - low) * i / parts)
        .filter(|tx| *tx >= low && *tx < high)
        .map(|tx| Position::new((tx << 16) | 0xFFFF, u64::MAX))
        .collect();
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_after_the_last_event_of_a_transaction_and_split_the_span() {
        let first = Position::new(100 << 16, 1);
        let head = Position::new((500 << 16) | 3, 9_000);
        let cuts = split_points(first, head, 4);
        assert_eq!(
            cuts,
            vec![
                Position::new((200 << 16) | 0xFFFF, u64::MAX),
                Position::new((300 << 16) | 0xFFFF, u64::MAX),
                Position::new((400 << 16) | 0xFFFF, u64::MAX),
            ]
        );
        // Every event of transaction 200 is at or before the cut, none of 201.
        assert!(Position::new((200 << 16) | 7, 1_000_000) <= cuts[0]);
        assert!(Position::new(201 << 16, 0) > cuts[0]);
        assert!(split_points(first, head, 1).is_empty());
        assert!(split_points(head, head, 3).is_empty());
    }
}
