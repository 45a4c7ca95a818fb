//! Owners of task events that carry none: old events may predate the owner
//! in metadata, so the owner is read from their stream's `TaskCreated`.

use std::collections::HashMap;

use tasklog_events::EventStore;
use tasklog_events::domain::{TaskEvent, TaskId, UserId};

use crate::error::ProjectorError;
use crate::fold::TaskEventAt;

/// Fills in the owner of every event without one, from a `TaskCreated` in
/// `events` or else the first event of its stream. Events whose owner cannot
/// be found keep `None` (and are logged).
///
/// # Errors
/// When the log cannot be read.
pub async fn resolve_owners(
    store: &dyn EventStore,
    events: &mut [TaskEventAt],
) -> Result<(), ProjectorError> {
    let mut owners: HashMap<TaskId, UserId> = events
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Created(c) => Some((e.task_id, c.owner_id)),
            _ => None,
        })
        .collect();
    let unowned: Vec<TaskId> = events
        .iter()
        .filter(|e| e.owner.is_none())
        .map(|e| e.task_id)
        .collect();
    for id in unowned {
        if owners.contains_key(&id) {
            continue;
        }
        let first = store.read_stream(&id.stream_id(), 0, None).await?;
        let created = first
            .into_iter()
            .next()
            .and_then(|r| TaskEvent::decode(&r.event_type, r.schema_version, r.data).ok());
        if let Some(TaskEvent::Created(c)) = created {
            owners.insert(id, c.owner_id);
        }
    }
    for e in events.iter_mut().filter(|e| e.owner.is_none()) {
        e.owner = owners.get(&e.task_id).copied();
        if e.owner.is_none() {
            tracing::error!(task_id = %e.task_id, "no owner found for a task event; it is left out");
        }
    }
    Ok(())
}
