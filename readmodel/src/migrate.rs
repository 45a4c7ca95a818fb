//! The `readmodel` schema's migrations. They moved here from the projector
//! unchanged (same versions, same bytes, so same checksums): a database the
//! old projector migrated keeps its `readmodel._sqlx_migrations` history.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// sqlx refuses to start on a database whose applied migration's checksum
    /// differs from the embedded one: these are the checksums the projector's
    /// migrations had when databases were migrated by it.
    #[test]
    fn migrations_keep_the_versions_and_checksums_existing_databases_recorded() {
        let applied: Vec<(i64, String)> = MIGRATOR
            .iter()
            .map(|m| (m.version, hex(&m.checksum)))
            .collect();
        let recorded = [
            (
                1,
                "ed2fa5055c1dcc6c4355c9ea372b5c0789300632e5981ded82aded8c01d28e67ed64c974160d8ecb39338744940033b3",
            ),
            (
                2,
                "168ae6e27a3b6c7e9e949c5583f17d5d13a28074f62463461759594302b213e3d841d5d5a80f35a9c3791d251dc4177f",
            ),
        ];
        for (version, checksum) in recorded {
            assert!(
                applied.contains(&(version, checksum.to_owned())),
                "migration {version} changed: {applied:?}"
            );
        }
    }
}
