//! Test support: every test gets its own database (and Redis key prefix), so
//! tests run in parallel against the real servers and leave nothing behind.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

/// The server tests run against; any database on it serves as the admin one.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Prefix of every database a test makes, so leftovers of killed runs can be found.
pub const TEST_DATABASE_PREFIX: &str = "tasklog_t_";

/// A database made for one test and dropped when the value is dropped.
pub struct TestDb {
    name: String,
    url: String,
    admin: PgConnectOptions,
    pool: PgPool,
}

impl TestDb {
    /// # Errors
    /// When the test server cannot be reached.
    pub async fn new() -> anyhow::Result<Self> {
        let admin: PgConnectOptions = admin_database_url().parse()?;
        let name = format!("{TEST_DATABASE_PREFIX}{}", Uuid::new_v4().simple());
        let mut conn = admin.connect().await?;
        // The name is made above from a UUID: safe to splice.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(options)
            .await?;
        Ok(Self {
            name,
            url,
            admin,
            pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a
        // thread with a runtime of its own does the clean-up. FORCE ends the
        // test's own connections, which that runtime could not close from here.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A Redis key prefix unique to one test.
pub fn redis_prefix() -> String {
    format!("tasklog_t_{}:", Uuid::new_v4().simple())
}
