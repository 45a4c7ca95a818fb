//! A fresh database and Redis prefix per test, a writer that appends real
//! task events (through the domain's `decide`), and readers of what the
//! projector wrote.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tasklog_events::domain::{
    CreateTask, Priority, Status, Tags, TaskCommand, TaskDescription, TaskId, TaskPatch, TaskState,
    TaskTitle, UserId, decide, evolve,
};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::task_stream::to_new_event;
use tasklog_events::{EventStore, ExpectedVersion, Metadata, Position};
use tasklog_platform::config::{Env, RedisSettings};
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::testing::{TestDb, logs_when_asked, redis_prefix, redis_url};
use tasklog_projector::counts::CountsProjection;
use tasklog_projector::rebuild::{Quiet, RebuildOptions, RebuildReport, rebuild};
use tasklog_projector::{Application, ProjectorError, Settings};
use tasklog_readmodel::counts::{CountKeys, partition_of};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One test's world: its database (with the Postgres log), its Redis prefix.
pub struct World {
    pub db: Arc<TestDb>,
    pub store: Arc<PgEventStore>,
    pub redis: RedisHandle,
    pub prefix: String,
    pub writer: Writer,
}

impl World {
    /// A rebuild of this world's read model and counts, quietly.
    pub async fn rebuild(&self, options: RebuildOptions) -> Result<RebuildReport, ProjectorError> {
        rebuild(
            self.pool(),
            self.dyn_store(),
            Some(&self.redis),
            options,
            &mut Quiet,
        )
        .await
    }

    pub async fn new() -> World {
        logs_when_asked();
        let db = Arc::new(TestDb::new().await.expect("test database"));
        let store = Arc::new(
            PgEventStore::new(db.pool().clone()).with_poll_interval(Duration::from_millis(100)),
        );
        store.migrate().await.expect("event log migrates");
        let prefix = redis_prefix();
        let redis = redis_handle(&redis_url(), &prefix);
        let writer = Writer {
            store: store.clone(),
            tasks: HashMap::new(),
        };
        World {
            db,
            store,
            redis,
            prefix,
            writer,
        }
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    pub fn dyn_store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// Settings for an in-process projector on this world (extra variables win).
    pub fn settings(&self, redis_url: &str, extra: &[(&str, &str)]) -> Settings {
        let mut pairs = vec![
            ("DATABASE_URL", self.db.url()),
            ("REDIS_URL", redis_url),
            ("REDIS_PREFIX", self.prefix.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_MAX_CONNECTIONS", "8"),
            ("PROJECTOR_LEASE_POLL_MS", "100"),
            ("PROJECTOR_LAG_SAMPLE_MS", "200"),
            ("REDIS_TIMEOUT_MS", "500"),
            // The development key-encryption key needs development said.
            ("TASKLOG_ENV", "development"),
        ];
        pairs.extend_from_slice(extra);
        Settings::from_env(&Env::from_pairs(pairs)).expect("test settings")
    }

    /// Starts `tasklog-projector run` in this process.
    pub async fn start_projector(&self, redis_url: &str, extra: &[(&str, &str)]) -> Running {
        let app = Application::build(self.settings(redis_url, extra))
            .await
            .expect("the projector builds");
        let port = app.port();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Running {
            port,
            shutdown,
            task,
        }
    }

    /// The read model's checkpoint (commit/prepare, `None` before any event).
    pub async fn tasks_checkpoint(&self) -> Option<Position> {
        let (c, p): (i64, i64) = sqlx::query_as(
            "SELECT commit_position, prepare_position FROM readmodel.checkpoints WHERE projection = 'tasks'",
        )
        .fetch_one(self.pool())
        .await
        .expect("checkpoint row");
        tasklog_readmodel::checkpoint::from_db(c, p)
    }

    /// The position every counts partition has reached (the oldest).
    pub async fn counts_checkpoint(&self) -> Option<Position> {
        use tasklog_projector::projection::Projection;
        CountsProjection::new(self.redis.clone())
            .checkpoint()
            .await
            .expect("redis answers")
            .position()
    }

    async fn get(&self, key: &str) -> Option<String> {
        let key = key.to_owned();
        self.redis
            .run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await
            .expect("redis answers")
    }

    /// An owner's counts in the current generation (missing fields are 0).
    pub async fn counts(&self, owner: UserId) -> HashMap<String, i64> {
        let keys = CountKeys::new(&self.prefix);
        let generation = self
            .get(&keys.current(partition_of(owner.0)))
            .await
            .expect("a counts generation");
        let key = keys.owner(&generation, owner.0);
        let hash: HashMap<String, i64> = self
            .redis
            .run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
            .await
            .expect("redis answers");
        hash
    }

    /// Waits (bounded) until `check` holds.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        // Two minutes: the rebuild tests hold a transaction open on purpose
        // (a swap in flight), and while they do, no projector on the server
        // reads past it (DESIGN rule 3), so a test beside them waits too.
        for _ in 0..2400 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    /// The whole log, once every event up to the head is visible to readers
    /// (an open transaction anywhere on the server holds the log back).
    pub async fn all_events(&self) -> Vec<tasklog_events::RecordedEvent> {
        all_events_of(self.store.as_ref()).await
    }

    pub async fn head(&self) -> Option<Position> {
        self.store.head().await.expect("head")
    }

    /// Waits until both projections have reached the log's head.
    pub async fn wait_caught_up(&self) {
        let head = self.head().await;
        self.eventually("the read model reaches the head", || async {
            self.tasks_checkpoint().await >= head
        })
        .await;
        self.eventually("the counts reach the head", || async {
            self.counts_checkpoint().await >= head
        })
        .await;
    }

    /// `verify` against this world; the differences found.
    pub async fn verify(&self) -> Vec<String> {
        tasklog_projector::verify::verify(self.pool(), self.store.as_ref(), Some(&self.redis))
            .await
            .expect("verify runs")
            .differences
    }
}

/// A log's events up to its head, waiting while they are held back.
pub async fn all_events_of(store: &dyn EventStore) -> Vec<tasklog_events::RecordedEvent> {
    let head = store.head().await.expect("head");
    for _ in 0..600 {
        let events = store.read_all(None, 1_000_000).await.expect("read_all");
        if events.last().map(|e| e.position) >= head {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log stayed held back");
}

pub fn redis_handle(url: &str, prefix: &str) -> RedisHandle {
    let settings = RedisSettings::from_env(&Env::from_pairs([
        ("REDIS_URL", url),
        ("REDIS_PREFIX", prefix),
        ("REDIS_TIMEOUT_MS", "2000"),
    ]))
    .expect("redis settings");
    RedisHandle::new(&settings).expect("redis handle")
}

pub struct Running {
    pub port: u16,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// SIGTERM: finish the batch, release the leases.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }

    /// Like kill -9: every task and connection of the instance goes at once.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Appends real task events: commands through `decide`, with the expected version.
pub struct Writer {
    store: Arc<PgEventStore>,
    tasks: HashMap<TaskId, (TaskState, Option<u64>)>,
}

pub fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T08:00:00.123456789Z")
        .expect("a time")
        .with_timezone(&Utc)
        + chrono::Duration::minutes(minutes)
}

impl Writer {
    /// A writer with no tasks of its own, to stand in while another is lent out.
    pub fn detached(world: &World) -> Writer {
        Writer {
            store: world.store.clone(),
            tasks: HashMap::new(),
        }
    }

    async fn run(&mut self, id: TaskId, owner: UserId, command: TaskCommand) -> Position {
        let (state, version) = self.tasks.remove(&id).unwrap_or_default();
        let events = decide(&state, command).expect("the command is valid");
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let new_events = events
            .iter()
            .map(|e| {
                to_new_event(
                    e,
                    Uuid::new_v4(),
                    Metadata {
                        actor_id: Some(owner.0),
                        owner_id: Some(owner.0),
                        ..Metadata::default()
                    },
                )
            })
            .collect();
        let outcome = self
            .store
            .append(&id.stream_id(), expected, new_events)
            .await
            .expect("append");
        let state = events.iter().fold(state, evolve);
        self.tasks.insert(id, (state, Some(outcome.version)));
        outcome.position
    }

    pub fn owner_of(&self, id: TaskId) -> UserId {
        match &self.tasks[&id].0 {
            TaskState::Live(t) | TaskState::Deleted(t) => t.owner,
            TaskState::Absent => panic!("no such task"),
        }
    }

    pub async fn create(
        &mut self,
        owner: UserId,
        title: &str,
        status: Status,
        priority: Priority,
    ) -> TaskId {
        let id = TaskId(Uuid::now_v7());
        self.run(
            id,
            owner,
            TaskCommand::Create(CreateTask {
                task_id: id,
                owner,
                title: TaskTitle::parse(title).expect("title"),
                description: TaskDescription::parse("first\tline\nsecond \\ line")
                    .expect("description"),
                status,
                priority,
                due_at: None,
                tags: Tags::parse(&["Home", "a \"quoted\" {tag}"]).expect("tags"),
                at: t(0),
            }),
        )
        .await;
        id
    }

    pub async fn update(&mut self, id: TaskId, patch: TaskPatch, at: DateTime<Utc>) -> Position {
        let owner = self.owner_of(id);
        self.run(
            id,
            owner,
            TaskCommand::Update {
                actor: owner,
                patch,
                at,
            },
        )
        .await
    }

    pub async fn delete(&mut self, id: TaskId) -> Position {
        let owner = self.owner_of(id);
        self.run(
            id,
            owner,
            TaskCommand::Delete {
                actor: owner,
                at: t(90),
            },
        )
        .await
    }

    pub async fn restore(&mut self, id: TaskId, at: DateTime<Utc>) -> Position {
        let owner = self.owner_of(id);
        self.run(id, owner, TaskCommand::Restore { actor: owner, at })
            .await
    }

    /// `tasks` tasks for `owners` owners, each changed a few times, some deleted.
    pub async fn busy_history(&mut self, owners: &[UserId], tasks: usize) -> Vec<TaskId> {
        let mut ids = Vec::new();
        for i in 0..tasks {
            let owner = owners[i % owners.len()];
            let priority = Priority::ALL[i % 4];
            let id = self
                .create(owner, &format!("Task number {i}"), Status::Todo, priority)
                .await;
            ids.push(id);
            if i % 2 == 0 {
                self.update(
                    id,
                    TaskPatch {
                        status: Some(Status::InProgress),
                        ..TaskPatch::default()
                    },
                    t(1),
                )
                .await;
            }
            if i % 3 == 0 {
                self.update(
                    id,
                    TaskPatch {
                        status: Some(Status::Done),
                        title: Some(TaskTitle::parse(&format!("Done {i}")).expect("title")),
                        ..TaskPatch::default()
                    },
                    t(2),
                )
                .await;
            }
            if i % 7 == 0 {
                self.delete(id).await;
            }
        }
        ids
    }
}

pub fn owners(n: usize) -> Vec<UserId> {
    (0..n).map(|_| UserId(Uuid::new_v4())).collect()
}

/// One row of the read model, as the query service would read it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReadRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub priority_rank: i16,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub search: String,
}

pub async fn read_row(db: &PgPool, id: TaskId) -> Option<ReadRow> {
    sqlx::query_as("SELECT * FROM readmodel.tasks WHERE id = $1")
        .bind(id.0)
        .fetch_optional(db)
        .await
        .expect("read model query")
}

pub async fn all_rows(db: &PgPool) -> Vec<ReadRow> {
    sqlx::query_as("SELECT * FROM readmodel.tasks ORDER BY id")
        .fetch_all(db)
        .await
        .expect("read model query")
}
