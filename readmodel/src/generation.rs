//! The generation tables: rows live in `readmodel.tasks_g<n>`, and the view
//! `readmodel.tasks` points at the current one. Their DDL is in migration
//! 0001/0002 (`create_generation`, `generation_indexes`, `point_view_at`);
//! this module is the only Rust that names them.

use sqlx::{Connection, PgConnection, PgExecutor};

use crate::error::ReadModelError;

/// The view readers query: always the current generation's rows, with the
/// same columns whichever generation it points at.
pub const VIEW: &str = "readmodel.tasks";

/// The columns a generation table is written with (the others are generated).
pub const COLUMNS: &str = "id, owner_id, title, description, status, priority, due_at, tags, \
                           created_at, updated_at, completed_at, version";

/// The table of generation `generation` (a number we make: safe to splice).
pub fn table(generation: i32) -> String {
    format!("readmodel.tasks_g{generation}")
}

/// Creates the empty, index-less table of `generation`.
///
/// # Errors
/// When Postgres fails (the table exists, say).
pub async fn create(db: impl PgExecutor<'_>, generation: i32) -> Result<(), ReadModelError> {
    sqlx::query("SELECT readmodel.create_generation($1)")
        .bind(generation)
        .execute(db)
        .await?;
    Ok(())
}

/// The statements that index `generation`, the primary key first.
///
/// # Errors
/// When Postgres fails.
pub async fn index_statements(
    db: impl PgExecutor<'_>,
    generation: i32,
) -> Result<Vec<String>, ReadModelError> {
    Ok(
        sqlx::query_scalar("SELECT readmodel.generation_indexes($1)")
            .bind(generation)
            .fetch_all(db)
            .await?,
    )
}

/// Points [`VIEW`] at `generation` (inside the caller's transaction).
///
/// # Errors
/// When Postgres fails.
pub async fn point_view_at(conn: &mut PgConnection, generation: i32) -> Result<(), ReadModelError> {
    sqlx::query("SELECT readmodel.point_view_at($1)")
        .bind(generation)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The identity of `generation`'s table (its OID), `None` when it does not
/// exist: a table dropped and created again under the same name has a new one.
///
/// # Errors
/// When Postgres fails.
pub async fn table_oid(
    db: impl PgExecutor<'_>,
    generation: i32,
) -> Result<Option<u32>, ReadModelError> {
    let oid: Option<sqlx::postgres::types::Oid> = sqlx::query_scalar("SELECT to_regclass($1)::oid")
        .bind(table(generation))
        .fetch_one(db)
        .await?;
    Ok(oid.map(|o| o.0))
}

/// Every generation that has a table.
///
/// # Errors
/// When Postgres fails.
pub async fn existing(db: impl PgExecutor<'_>) -> Result<Vec<i32>, ReadModelError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = 'readmodel' AND tablename ~ '^tasks_g[0-9]+$'",
    )
    .fetch_all(db)
    .await?;
    Ok(tables
        .iter()
        .filter_map(|t| t.strip_prefix("tasks_g")?.parse().ok())
        .collect())
}

/// Drops `generation`'s table, waiting at most `lock_timeout` (a Postgres
/// interval such as `"2s"`, from code) for readers still on it.
///
/// # Errors
/// When Postgres fails or the lock is not had in time.
pub async fn drop(
    conn: &mut PgConnection,
    generation: i32,
    lock_timeout: &'static str,
) -> Result<(), ReadModelError> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{lock_timeout}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", table(generation)))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
