//! A task as its events leave it, and `evolve`, the fold that gets it there.

use chrono::{DateTime, Utc};

use super::event::{TaskEvent, TaskRestored};
use super::values::{Priority, Status, Tags, TaskDescription, TaskId, TaskTitle, UserId};

/// Every field of a live task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub owner: UserId,
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Tags,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// The aggregate's state: a task is first absent, then live; a deleted task
/// can be restored (and deleted again).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TaskState {
    #[default]
    Absent,
    Live(Task),
    Deleted(Task),
}

impl TaskState {
    pub fn live(&self) -> Option<&Task> {
        match self {
            TaskState::Live(task) => Some(task),
            _ => None,
        }
    }
}

/// Folds one event into the state. Total and free of rules: `decide` made sure
/// the event fits, so an event that does not (which only a corrupt log could hold)
/// leaves the state as it was.
pub fn evolve(state: TaskState, event: &TaskEvent) -> TaskState {
    match (state, event) {
        (TaskState::Absent, TaskEvent::Created(e)) => TaskState::Live(Task {
            id: e.task_id,
            owner: e.owner_id,
            title: e.title.clone(),
            description: e.description.clone(),
            status: e.status,
            priority: e.priority,
            due_at: e.due_at,
            tags: e.tags.clone(),
            created_at: e.occurred_at,
            updated_at: e.occurred_at,
            completed_at: (e.status == Status::Done).then_some(e.occurred_at),
        }),
        (TaskState::Live(task), TaskEvent::Deleted(_)) => TaskState::Deleted(task),
        (TaskState::Deleted(_), TaskEvent::Restored(e)) => TaskState::Live(e.task()),
        (TaskState::Live(mut task), event) => {
            match event {
                TaskEvent::TitleChanged(e) => task.title = e.title.clone(),
                TaskEvent::DescriptionChanged(e) => task.description = e.description.clone(),
                TaskEvent::StatusChanged(e) => {
                    task.status = e.to;
                    task.completed_at = (e.to == Status::Done).then_some(e.occurred_at);
                }
                TaskEvent::PriorityChanged(e) => task.priority = e.to,
                TaskEvent::DueDateChanged(e) => task.due_at = e.due_at,
                TaskEvent::TagsChanged(e) => task.tags = e.tags.clone(),
                TaskEvent::Created(_) | TaskEvent::Deleted(_) | TaskEvent::Restored(_) => {
                    return TaskState::Live(task);
                }
            }
            task.updated_at = event.occurred_at();
            TaskState::Live(task)
        }
        (state, _) => state,
    }
}

impl TaskRestored {
    /// The task this event brings back; restoring counts as an update.
    pub fn task(&self) -> Task {
        Task {
            id: self.task_id,
            owner: self.owner_id,
            title: self.title.clone(),
            description: self.description.clone(),
            status: self.status,
            priority: self.priority,
            due_at: self.due_at,
            tags: self.tags.clone(),
            created_at: self.created_at,
            updated_at: self.occurred_at,
            completed_at: self.completed_at,
        }
    }

    /// The event that brings `task` back at `at`.
    pub fn of(task: &Task, at: DateTime<Utc>) -> Self {
        Self {
            task_id: task.id,
            owner_id: task.owner,
            title: task.title.clone(),
            description: task.description.clone(),
            status: task.status,
            priority: task.priority,
            due_at: task.due_at,
            tags: task.tags.clone(),
            created_at: task.created_at,
            completed_at: task.completed_at,
            occurred_at: at,
        }
    }
}

/// Folds a whole history from the start.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> TaskState {
    events.into_iter().fold(TaskState::Absent, evolve)
}
