//! The accounts schema's migrations, as shipped in `migrations/`, except for
//! the ones whose shipped SQL fails on data that exists in the field: those
//! run the SQL of `migration_fixes/` instead, under the shipped version and
//! checksum. sqlx refuses to start when an applied migration's file changed,
//! so a shipped file stays as it is; a database that applied it has nothing
//! to fix (it passed), and one that has not applies the fixed SQL and
//! records the shipped checksum, so either kind migrates on from there.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError as SqlxMigrateError, Migration, MigrationSource, Migrator};
use tasklog_events::store::postgres::{MigrateError, PgEventStore, migrate_schema};
use tasklog_events::store::{Backend, backend_for};
use tasklog_platform::config::{DatabaseSettings, Env};
use tasklog_platform::database::{self, MIGRATE_JOB_WAIT, retry_for};
use uuid::Uuid;

static SHIPPED: Migrator = sqlx::migrate!("./migrations");

/// Replacements by version. 0003's UPDATE and unique index failed when two
/// existing emails normalise alike, which blocked the upgrade.
const FIXES: &[(i64, &str)] = &[(3, include_str!("../migration_fixes/0003_email_key.sql"))];

/// What a look-alike account's `email_key` starts with (`migration_fixes/0003`).
pub const LOOKALIKE_KEY_PREFIX: &str = "！lookalike ";

/// The migrations up to `last` (all when `None`), fixes in place.
#[derive(Debug)]
struct Fixed {
    last: Option<i64>,
}

impl<'s> MigrationSource<'s> for Fixed {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(SHIPPED
                .iter()
                .filter(|m| self.last.is_none_or(|last| m.version <= last))
                .map(|m| match FIXES.iter().find(|(v, _)| *v == m.version) {
                    Some((_, sql)) => Migration {
                        sql: Cow::Borrowed(sql),
                        ..m.clone()
                    },
                    None => m.clone(),
                })
                .collect())
        })
    }
}

/// The accounts' migrator, up to and including version `last` (all when
/// `None`; tests make databases of an earlier version with it).
///
/// # Errors
/// Never in practice: the migrations are compiled in.
pub async fn migrator(last: Option<i64>) -> Result<Migrator, SqlxMigrateError> {
    Migrator::new(Fixed { last }).await
}

/// Applies the accounts' migrations (under `migrate_schema`'s lock), and
/// names the look-alike accounts when this run gave them their keys.
///
/// # Errors
/// When Postgres fails or a migration does.
pub async fn migrate(db: &PgPool) -> Result<(), MigrateError> {
    let migrator = migrator(None)
        .await
        .map_err(|source| MigrateError::Migrate {
            schema: "accounts".to_owned(),
            source,
        })?;
    let keyed_before = email_keys_exist(db).await;
    migrate_schema(db, "accounts", &migrator).await?;
    if !keyed_before {
        report_lookalikes(db).await;
    }
    Ok(())
}

async fn email_keys_exist(db: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM information_schema.columns \
         WHERE table_schema = 'accounts' AND table_name = 'users' AND column_name = 'email_key')",
    )
    .fetch_one(db)
    .await
    .unwrap_or(false)
}

/// Logs the ids (never the emails) of the accounts that lost their key to an
/// older look-alike, for the operator (deploy/README.md says what to do).
async fn report_lookalikes(db: &PgPool) {
    let ids: Result<Vec<Uuid>, _> = sqlx::query_scalar(
        "SELECT id FROM accounts.users WHERE starts_with(email_key, $1) ORDER BY id",
    )
    .bind(LOOKALIKE_KEY_PREFIX)
    .fetch_all(db)
    .await;
    match ids {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => {
            let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            tracing::warn!(
                accounts = ids.len(),
                user_ids = ids.join(","),
                "accounts whose email looks like an older account's cannot log in until resolved \
                 (deploy/README.md, \"Look-alike emails\")"
            );
        }
        Err(e) => tracing::warn!(error = %e, "look-alike accounts not listed"),
    }
}

/// `tasklog-command migrate`: the accounts and, unless `EVENT_STORE_URL`
/// names another store, the Postgres log, as the owner of `DATABASE_URL`,
/// then exits. The deploy's migrate step runs it before the service starts
/// as its runtime role (`tasklog_command`), which may not change the schema.
///
/// # Errors
/// When a setting is invalid, Postgres cannot be reached or a migration fails.
pub async fn migrate_from_env(env: &Env) -> anyhow::Result<()> {
    let settings = DatabaseSettings::from_env(env)?;
    let db = database::pool(&settings, "tasklog-command-migrate")?;
    // Another store (KurrentDB) has no schema of ours.
    let postgres_log = matches!(backend_for(env.get("EVENT_STORE_URL"))?, Backend::Postgres);
    // A one-shot job may start before Postgres, its name or its roles are
    // there (podman-compose 4.3 does not always wait for the job before it).
    retry_for(
        "migrating the accounts and the log",
        MIGRATE_JOB_WAIT,
        || async {
            migrate(&db).await?;
            if postgres_log {
                PgEventStore::new(db.clone()).migrate().await?;
            }
            Ok::<_, anyhow::Error>(())
        },
    )
    .await?;
    tracing::info!("the accounts and the log are migrated");
    db.close().await;
    Ok(())
}
