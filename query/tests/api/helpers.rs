//! `spawn_app()`: a fresh database, a Redis prefix, the real service on a
//! random port, a reqwest client, and a seeder that appends real task events
//! to the log (Postgres adapter) and projects them with the projector's own
//! `catch_up`. Logs only with `TEST_LOG`.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use sqlx::ConnectOptions;
use tasklog_events::domain::{
    CreateTask, Priority, Status, Tags, TaskCommand, TaskDescription, TaskId, TaskPatch, TaskTitle,
    UserId, decide,
};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::task_stream::{load, to_new_event};
use tasklog_events::{AppendOutcome, EventStore, ExpectedVersion, Metadata, Position};
use tasklog_platform::auth::{JwtKeys, KeyUse, TokenSigner};
use tasklog_platform::config::{Env, Environment, RedisSettings};
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::test_roles::DbRoles;
use tasklog_platform::testing::{TcpProxy, TestDb, logs_when_asked, redis_prefix, redis_url};
use tasklog_query::{Application, Settings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use tasklog_platform::testing::problem;

static SIGNER: LazyLock<Arc<TokenSigner>> = LazyLock::new(|| {
    JwtKeys::from_env(
        &Env::default(),
        Environment::Development,
        KeyUse::SignAndVerify,
    )
    .expect("development keys")
    .signer
    .expect("a signer")
});

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: Arc<TestDb>,
    pub store: PgEventStore,
    /// The counts the service reads (the projector's Redis).
    pub redis: RedisHandle,
    shutdown: CancellationToken,
    _server: JoinHandle<std::io::Result<()>>,
    /// Between the service and Postgres, when spawned behind one.
    pub proxy: Option<TcpProxy>,
    /// `READ_REPLICA_URLS`' one entry, when spawned with one: the same
    /// database behind a proxy of its own, so a test can cut it alone.
    pub replica: Option<TcpProxy>,
    /// The read-only role the service connects as, when spawned as one.
    /// Declared after `db`: the database goes first, then the role.
    pub role: Option<DbRoles>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A user with a valid access token (as the command service would issue).
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// With extra environment variables (e.g. a short wait, an unreachable Redis).
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    spawn(env, false, false, true, false).await
}

/// With the service's Postgres behind a proxy the test can cut (`app.proxy`).
pub async fn spawn_app_behind_proxy(env: &[(&str, &str)]) -> TestApp {
    spawn(env, true, false, true, false).await
}

/// With one "replica": the primary itself, through a proxy (`replica`).
pub async fn spawn_app_with_replica() -> TestApp {
    spawn(&[], false, false, true, true).await
}

/// Connecting as the read-only role of `deploy/postgres/roles.sql`, made
/// (as an operator would) before the schemas are migrated by the owner.
pub async fn spawn_app_as_query_role() -> TestApp {
    spawn(&[], false, true, true, false).await
}

/// As the read-only role, on a database whose log nobody has made yet (the
/// command service has not run): only the read model is migrated.
pub async fn spawn_app_as_query_role_before_the_log() -> TestApp {
    spawn(&[], false, true, false, false).await
}

async fn spawn(
    env: &[(&str, &str)],
    behind_proxy: bool,
    read_only: bool,
    migrate_log: bool,
    with_replica: bool,
) -> TestApp {
    logs_when_asked();
    let db = Arc::new(TestDb::new().await.expect("test database"));
    let role = read_only.then(|| DbRoles::create(&db));
    let prefix = redis_prefix();
    let redis_url = redis_url();
    // A proxy in front of the test database, and the URL through it.
    let proxied = |wanted: bool| {
        let db = db.clone();
        async move {
            if !wanted {
                return (None, None);
            }
            let (proxy, through) = db.behind_proxy(true).await.expect("proxy");
            (Some(proxy), Some(through.to_url_lossy().to_string()))
        }
    };
    let (proxy, proxied_url) = proxied(behind_proxy).await;
    let database_url = match (proxied_url, &role) {
        (Some(url), _) => url,
        (None, Some(role)) => role.query_url.clone(),
        (None, None) => db.url().to_owned(),
    };
    let (replica, replica_url) = proxied(with_replica).await;
    let mut pairs = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_MAX_CONNECTIONS", "10"),
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        // Tests walk many pages as one user; one test turns the limit on.
        ("RATE_LIMIT_API", "0"),
        // The development secret needs development said explicitly.
        ("TASKLOG_ENV", "development"),
    ];
    if let Some(url) = &replica_url {
        pairs.push(("READ_REPLICA_URLS", url.as_str()));
    }
    pairs.extend(env.iter().copied());
    let env = Env::from_pairs(pairs);
    let settings = Settings::from_env(&env).expect("test settings");
    // The projector's Redis is the real one even when the service is pointed elsewhere.
    let redis = RedisHandle::new(&RedisSettings {
        url: redis_url.clone(),
        cluster: Vec::new(),
        prefix: prefix.clone(),
        timeout: std::time::Duration::from_secs(5),
    })
    .expect("redis handle");
    let store = PgEventStore::new(db.pool().clone());
    if migrate_log {
        store.migrate().await.expect("event log schema");
    }
    tasklog_readmodel::migrate(db.pool())
        .await
        .expect("read model schema");
    // Bounded: a service that waited for a migration it may not run would
    // otherwise hang the test instead of failing it.
    let app = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        Application::build(settings),
    )
    .await
    .expect("the app builds in time")
    .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        store,
        redis,
        shutdown,
        _server: server,
        proxy,
        replica,
        role,
    }
}

/// A new task's fields; `at` is its `occurred_at` (its `created_at`).
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub at: DateTime<Utc>,
}

impl NewTask {
    pub fn titled(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            description: String::new(),
            status: Status::Todo,
            priority: Priority::Medium,
            due_at: None,
            tags: vec![],
            at: Utc::now(),
        }
    }
}

pub fn user() -> User {
    let id = Uuid::new_v4();
    User {
        id,
        token: SIGNER.issue(id).expect("token").token,
    }
}

impl TestApp {
    /// Appends a `TaskCreated` to the log (not projected yet).
    pub async fn create(&self, user: &User, task: NewTask) -> (Uuid, AppendOutcome) {
        let id = TaskId(Uuid::now_v7());
        let command = TaskCommand::Create(CreateTask {
            task_id: id,
            owner: UserId(user.id),
            title: TaskTitle::parse(&task.title).expect("title"),
            description: TaskDescription::parse(&task.description).expect("description"),
            status: task.status,
            priority: task.priority,
            due_at: task.due_at,
            tags: Tags::parse(&task.tags).expect("tags"),
            at: task.at,
        });
        let events = decide(&tasklog_events::domain::TaskState::Absent, command).expect("create");
        let outcome = self
            .append(user, id, ExpectedVersion::NoStream, &events)
            .await;
        (id.0, outcome)
    }

    /// Appends the events of a patch made at `at`.
    pub async fn update(
        &self,
        user: &User,
        id: Uuid,
        patch: TaskPatch,
        at: DateTime<Utc>,
    ) -> AppendOutcome {
        self.command(
            user,
            id,
            TaskCommand::Update {
                actor: UserId(user.id),
                patch,
                at,
            },
        )
        .await
    }

    pub async fn delete(&self, user: &User, id: Uuid, at: DateTime<Utc>) -> AppendOutcome {
        self.command(
            user,
            id,
            TaskCommand::Delete {
                actor: UserId(user.id),
                at,
            },
        )
        .await
    }

    pub async fn restore(&self, user: &User, id: Uuid, at: DateTime<Utc>) -> AppendOutcome {
        self.command(
            user,
            id,
            TaskCommand::Restore {
                actor: UserId(user.id),
                at,
            },
        )
        .await
    }

    /// What `tasklog-projector verify` reports for the read model and the
    /// counts (empty when they agree with the log).
    pub async fn verify(&self) -> Vec<String> {
        tasklog_projector::verify::verify(self.db.pool(), &self.store, Some(&self.redis))
            .await
            .expect("verify")
            .differences
    }

    async fn command(&self, user: &User, id: Uuid, command: TaskCommand) -> AppendOutcome {
        let loaded = load(&self.store, TaskId(id), None).await.expect("load");
        let events = decide(&loaded.state, command).expect("decide");
        let expected = ExpectedVersion::Exact(loaded.version.expect("existing task"));
        self.append(user, TaskId(id), expected, &events).await
    }

    /// Appends a `TaskCreated` through `store` (e.g. one opened as another role).
    pub async fn create_through(&self, store: &PgEventStore, user: &User, title: &str) -> Uuid {
        let id = TaskId(Uuid::now_v7());
        let command = TaskCommand::Create(CreateTask {
            task_id: id,
            owner: UserId(user.id),
            title: TaskTitle::parse(title).expect("title"),
            description: TaskDescription::parse("").expect("description"),
            status: Status::Todo,
            priority: Priority::Medium,
            due_at: None,
            tags: Tags::parse::<&str>(&[]).expect("tags"),
            at: Utc::now(),
        });
        let events = decide(&tasklog_events::domain::TaskState::Absent, command).expect("create");
        append_to(store, user, id, ExpectedVersion::NoStream, &events).await;
        id.0
    }

    async fn append(
        &self,
        user: &User,
        id: TaskId,
        expected: ExpectedVersion,
        events: &[tasklog_events::domain::TaskEvent],
    ) -> AppendOutcome {
        append_to(&self.store, user, id, expected, events).await
    }

    /// Projects everything appended so far into Postgres and Redis, and
    /// waits until the service has heard so (as a client would with
    /// `X-Min-Position`): only then may its cached pages be assumed current.
    pub async fn project(&self) -> Option<Position> {
        let reached = self.project_unheard().await;
        self.heard(reached).await;
        reached
    }

    /// Projects into Postgres only, leaving the Redis counts behind.
    pub async fn project_postgres_only(&self) -> Option<Position> {
        let reached = tasklog_projector::catch_up(self.db.pool(), &self.store, None)
            .await
            .expect("catch up");
        self.heard(reached).await;
        reached
    }

    /// Projects without waiting for the service to hear of it.
    pub async fn project_unheard(&self) -> Option<Position> {
        tasklog_projector::catch_up(self.db.pool(), &self.store, Some(&self.redis))
            .await
            .expect("catch up")
    }

    /// Waits until the service reports `position` (every answer carries it).
    pub async fn heard(&self, position: Option<Position>) {
        let wanted = position.map_or(0, |p| p.commit);
        for _ in 0..1000 {
            let response = self.anonymous("/health/live").send().await.expect("live");
            let reported: u64 = response.headers()["x-projection-position"]
                .to_str()
                .ok()
                .and_then(|p| p.parse().ok())
                .expect("a position");
            if reported >= wanted {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the service never heard of position {wanted}");
    }

    pub fn get(&self, user: &User, path: &str) -> RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&user.token)
    }

    pub fn anonymous(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.address))
    }

    /// GET as `user`, expecting 200 and JSON.
    pub async fn json(&self, user: &User, path: &str) -> Value {
        let response = self.get(user, path).send().await.expect("request sent");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// Every task of a cursor walk, page by page; panics past 1000 pages.
    pub async fn walk(&self, user: &User, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let path = match &cursor {
                None => format!("/v1/tasks?{query}"),
                Some(c) => format!("/v1/tasks?{query}&cursor={c}"),
            };
            let page = self.json(user, &path).await;
            out.extend(page["tasks"].as_array().expect("tasks").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("more than 1000 pages");
    }
}

async fn append_to(
    store: &PgEventStore,
    user: &User,
    id: TaskId,
    expected: ExpectedVersion,
    events: &[tasklog_events::domain::TaskEvent],
) -> AppendOutcome {
    let metadata = Metadata {
        actor_id: Some(user.id),
        owner_id: Some(user.id),
        request_id: None,
        causation_id: None,
        reverted_to: None,
    };
    let new_events = events
        .iter()
        .map(|e| to_new_event(e, Uuid::now_v7(), metadata.clone()))
        .collect();
    store
        .append(&id.stream_id(), expected, new_events)
        .await
        .expect("append")
}

/// The field a 400 names.
pub fn field(problem: &Value) -> &str {
    problem["errors"][0]["field"].as_str().unwrap_or_default()
}

/// The ids of listed tasks, in order.
pub fn ids(tasks: &[Value]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}
