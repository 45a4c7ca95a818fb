//! What a user asks of a task. Every field is already parsed; time and ids
//! arrive inside the command so `decide` stays pure.

use chrono::{DateTime, Utc};

use super::state::Task;
use super::values::{Priority, Status, Tags, TaskDescription, TaskId, TaskTitle, UserId};

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTask {
    pub task_id: TaskId,
    pub owner: UserId,
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Tags,
    pub at: DateTime<Utc>,
}

/// Fields left `None` are kept. `due_at: Some(None)` clears the due date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<TaskTitle>,
    pub description: Option<TaskDescription>,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create(CreateTask),
    Update {
        actor: UserId,
        patch: TaskPatch,
        at: DateTime<Utc>,
    },
    Delete {
        actor: UserId,
        at: DateTime<Utc>,
    },
    /// Brings a deleted task back as it was.
    Restore {
        actor: UserId,
        at: DateTime<Utc>,
    },
    /// Makes the task's fields what they were in `target` (the task folded to
    /// an earlier version, which the caller read): ordinary change events,
    /// after a restore when the task is deleted.
    Revert {
        actor: UserId,
        target: Box<Task>,
        at: DateTime<Utc>,
    },
}
