//! The Postgres projection's checkpoint: how far into the log the read model is.

use sqlx::PgExecutor;

/// The name of the Postgres read model's row in `readmodel.checkpoints`.
pub const TASKS_PROJECTION: &str = "tasks";

/// The commit position the `tasks` read model has reached (0 before its first
/// batch). Positions are stored as the u64's bit pattern in a bigint.
///
/// # Errors
/// When Postgres fails, or the read model does not exist yet.
pub async fn projection_position(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let commit: Option<i64> = sqlx::query_scalar(
        "SELECT commit_position FROM readmodel.checkpoints WHERE projection = $1",
    )
    .bind(TASKS_PROJECTION)
    .fetch_optional(db)
    .await?;
    #[allow(clippy::cast_sign_loss)]
    Ok(commit.map_or(0, |c| c as u64))
}
