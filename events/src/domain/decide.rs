//! `decide`: the rules of a task, as a pure function from state and command to events.

use super::command::{TaskCommand, TaskPatch};
use super::event::{
    TaskCreated, TaskDeleted, TaskDescriptionChanged, TaskDueDateChanged, TaskEvent,
    TaskPriorityChanged, TaskRestored, TaskStatusChanged, TaskTagsChanged, TaskTitleChanged,
};
use super::state::{Task, TaskState};
use super::values::UserId;

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("the task does not exist")]
    NotFound,
    /// Kept apart from `NotFound` for logs; callers must answer both alike so
    /// another user's task stays invisible.
    #[error("the task belongs to another user")]
    NotOwner,
    #[error("the task was deleted")]
    Deleted,
    #[error("a task with this id already exists")]
    AlreadyExists,
    /// Only a deleted task can be restored.
    #[error("the task is not deleted")]
    NotDeleted,
}

/// Decides which events a command produces. An empty list means nothing changes.
///
/// # Errors
/// When the task is absent, deleted or not the actor's, or already exists on
/// create; a restore of a task that is not deleted.
pub fn decide(state: &TaskState, command: TaskCommand) -> Result<Vec<TaskEvent>, TaskError> {
    match command {
        TaskCommand::Create(c) => match state {
            TaskState::Absent => Ok(vec![TaskEvent::Created(TaskCreated {
                task_id: c.task_id,
                owner_id: c.owner,
                title: c.title,
                description: c.description,
                status: c.status,
                priority: c.priority,
                due_at: c.due_at,
                tags: c.tags,
                occurred_at: c.at,
            })]),
            _ => Err(TaskError::AlreadyExists),
        },
        TaskCommand::Update { actor, patch, at } => {
            let task = owned_live_task(state, actor)?;
            Ok(changes(task, patch, at))
        }
        TaskCommand::Delete { actor, at } => {
            let task = owned_live_task(state, actor)?;
            Ok(vec![TaskEvent::Deleted(TaskDeleted {
                status: task.status,
                priority: task.priority,
                occurred_at: at,
            })])
        }
        TaskCommand::Restore { actor, at } => match owned_task(state, actor)? {
            TaskState::Deleted(task) => Ok(vec![TaskEvent::Restored(TaskRestored::of(task, at))]),
            _ => Err(TaskError::NotDeleted),
        },
        TaskCommand::Revert { actor, target, at } => {
            let (mut events, current) = match owned_task(state, actor)? {
                TaskState::Deleted(task) => {
                    let restored = TaskRestored::of(task, at);
                    let current = restored.task();
                    (vec![TaskEvent::Restored(restored)], current)
                }
                TaskState::Live(task) => (Vec::new(), task.clone()),
                TaskState::Absent => return Err(TaskError::NotFound),
            };
            events.extend(changes(&current, patch_to(*target), at));
            Ok(events)
        }
    }
}

/// The actor's task, live or deleted.
fn owned_task(state: &TaskState, actor: UserId) -> Result<&TaskState, TaskError> {
    match state {
        TaskState::Absent => Err(TaskError::NotFound),
        TaskState::Live(task) | TaskState::Deleted(task) if task.owner != actor => {
            Err(TaskError::NotOwner)
        }
        _ => Ok(state),
    }
}

/// A patch that sets every field to what `target` holds; `changes` keeps
/// only those that differ.
fn patch_to(target: Task) -> TaskPatch {
    TaskPatch {
        title: Some(target.title),
        description: Some(target.description),
        status: Some(target.status),
        priority: Some(target.priority),
        due_at: Some(target.due_at),
        tags: Some(target.tags),
    }
}

fn owned_live_task(state: &TaskState, actor: UserId) -> Result<&Task, TaskError> {
    match state {
        TaskState::Absent => Err(TaskError::NotFound),
        TaskState::Deleted(task) if task.owner != actor => Err(TaskError::NotOwner),
        TaskState::Deleted(_) => Err(TaskError::Deleted),
        TaskState::Live(task) if task.owner != actor => Err(TaskError::NotOwner),
        TaskState::Live(task) => Ok(task),
    }
}

/// One event per field that really changes.
fn changes(task: &Task, patch: TaskPatch, at: chrono::DateTime<chrono::Utc>) -> Vec<TaskEvent> {
    let mut events = Vec::new();
    if let Some(title) = patch.title.filter(|t| *t != task.title) {
        events.push(TaskEvent::TitleChanged(TaskTitleChanged {
            title,
            occurred_at: at,
        }));
    }
    if let Some(description) = patch.description.filter(|d| *d != task.description) {
        events.push(TaskEvent::DescriptionChanged(TaskDescriptionChanged {
            description,
            occurred_at: at,
        }));
    }
    if let Some(to) = patch.status.filter(|s| *s != task.status) {
        events.push(TaskEvent::StatusChanged(TaskStatusChanged {
            from: task.status,
            to,
            occurred_at: at,
        }));
    }
    if let Some(to) = patch.priority.filter(|p| *p != task.priority) {
        events.push(TaskEvent::PriorityChanged(TaskPriorityChanged {
            from: task.priority,
            to,
            occurred_at: at,
        }));
    }
    if let Some(due_at) = patch.due_at.filter(|d| *d != task.due_at) {
        events.push(TaskEvent::DueDateChanged(TaskDueDateChanged {
            due_at,
            occurred_at: at,
        }));
    }
    if let Some(tags) = patch.tags.filter(|t| *t != task.tags) {
        events.push(TaskEvent::TagsChanged(TaskTagsChanged {
            tags,
            occurred_at: at,
        }));
    }
    events
}
