//! A task's past, read from the log rather than the read model: its history
//! (kept after deletion) and its state at an instant, folded with the same
//! `evolve` the command side uses.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tasklog_events::EventStore;
use tasklog_events::StoreError;
use tasklog_events::domain::{TaskEvent, TaskId, TaskState, evolve};
use tasklog_events::task_stream::{self, LoadError, TaskRecord};
use tasklog_platform::ApiError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::read_model::TaskView;

/// One event of a task's history (`HistoryEntry` in API.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub version: u64,
    /// The log position (commit) of the event, as in `Ack.position`.
    pub position: u64,
    #[serde(rename = "type")]
    #[schema(example = "TaskCreated")]
    pub kind: &'static str,
    /// The payload upcast to the current schema of its type.
    pub data: Value,
    pub actor_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    /// On the events of a revert: the version whose fields they brought back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
}

fn log_error(e: LoadError) -> ApiError {
    match e {
        LoadError::Store(StoreError::Unavailable(source)) => {
            tracing::warn!(error = %source, "event log unavailable");
            ApiError::unavailable("the event log")
        }
        other => ApiError::internal(other),
    }
}

/// The task's events, if `owner` owns it: the owner is the one its
/// `TaskCreated` names, so anyone else (and a missing task) gets `None`.
async fn owned_records(
    store: &dyn EventStore,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<Vec<TaskRecord>>, ApiError> {
    let records = match task_stream::history(store, TaskId(id), None).await {
        // Erased with its owner's account: as if it never was.
        Err(LoadError::Erased { .. }) => return Ok(None),
        other => other.map_err(log_error)?,
    };
    let owned = matches!(
        records.first().map(|r| &r.event),
        Some(TaskEvent::Created(created)) if created.owner_id.0 == owner
    );
    Ok(owned.then_some(records))
}

/// Every event of the task, oldest first, deletion included.
///
/// # Errors
/// 503 when the log is down; 500 for an event this code cannot read.
pub async fn history(
    store: &dyn EventStore,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<Vec<HistoryEntry>>, ApiError> {
    let Some(records) = owned_records(store, owner, id).await? else {
        return Ok(None);
    };
    Ok(Some(
        records
            .into_iter()
            .map(|r| HistoryEntry {
                version: r.recorded.version,
                position: r.recorded.position.commit,
                kind: r.event.event_type(),
                data: r.event.to_data(),
                actor_id: r.recorded.metadata.actor_id,
                recorded_at: r.recorded.recorded_at,
                reverted_to: r.recorded.metadata.reverted_to,
            })
            .collect(),
    ))
}

/// The task as it stood at `at`: its events that had occurred by then (by
/// their own `occurred_at`, which survives a log migration, unlike the
/// log's `recorded_at`) folded in order. `None` if it did not exist yet, was
/// deleted by then, or is not the owner's.
///
/// # Errors
/// 503 when the log is down; 500 for an event this code cannot read.
pub async fn as_of(
    store: &dyn EventStore,
    owner: Uuid,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<TaskView>, ApiError> {
    let Some(records) = owned_records(store, owner, id).await? else {
        return Ok(None);
    };
    // A prefix of the stream: a state is only ever the fold of its first events.
    let mut state = TaskState::Absent;
    let mut version = None;
    for record in records.iter().take_while(|r| r.event.occurred_at() <= at) {
        state = evolve(state, &record.event);
        version = Some(record.recorded.version);
    }
    Ok(match (state, version) {
        (TaskState::Live(task), Some(version)) => Some(TaskView::of(&task, version)),
        _ => None,
    })
}
