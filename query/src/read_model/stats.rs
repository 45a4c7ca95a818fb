//! `Stats`: one answer from one position. Counts from Redis when it answers
//! at exactly the Postgres read model's position, with `overdue`
//! (time-dependent, so never counted ahead of time) from Postgres; else
//! everything from Postgres in one statement. Redis ahead of Postgres is as
//! unusable as behind: a delete counted in Redis but not yet applied in
//! Postgres would read `total: 0, overdue: 1`.

use serde::Serialize;
use tasklog_events::Position;
use tasklog_platform::ApiError;
use tasklog_platform::read_pool::ReadPool;
use tasklog_platform::redis::RedisHandle;
use utoipa::ToSchema;
use uuid::Uuid;

use super::counts::{RedisCounts, read_redis_counts};
use super::db_error;

#[derive(Debug, Clone, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct ByStatus {
    pub todo: i64,
    pub in_progress: i64,
    pub done: i64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct ByPriority {
    pub low: i64,
    pub medium: i64,
    pub high: i64,
    pub urgent: i64,
}

/// `Stats` of API.md: live tasks only.
#[derive(Debug, Clone, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct Stats {
    pub total: i64,
    #[sqlx(flatten)]
    pub by_status: ByStatus,
    #[sqlx(flatten)]
    pub by_priority: ByPriority,
    pub overdue: i64,
    /// Where the counts came from, for logs and tests: "redis" or "postgres".
    #[serde(skip)]
    #[sqlx(skip)]
    pub source: &'static str,
}

/// The Postgres checkpoint and the owner's overdue count, in one statement
/// (one snapshot).
#[derive(sqlx::FromRow)]
struct Overdue {
    commit_position: Option<i64>,
    prepare_position: Option<i64>,
    overdue: i64,
}

impl Overdue {
    fn position(&self) -> Option<Position> {
        let (Some(commit), Some(prepare)) = (self.commit_position, self.prepare_position) else {
            return None;
        };
        Some(Position::new(
            u64::try_from(commit).ok()?,
            u64::try_from(prepare).ok()?,
        ))
    }
}

const OVERDUE: &str = "SELECT c.commit_position, c.prepare_position, \
    (SELECT count(*) FROM readmodel.tasks \
      WHERE owner_id = $1 AND due_at < now() AND status <> 'done') AS overdue \
    FROM (SELECT 1) AS one \
    LEFT JOIN readmodel.checkpoints c ON c.projection = 'tasks'";

const ALL_FROM_POSTGRES: &str = "SELECT count(*) AS total, \
    count(*) FILTER (WHERE status = 'todo') AS todo, \
    count(*) FILTER (WHERE status = 'in_progress') AS in_progress, \
    count(*) FILTER (WHERE status = 'done') AS done, \
    count(*) FILTER (WHERE priority = 'low') AS low, \
    count(*) FILTER (WHERE priority = 'medium') AS medium, \
    count(*) FILTER (WHERE priority = 'high') AS high, \
    count(*) FILTER (WHERE priority = 'urgent') AS urgent, \
    count(*) FILTER (WHERE due_at < now() AND status <> 'done') AS overdue \
    FROM readmodel.tasks WHERE owner_id = $1";

fn from_redis(counts: &RedisCounts, overdue: i64) -> Stats {
    let n = |f: &str| i64::try_from(counts.get(f)).unwrap_or(i64::MAX);
    Stats {
        total: n("total"),
        by_status: ByStatus {
            todo: n("todo"),
            in_progress: n("in_progress"),
            done: n("done"),
        },
        by_priority: ByPriority {
            low: n("low"),
            medium: n("medium"),
            high: n("high"),
            urgent: n("urgent"),
        },
        overdue,
        source: "redis",
    }
}

/// The owner's stats. Redis and the overdue count are asked at once; a second
/// Postgres query counts everything only when Redis cannot be used.
///
/// # Errors
/// Only when Postgres fails: Redis failing is a fallback, not an error.
pub async fn stats(db: &ReadPool, redis: &RedisHandle, owner: Uuid) -> Result<Stats, ApiError> {
    let mut conn = db.get().await.map_err(db_error)?;
    let (counts, overdue) = tokio::join!(
        read_redis_counts(redis, owner),
        sqlx::query_as::<_, Overdue>(OVERDUE)
            .bind(owner)
            .fetch_one(&mut *conn)
    );
    let overdue = conn.settle(overdue).map_err(db_error)?;
    let pg_position = overdue.position();
    match counts {
        Ok(Some(counts)) if Some(counts.checkpoint) == pg_position => {
            return Ok(from_redis(&counts, overdue.overdue));
        }
        Ok(Some(counts)) => tracing::debug!(
            redis = %counts.checkpoint,
            postgres = ?pg_position,
            "redis counts are at another position; counting in postgres"
        ),
        Ok(None) => tracing::debug!("no redis counts yet; counting in postgres"),
        Err(e) => tracing::warn!(error = %e, "redis unavailable; counting in postgres"),
    }
    let all = sqlx::query_as(ALL_FROM_POSTGRES)
        .bind(owner)
        .fetch_one(&mut *conn)
        .await;
    let mut stats: Stats = conn.settle(all).map_err(db_error)?;
    stats.source = "postgres";
    Ok(stats)
}
