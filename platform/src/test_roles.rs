//! The roles `deploy/postgres/roles.sql` makes, for one test's database.
//! Roles belong to the whole server, so each test names its own (from its
//! database's name) and drops them with the value: tests run in parallel and
//! leave none behind.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgExecutor};

use crate::testing::{TestDb, admin_database_url};

/// The query service's, the command service's and the projector's roles of
/// one test database, made by the operator's script as documented.
pub struct DbRoles {
    /// The test database as the read-only query role.
    pub query_url: String,
    /// As the command service's runtime role.
    pub command_url: String,
    /// As the projector's runtime role.
    pub projector_url: String,
    names: [String; 3],
    database: String,
}

impl DbRoles {
    /// Runs `deploy/postgres/roles.sql` with psql on `db`, the test's
    /// connecting user as the owner. Run it again (as a deploy does, after
    /// the migrations) with [`DbRoles::run_script_again`].
    ///
    /// # Panics
    /// When psql is missing or the script fails: the test cannot go on.
    #[allow(clippy::expect_used)]
    pub fn create(db: &TestDb) -> Self {
        let names = ["q", "c", "p"].map(|r| format!("{}_{r}", db.name()));
        let options: PgConnectOptions = db.url().parse().expect("test database url");
        let url = |name: &str| options.clone().username(name).to_url_lossy().to_string();
        let roles = Self {
            query_url: url(&names[0]),
            command_url: url(&names[1]),
            projector_url: url(&names[2]),
            names,
            database: db.name().to_owned(),
        };
        roles.run_script(db);
        roles
    }

    /// The script once more (it is idempotent): grants on what the owner
    /// made since.
    ///
    /// # Panics
    /// When the script fails.
    pub fn run_script_again(&self, db: &TestDb) {
        self.run_script(db);
    }

    #[allow(clippy::expect_used)]
    fn run_script(&self, db: &TestDb) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres/roles.sql");
        let options: PgConnectOptions = db.url().parse().expect("test database url");
        // In libpq's variables: psql refuses sqlx's extra URL parameters.
        let out = std::process::Command::new("psql")
            .env("PGHOST", options.get_host())
            .env("PGPORT", options.get_port().to_string())
            .env("PGUSER", options.get_username())
            .env("PGDATABASE", db.name())
            .args(["-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", &format!("query_role={}", self.names[0])])
            .args(["-v", &format!("command_role={}", self.names[1])])
            .args(["-v", &format!("projector_role={}", self.names[2])])
            .args(["-f", script])
            .env_remove("TASKLOG_QUERY_PASSWORD")
            .env_remove("TASKLOG_COMMAND_PASSWORD")
            .env_remove("TASKLOG_PROJECTOR_PASSWORD")
            .env_remove("TASKLOG_OWNER_PASSWORD")
            .env_remove("TASKLOG_OWNER")
            .output()
            .expect("psql runs (the PostgreSQL client is installed with the server)");
        assert!(
            out.status.success(),
            "roles.sql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for DbRoles {
    fn drop(&mut self) {
        let names = self.names.join(", ");
        let database = self.database.clone();
        let admin: Option<PgConnectOptions> = admin_database_url().parse().ok();
        // As TestDb's drop: a runtime of its own on a thread of its own.
        let done = std::thread::spawn(move || {
            let (Some(admin), Ok(rt)) = (
                admin,
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
            ) else {
                return;
            };
            rt.block_on(async move {
                // The roles' grants and default privileges in the database
                // go first (a role that holds any cannot be dropped); when
                // the database is gone already, so are they. The names came
                // from a UUID.
                if let Ok(mut conn) = admin.clone().database(&database).connect().await {
                    let _ = sqlx::query(&format!("DROP OWNED BY {names}"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {names}"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// The SQLSTATE Postgres answered `sql` with, `None` when it ran: what a
/// role is refused.
pub async fn refused<'c>(executor: impl PgExecutor<'c>, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(executor).await {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| format!("not a database error: {e}")),
        ),
    }
}
