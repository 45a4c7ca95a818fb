//! A stand-in for the projector library until it lands on main: the read
//! model schema of READMODEL.md, and a `catch_up` with the same signature
//! that folds every touched stream with the events crate's `evolve` and
//! writes rows, checkpoint, NOTIFY and Redis counts as the contract says.
//! Tests call only `catch_up` and `migrate`, so switching to the projector is
//! a change of imports.

use std::collections::BTreeSet;

use redis::AsyncCommands;
use sqlx::PgPool;
use tasklog_events::domain::{TaskId, TaskState};
use tasklog_events::task_stream;
use tasklog_events::{EventStore, Position};
use tasklog_platform::redis::RedisHandle;
use uuid::Uuid;

const SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE SCHEMA IF NOT EXISTS readmodel;
CREATE TABLE IF NOT EXISTS readmodel.tasks (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL,
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    status text NOT NULL,
    priority text NOT NULL,
    priority_rank smallint NOT NULL,
    due_at timestamptz NULL,
    tags text[] NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    completed_at timestamptz NULL,
    version bigint NOT NULL,
    search text GENERATED ALWAYS AS (lower(title || ' ' || description)) STORED
);
CREATE INDEX IF NOT EXISTS tasks_owner_created ON readmodel.tasks (owner_id, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_owner_updated ON readmodel.tasks (owner_id, updated_at, id);
CREATE INDEX IF NOT EXISTS tasks_owner_due ON readmodel.tasks (owner_id, due_at, id);
CREATE INDEX IF NOT EXISTS tasks_owner_priority ON readmodel.tasks (owner_id, priority_rank, id);
CREATE INDEX IF NOT EXISTS tasks_owner_title ON readmodel.tasks (owner_id, (title COLLATE "C"), id);
CREATE INDEX IF NOT EXISTS tasks_owner_status ON readmodel.tasks (owner_id, status, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_owner_prio_created ON readmodel.tasks (owner_id, priority, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_tags ON readmodel.tasks USING gin (tags);
CREATE INDEX IF NOT EXISTS tasks_search ON readmodel.tasks USING gin (search gin_trgm_ops);
CREATE TABLE IF NOT EXISTS readmodel.checkpoints (
    projection text PRIMARY KEY,
    commit_position bigint NOT NULL,
    prepare_position bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
"#;

/// Creates the read model schema.
pub async fn migrate(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(db).await.map(|_| ())
}

#[allow(clippy::cast_possible_wrap)]
fn i64_of(v: u64) -> i64 {
    v as i64
}

/// Projects every event up to the log's head; returns the position reached.
pub async fn catch_up(
    db: &PgPool,
    store: &dyn EventStore,
    redis: Option<&RedisHandle>,
) -> anyhow::Result<Option<Position>> {
    migrate(db).await?;
    let from: Option<(i64, i64)> = sqlx::query_as(
        "SELECT commit_position, prepare_position FROM readmodel.checkpoints WHERE projection = 'tasks'",
    )
    .fetch_optional(db)
    .await?;
    #[allow(clippy::cast_sign_loss)]
    let mut after = from.map(|(c, p)| Position::new(c as u64, p as u64));
    let mut owners = BTreeSet::new();
    let head = store.head().await?;
    // The log shows only what lies below the oldest running transaction
    // (cluster-wide): keep reading until the head is reached.
    while after < head {
        let batch = store.read_all(after, 500).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let streams: BTreeSet<String> = batch.iter().map(|e| e.stream_id.clone()).collect();
        let mut tx = db.begin().await?;
        for stream in streams {
            let Some(id) = TaskId::from_stream_id(&stream) else {
                continue;
            };
            // Only what was committed up to `last`: fold the stream's prefix.
            let records = task_stream::history(store, id, None).await?;
            let records: Vec<_> = records
                .into_iter()
                .filter(|r| r.recorded.position <= last)
                .collect();
            let state = records.iter().fold(TaskState::Absent, |s, r| {
                tasklog_events::domain::evolve(s, &r.event)
            });
            let version = records.last().map_or(0, |r| r.recorded.version);
            match state {
                TaskState::Live(t) => {
                    owners.insert(t.owner.0);
                    sqlx::query(
                        "INSERT INTO readmodel.tasks (id, owner_id, title, description, status, priority, \
                         priority_rank, due_at, tags, created_at, updated_at, completed_at, version) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) \
                         ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description, \
                         status = EXCLUDED.status, priority = EXCLUDED.priority, priority_rank = EXCLUDED.priority_rank, \
                         due_at = EXCLUDED.due_at, tags = EXCLUDED.tags, updated_at = EXCLUDED.updated_at, \
                         completed_at = EXCLUDED.completed_at, version = EXCLUDED.version",
                    )
                    .bind(t.id.0)
                    .bind(t.owner.0)
                    .bind(t.title.as_str())
                    .bind(t.description.as_str())
                    .bind(t.status.as_str())
                    .bind(t.priority.as_str())
                    .bind(t.priority.rank())
                    .bind(t.due_at)
                    .bind(t.tags.to_strings())
                    .bind(t.created_at)
                    .bind(t.updated_at)
                    .bind(t.completed_at)
                    .bind(i64_of(version))
                    .execute(&mut *tx)
                    .await?;
                }
                TaskState::Deleted(t) => {
                    owners.insert(t.owner.0);
                    sqlx::query("DELETE FROM readmodel.tasks WHERE id = $1")
                        .bind(t.id.0)
                        .execute(&mut *tx)
                        .await?;
                }
                TaskState::Absent => {}
            }
        }
        sqlx::query(
            "INSERT INTO readmodel.checkpoints VALUES ('tasks', $1, $2, now()) \
             ON CONFLICT (projection) DO UPDATE SET commit_position = $1, prepare_position = $2, updated_at = now()",
        )
        .bind(i64_of(last.commit))
        .bind(i64_of(last.prepare))
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify('tasklog_projection', $1)")
            .bind(last.commit.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        after = Some(last);
    }
    if let (Some(redis), Some(at)) = (redis, after) {
        let live: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT owner_id FROM readmodel.tasks")
            .fetch_all(db)
            .await?;
        owners.extend(live);
        write_counts(db, redis, &owners, at).await?;
    }
    Ok(after)
}

#[derive(sqlx::FromRow)]
struct Counts {
    total: i64,
    todo: i64,
    in_progress: i64,
    done: i64,
    low: i64,
    medium: i64,
    high: i64,
    urgent: i64,
}

/// Recounts the owners touched from the rows (the projector counts events).
async fn write_counts(
    db: &PgPool,
    redis: &RedisHandle,
    owners: &BTreeSet<Uuid>,
    at: Position,
) -> anyhow::Result<()> {
    for owner in owners {
        let c: Counts = sqlx::query_as(
            "SELECT count(*) total, count(*) FILTER (WHERE status='todo') todo, \
             count(*) FILTER (WHERE status='in_progress') in_progress, count(*) FILTER (WHERE status='done') done, \
             count(*) FILTER (WHERE priority='low') low, count(*) FILTER (WHERE priority='medium') medium, \
             count(*) FILTER (WHERE priority='high') high, count(*) FILTER (WHERE priority='urgent') urgent \
             FROM readmodel.tasks WHERE owner_id = $1",
        )
        .bind(owner)
        .fetch_one(db)
        .await?;
        let key = redis.key(&format!("counts:g1:owner:{owner}"));
        let fields = [
            ("total", c.total),
            ("todo", c.todo),
            ("in_progress", c.in_progress),
            ("done", c.done),
            ("low", c.low),
            ("medium", c.medium),
            ("high", c.high),
            ("urgent", c.urgent),
        ];
        redis
            .run(|mut conn| async move { conn.hset_multiple::<_, _, _, ()>(key, &fields).await })
            .await?;
    }
    let checkpoint = redis.key("counts:g1:checkpoint");
    let current = redis.key("counts:current");
    redis
        .run(|mut conn| async move {
            conn.set::<_, _, ()>(checkpoint, at.to_string()).await?;
            conn.set::<_, _, ()>(current, "g1").await
        })
        .await?;
    Ok(())
}
