//! Tasks on the log: turning `TaskEvent`s into stored events and a stream back
//! into a task's state, for the command side and for history and as-of reads.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{CodecError, TaskEvent, TaskId, TaskState, evolve};
use crate::store::{EventStore, Metadata, NewEvent, RecordedEvent, StoreError};

/// A task event read back from the log, with its place in it.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub event: TaskEvent,
    pub recorded: RecordedEvent,
}

/// A task's state after folding its stream, and the version that state is at.
#[derive(Debug, Clone, Default)]
pub struct LoadedTask {
    pub state: TaskState,
    /// `None` when the stream holds no event.
    pub version: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed event whose owner's key is gone: the task was erased with
    /// its owner's account. Not corruption: readers answer "not found".
    #[error("event {version} of {stream_id} was erased with its owner's account")]
    Erased { stream_id: String, version: u64 },
    #[error("event {version} of {stream_id} cannot be read: {source}")]
    Codec {
        stream_id: String,
        version: u64,
        #[source]
        source: CodecError,
    },
}

/// Encodes an event for the log.
pub fn to_new_event(event: &TaskEvent, event_id: Uuid, metadata: Metadata) -> NewEvent {
    NewEvent {
        event_id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.to_data(),
        metadata,
    }
}

/// Decodes a stored event, upcasting older schemas.
///
/// # Errors
/// `Erased` when it is sealed still (its owner's key is gone), `Codec` when
/// it is not a task event this code can read.
pub fn decode(recorded: RecordedEvent) -> Result<TaskRecord, LoadError> {
    if crate::sealing::is_sealed(&recorded.data) {
        return Err(LoadError::Erased {
            stream_id: recorded.stream_id,
            version: recorded.version,
        });
    }
    let event = TaskEvent::decode(
        &recorded.event_type,
        recorded.schema_version,
        recorded.data.clone(),
    )
    .map_err(|source| LoadError::Codec {
        stream_id: recorded.stream_id.clone(),
        version: recorded.version,
        source,
    })?;
    Ok(TaskRecord { event, recorded })
}

/// Reads a task's history (up to `until`, when given), oldest first.
///
/// # Errors
/// When the store fails or holds an unreadable event.
pub async fn history(
    store: &dyn EventStore,
    id: TaskId,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<TaskRecord>, LoadError> {
    store
        .read_stream(&id.stream_id(), 0, until)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Folds a task's stream (up to `until`, when given) into its state.
///
/// # Errors
/// When the store fails or holds an unreadable event.
pub async fn load(
    store: &dyn EventStore,
    id: TaskId,
    until: Option<DateTime<Utc>>,
) -> Result<LoadedTask, LoadError> {
    let records = history(store, id, until).await?;
    Ok(LoadedTask {
        version: records.last().map(|r| r.recorded.version),
        state: records
            .iter()
            .fold(TaskState::Absent, |s, r| evolve(s, &r.event)),
    })
}
