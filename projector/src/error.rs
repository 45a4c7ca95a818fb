//! The projector's error type: what can go wrong applying a batch.

use tasklog_events::StoreError;
use tasklog_platform::redis::RedisUnavailable;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] RedisUnavailable),
    #[error("event log: {0}")]
    Store(#[from] StoreError),
    #[error("migrating the read model failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The role connected may not make tables, which a rebuild does: a
    /// runtime role of `deploy/postgres/roles.sql` (run it as the owner).
    #[error(
        "role {0} may not create tables in the readmodel schema: run `rebuild` as the owner \
         (the migrate step's DATABASE_URL; deploy/README.md, \"Database roles\")"
    )]
    NotOwner(String),
    /// Something else holds what this needs (another rebuild).
    #[error("{0}")]
    Busy(String),
    /// A rebuild lost what made its swap safe (its lock, its table) and
    /// stopped before swapping.
    #[error("the rebuild was fenced out: {0}")]
    Fenced(String),
    /// A task the work was split into failed (panicked or was cancelled).
    #[error("a task of the projector failed: {0}")]
    TaskFailed(String),
    /// The read model or Redis holds something no projection wrote.
    #[error("the read side holds data it cannot read: {0}")]
    Corrupt(String),
}

impl From<tasklog_readmodel::ReadModelError> for ProjectorError {
    fn from(e: tasklog_readmodel::ReadModelError) -> Self {
        match e {
            tasklog_readmodel::ReadModelError::Database(e) => ProjectorError::Database(e),
            tasklog_readmodel::ReadModelError::Corrupt(what) => ProjectorError::Corrupt(what),
        }
    }
}

impl From<redis::RedisError> for ProjectorError {
    fn from(e: redis::RedisError) -> Self {
        ProjectorError::Redis(RedisUnavailable::Error(e))
    }
}
