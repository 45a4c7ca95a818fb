//! `decide`: the rules of a task, as a pure function from state and command to events.

use super::command::{TaskCommand, TaskPatch};
use super::event::{
    TaskCreated, TaskDeleted, TaskDescriptionChanged, TaskDueDateChanged, TaskEvent,
    TaskPriorityChanged, TaskStatusChanged, TaskTagsChanged, TaskTitleChanged,
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
}

/// Decides which events a command produces. An empty list means nothing changes.
///
/// # Errors
/// When the task is absent, deleted or not the actor's, or already exists on create.
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
