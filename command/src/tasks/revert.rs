//! Revert: the task as it stood at an earlier version of its stream, which
//! `decide` turns into the ordinary change events (after a restore when the
//! task is deleted). The events say `reverted_to` in their metadata.

use tasklog_events::domain::{Task, TaskId, TaskState, UserId, evolve};

use super::TaskCommandError;
use super::change::Loaded;

/// The task folded to `to_version`.
///
/// # Errors
/// `NotFound` when the task is not `actor`'s (checked first, so a stranger
/// learns nothing from the version), `BadRevertTarget` when the stream never
/// reached that version or the task was deleted at it.
pub(super) fn target(
    loaded: &Loaded,
    id: TaskId,
    actor: UserId,
    to_version: u64,
) -> Result<Task, TaskCommandError> {
    match &loaded.state {
        TaskState::Live(task) | TaskState::Deleted(task) if task.owner == actor => {}
        _ => return Err(TaskCommandError::NotFound(id)),
    }
    if to_version > loaded.version {
        return Err(TaskCommandError::BadRevertTarget(format!(
            "the task is at version {}",
            loaded.version
        )));
    }
    let state = loaded
        .records
        .iter()
        .take_while(|r| r.recorded.version <= to_version)
        .fold(TaskState::Absent, |s, r| evolve(s, &r.event));
    match state {
        TaskState::Live(task) => Ok(task),
        _ => Err(TaskCommandError::BadRevertTarget(
            "the task was deleted at that version".to_owned(),
        )),
    }
}
