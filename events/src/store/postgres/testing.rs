//! For other crates' tests, which may not name this adapter's tables (they
//! are its own): what they check of the log as Postgres stores it, and the
//! statements `deploy/postgres/roles.sql` must refuse its runtime roles.

use sqlx::PgPool;

/// Statements that change the log's rows: a role that may only read the
/// log (the query service's, the projector's) is refused both.
pub const ROW_WRITES: [&str; 2] = [
    "DELETE FROM eventlog.events",
    "INSERT INTO eventlog.events (stream_id) VALUES ('task-x')",
];

/// Statements that change the log's schema: only its owner may.
pub const SCHEMA_CHANGES: [&str; 2] = [
    "CREATE TABLE eventlog.intruder (a int)",
    "CREATE SCHEMA IF NOT EXISTS eventlog",
];

/// How many events of `event_type` the log holds, committed ones all
/// counted (no visibility horizon, unlike `read_all`).
///
/// # Errors
/// When Postgres cannot be reached.
pub async fn count_of_type(pool: &PgPool, event_type: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM eventlog.events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
}

/// The payloads of `owner`'s events as stored (`data` as text): what a
/// dump of the log would show of them.
///
/// # Errors
/// When Postgres cannot be reached.
pub async fn stored_payloads(pool: &PgPool, owner: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT data::text FROM eventlog.events WHERE metadata->>'owner_id' = $1")
        .bind(owner)
        .fetch_all(pool)
        .await
}
