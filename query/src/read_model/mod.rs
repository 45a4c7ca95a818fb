//! Every read of the projector's Postgres read model (`readmodel.*`; its
//! contract is the `tasklog-readmodel` crate) and of the Redis counts: the
//! only SQL of the service.

mod changes;
mod counts;
mod list_sql;
mod stats;
mod tasks;
mod trash;

pub use changes::{
    After, Change, ChangeFilter, changes_after, changes_position, explain_changes, rest_of_commit,
};
pub use counts::{RedisCounts, read_redis_counts};
pub use stats::{Stats, stats};
pub use tasks::{Page, TaskView, explain_list, get, list, numbered};
pub use trash::{TrashPage, TrashedTask, trash};

use tasklog_platform::ApiError;

/// Database errors as the API reports them: a read model the projector has
/// not created yet is a dependency not ready (503), not a bug.
pub(crate) fn db_error(e: sqlx::Error) -> ApiError {
    match &e {
        // undefined_table, undefined_column, invalid_schema_name: a missing or
        // half-migrated read model.
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c == "42P01" || c == "42703" || c == "3F000") =>
        {
            tracing::warn!(error = %e, "the read model is not there (has the projector run?)");
            ApiError::unavailable("the read model")
        }
        _ => ApiError::from(e),
    }
}
