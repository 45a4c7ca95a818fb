//! Task commands: create, change and delete a task by reading its stream,
//! running the domain's `decide` and appending with an expected version.

mod batch;
mod change;
mod create;
#[cfg(test)]
mod fake_store;
mod idempotency;
mod recent;
mod restore;
mod revert;

use serde::{Deserialize, Serialize};
use tasklog_events::domain::{TaskId, UserId};
use tasklog_events::task_stream::LoadError;
use tasklog_events::{AppendOutcome, Metadata, StoreError};
use tasklog_platform::ApiError;
use utoipa::ToSchema;
use uuid::Uuid;

pub use batch::{BatchCommand, BatchIds, Done, MAX_COMMANDS, idempotent, run_batch};
pub use change::{Change, Precondition, change_task};
pub use create::{Created, NewTask, create_task};
pub use idempotency::{IdempotencyKey, body_hash};
pub use recent::RecentTasks;
pub use restore::restore_task;

/// The ids of a command's events after the first: derived from it, so a
/// deterministic first id makes them all deterministic (a retried request
/// appends the very events it appended before).
pub(crate) fn event_ids(first: Uuid, count: usize) -> impl Iterator<Item = Uuid> {
    (0..count).map(move |i| match i {
        0 => first,
        n => Uuid::new_v5(&first, &n.to_be_bytes()),
    })
}

/// The answer to every task command: where the task's stream stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    pub id: Uuid,
    /// The stream version after the command; a new task is version 0.
    pub version: u64,
    /// The log position of the task's last event; send it as
    /// `X-Min-Position` to read your own write.
    pub position: u64,
}

impl Ack {
    /// Where `id`'s stream stands after `outcome`, an append to it.
    fn appended(id: TaskId, outcome: &AppendOutcome) -> Self {
        Self {
            id: id.0,
            version: outcome.version,
            position: outcome.position.commit,
        }
    }
}

/// Who sent a command and why, carried into every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: UserId,
    pub request_id: String,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl CommandContext {
    fn metadata(&self, owner: UserId) -> Metadata {
        Metadata {
            actor_id: Some(self.actor.0),
            owner_id: Some(owner.0),
            request_id: Some(self.request_id.clone()).filter(|r| !r.is_empty()),
            causation_id: self.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            reverted_to: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskCommandError {
    /// Absent, deleted or another user's: all look the same to the client.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// A restore of a task that is not deleted.
    #[error("task {0} is not deleted")]
    NotDeleted(TaskId),
    /// A revert to a version the task never had, or at which it was deleted.
    #[error("to_version: {0}")]
    BadRevertTarget(String),
    #[error("the task is at version {current:?}, not the one in If-Match")]
    PreconditionFailed { current: Option<u64> },
    #[error("the task kept changing under {attempts} attempts")]
    Contended { attempts: u32 },
    #[error("the Idempotency-Key was used with another body")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "event store unavailable");
            ApiError::unavailable("the event store")
        }
        StoreError::Conflict { .. } => ApiError::Conflict(e.to_string()),
        // The token outlived its erased account.
        StoreError::Erased { .. } => ApiError::Unauthorized,
        other => ApiError::internal(other),
    }
}

impl From<TaskCommandError> for ApiError {
    fn from(e: TaskCommandError) -> Self {
        match e {
            TaskCommandError::NotFound(_) => ApiError::NotFound,
            TaskCommandError::NotDeleted(_) => {
                ApiError::Conflict("the task is not deleted".to_owned())
            }
            TaskCommandError::BadRevertTarget(message) => ApiError::invalid("to_version", message),
            TaskCommandError::PreconditionFailed { current } => {
                ApiError::PreconditionFailed(match current {
                    Some(v) => format!("the task is at version {v}"),
                    None => "the task does not exist".to_owned(),
                })
            }
            TaskCommandError::Contended { .. } => {
                ApiError::Conflict("the task kept changing concurrently; try again".to_owned())
            }
            TaskCommandError::KeyReused => ApiError::invalid(
                "Idempotency-Key",
                "was already used with a different request body",
            ),
            TaskCommandError::Store(e) | TaskCommandError::Load(LoadError::Store(e)) => {
                store_error(e)
            }
            // The task went with its owner's account.
            TaskCommandError::Load(LoadError::Erased { .. }) => ApiError::NotFound,
            TaskCommandError::Load(e) => ApiError::internal(e),
            TaskCommandError::Database(e) => ApiError::from(e),
        }
    }
}
