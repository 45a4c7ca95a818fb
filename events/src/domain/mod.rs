//! The Task aggregate: values, events, commands, `decide` and `evolve`. No I/O.

mod command;
mod decide;
mod event;
mod state;
mod values;

#[cfg(test)]
mod scenarios;

pub use command::{CreateTask, TaskCommand, TaskPatch};
pub use decide::{TaskError, decide};
pub use event::{
    CodecError, TaskCreated, TaskDeleted, TaskDescriptionChanged, TaskDueDateChanged, TaskEvent,
    TaskPriorityChanged, TaskRestored, TaskStatusChanged, TaskTagsChanged, TaskTitleChanged,
};
pub use state::{Task, TaskState, evolve, fold};
pub use values::{
    InvalidValue, Priority, Status, Tag, Tags, TaskDescription, TaskId, TaskTitle, UserId,
};
