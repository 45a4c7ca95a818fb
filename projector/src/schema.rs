//! The `readmodel` schema's migrations (READMODEL.md).

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use tasklog_events::store::postgres::{MigrateError as SchemaError, migrate_schema};

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates or upgrades the `readmodel` schema; safe from many processes at once.
///
/// # Errors
/// When Postgres is unreachable or a migration fails.
pub async fn migrate(db: &PgPool) -> Result<(), MigrateError> {
    migrate_schema(db, "readmodel", &MIGRATOR)
        .await
        .map_err(|e| match e {
            SchemaError::Migrate { source, .. } => source,
            SchemaError::Connect(e) | SchemaError::Prepare { source: e, .. } => {
                MigrateError::Execute(e)
            }
            other @ SchemaError::BadSchemaName(_) => MigrateError::Source(Box::new(other)),
        })
}
