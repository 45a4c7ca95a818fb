//! Runs one crate's migrations inside its own schema, safely from many
//! processes at once. Each schema keeps its own `_sqlx_migrations` table, so
//! the log, the accounts and the read models migrate independently.

use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions, Connection, PgPool};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("schema name {0:?} is not a plain lower-case identifier")]
    BadSchemaName(String),
    #[error("cannot reach Postgres to migrate: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating schema {schema} failed: {source}")]
    Migrate {
        schema: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("preparing schema {schema} failed: {source}")]
    Prepare {
        schema: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Serialises schema creation across every process of every service.
const MIGRATION_LOCK: i64 = 0x0074_6173_6b6c_6f67; // "tasklog"

/// Creates `schema` if needed and applies `migrator` inside it.
///
/// # Errors
/// When Postgres cannot be reached or a migration fails.
pub async fn migrate_schema(
    pool: &PgPool,
    schema: &str,
    migrator: &Migrator,
) -> Result<(), MigrateError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(MigrateError::BadSchemaName(schema.to_owned()));
    }
    let prepare = |source| MigrateError::Prepare {
        schema: schema.to_owned(),
        source,
    };
    if already_applied(pool, schema, migrator).await {
        return Ok(());
    }
    // A connection of its own: the search_path set below must not leak into the pool.
    let mut conn = pool
        .connect_options()
        .connect()
        .await
        .map_err(MigrateError::Connect)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut conn)
        .await
        .map_err(prepare)?;
    // The name was checked above to be a plain identifier; it comes from code.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut conn)
        .await
        .map_err(prepare)?;
    sqlx::query(&format!("SET search_path TO {schema}, public"))
        .execute(&mut conn)
        .await
        .map_err(prepare)?;
    // `run_direct`, not `run`: sqlx's `Acquire` bound on `run` makes this
    // future fail the compiler's `Send` proof, and callers spawn it.
    let mut result = migrator
        .run_direct(&mut conn)
        .await
        .map_err(|source| MigrateError::Migrate {
            schema: schema.to_owned(),
            source,
        });
    if result.is_ok() {
        result = keep_history_to_owner(&mut conn, schema)
            .await
            .map_err(prepare);
    }
    // Closing the session releases the advisory lock even if unlocking fails.
    let _ = conn.close().await;
    result
}

/// Takes back from every other role the right to change `_sqlx_migrations`,
/// which sqlx makes with the schema's default privileges: a runtime role
/// granted "rows of every table" (`deploy/postgres/roles.sql`) could
/// otherwise mark a migration applied and have the next deploy skip it.
/// Reading stays granted: that is how a runtime role sees it has nothing
/// to migrate.
async fn keep_history_to_owner(
    conn: &mut sqlx::PgConnection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    // Built by Postgres from the table's ACL: the names quoted as it quotes them.
    let revokes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I._sqlx_migrations FROM %s', \
                $1::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                               ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
         FROM pg_class c, aclexplode(c.relacl) a \
         WHERE c.oid = to_regclass(format('%I._sqlx_migrations', $1::text)) \
           AND a.grantee <> c.relowner \
           AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for revoke in revokes {
        sqlx::query(&revoke).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Whether every migration of `migrator` is recorded in the schema, applied
/// and unchanged: then there is nothing to do, and a role without DDL (a
/// runtime role of `deploy/postgres/roles.sql`, once the owner migrated)
/// may start. Anything else, an unreadable table included, says no and
/// leaves the decision to the full path.
async fn already_applied(pool: &PgPool, schema: &str, migrator: &Migrator) -> bool {
    // The name was checked by the caller to be a plain identifier.
    let applied: Result<Vec<(i64, Vec<u8>)>, _> = sqlx::query_as(&format!(
        "SELECT version, checksum FROM {schema}._sqlx_migrations WHERE success"
    ))
    .fetch_all(pool)
    .await;
    let Ok(applied) = applied else {
        return false;
    };
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| {
            applied
                .iter()
                .any(|(version, checksum)| *version == m.version && *checksum == *m.checksum)
        })
}
