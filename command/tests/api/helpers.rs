//! `spawn_app()`: a fresh database, the real service on a random port, and a
//! reqwest client with request helpers. Logs only when `TEST_LOG` is set.

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use tasklog_command::{Application, Settings};
use tasklog_events::sealing::{self, KeyEncryptionKey};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::store::postgres::testing::count_of_type;
use tasklog_events::{EventStore, RecordedEvent};
use tasklog_platform::config::Env;
use tasklog_platform::data_key::DEV_KEY;
use tasklog_platform::testing::{TestDb, logs_when_asked, redis_prefix, redis_url};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use tasklog_platform::testing::problem;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: Arc<TestDb>,
    database_url: String,
    env: Vec<(String, String)>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// With extra environment variables (e.g. a short token lifetime).
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let db = Arc::new(TestDb::new().await.expect("test database"));
    let url = db.url().to_owned();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(db, url, env).await
}

/// The database's URL with another port (to go through a proxy).
pub fn url_with_port(db: &TestDb, port: u16) -> String {
    let options: PgConnectOptions = db.url().parse().expect("test database url");
    options.port(port).to_url_lossy().to_string()
}

/// Rate limits and the per-account login lock are off unless a test turns
/// them on, and each app counts
/// under a Redis prefix of its own unless a test shares one.
pub fn settings(database_url: &str, env: &[(String, String)]) -> Settings {
    let prefix = redis_prefix();
    let redis = redis_url();
    let mut pairs = vec![
        ("DATABASE_URL", database_url),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_MAX_CONNECTIONS", "10"),
        ("PASSWORD_HASH_CONCURRENCY", "2"),
        ("RATE_LIMIT_AUTH", "0"),
        ("RATE_LIMIT_API", "0"),
        ("LOGIN_MAX_FAILURES", "0"),
        // The development secret needs development said explicitly.
        ("TASKLOG_ENV", "development"),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ];
    pairs.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Settings::from_env(&Env::from_pairs(pairs)).expect("test settings")
}

pub async fn start(db: Arc<TestDb>, database_url: String, env: Vec<(String, String)>) -> TestApp {
    logs_when_asked();
    let app = Application::build(settings(&database_url, &env))
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        database_url,
        env,
        shutdown,
        server,
    }
}

/// A registered user's session.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Stops this instance (draining it) and starts a new one on the same database.
    pub async fn restart(self) -> TestApp {
        self.shutdown.cancel();
        let _ = self.server.await;
        start(self.db, self.database_url, self.env).await
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// The log as the services read it: sealed payloads opened with the
    /// development key-encryption key the test app runs with.
    pub fn store(&self) -> Arc<dyn EventStore> {
        sealing::sealed(
            Arc::new(self.raw_store()),
            self.db.pool().clone(),
            KeyEncryptionKey::new(DEV_KEY),
        )
    }

    /// The log as stored: task payloads sealed.
    pub fn raw_store(&self) -> PgEventStore {
        PgEventStore::new(self.db.pool().clone())
    }

    /// How many events the log holds, counted by the store (the Postgres
    /// adapter counts its table): `read_all` stops below the oldest
    /// transaction of the whole server, which other tests running in
    /// parallel hold back.
    pub async fn events_in_log(&self) -> i64 {
        let (n, _) = self.raw_store().count_after(None, 1_000_000).await.unwrap();
        i64::try_from(n).unwrap()
    }

    /// How many events of `event_type` the log holds.
    pub async fn events_of_type(&self, event_type: &str) -> i64 {
        count_of_type(self.pool(), event_type).await.unwrap()
    }

    pub async fn stream(&self, task_id: &str) -> Vec<RecordedEvent> {
        self.store()
            .read_stream(&format!("task-{task_id}"), 0, None)
            .await
            .expect("stream read")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.request(Method::POST, path).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn register(&self, email: &str) -> User {
        let response = self
            .post(
                "/v1/auth/register",
                &json!({"email": email, "password": "correct horse", "name": "Test User"}),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let session: Value = response.json().await.expect("session");
        User {
            id: session["user"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("user id"),
            email: email.to_owned(),
            token: session["access_token"].as_str().expect("token").to_owned(),
            refresh_token: session["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        }
    }

    /// Creates a task and returns its `Ack`.
    pub async fn create_task(&self, user: &User, body: Value) -> Value {
        let response = self.post("/v1/tasks", &body, Some(&user.token)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {body}");
        response.json().await.expect("ack")
    }

    pub async fn patch_task(&self, user: &User, id: &str, body: &Value) -> Response {
        self.request(Method::PATCH, &format!("/v1/tasks/{id}"))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete_task(&self, user: &User, id: &str) -> Response {
        self.request(Method::DELETE, &format!("/v1/tasks/{id}"))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("request sent")
    }
}

/// The fields a 4xx problem names.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}
