//! The facts of a task's life, one event per fact, and their stored form.
//!
//! Each event type has a schema version. Stored events are never rewritten: an
//! older version is upcast to the current one when it is read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::values::{Priority, Status, Tags, TaskDescription, TaskId, TaskTitle, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub owner_id: UserId,
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Tags,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTitleChanged {
    pub title: TaskTitle,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDescriptionChanged {
    pub description: TaskDescription,
    pub occurred_at: DateTime<Utc>,
}

/// Carries `from` so projections that count by status need no lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusChanged {
    pub from: Status,
    pub to: Status,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPriorityChanged {
    pub from: Priority,
    pub to: Priority,
    pub occurred_at: DateTime<Utc>,
}

/// `due_at: None` means the due date was cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDueDateChanged {
    pub due_at: Option<DateTime<Utc>>,
    pub occurred_at: DateTime<Utc>,
}

/// The tag set was replaced by `tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTagsChanged {
    pub tags: Tags,
    pub occurred_at: DateTime<Utc>,
}

/// Records the status and priority the task had, so counts can be taken back
/// without reading anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDeleted {
    pub status: Status,
    pub priority: Priority,
    pub occurred_at: DateTime<Utc>,
}

/// A deleted task brought back. Carries the whole task as it was when it
/// was deleted, so a projection that dropped the row (the read model keeps
/// live tasks only) can put it back, and counts can add it back, without
/// reading anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRestored {
    pub task_id: TaskId,
    pub owner_id: UserId,
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Tags,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Created(TaskCreated),
    TitleChanged(TaskTitleChanged),
    DescriptionChanged(TaskDescriptionChanged),
    StatusChanged(TaskStatusChanged),
    PriorityChanged(TaskPriorityChanged),
    DueDateChanged(TaskDueDateChanged),
    TagsChanged(TaskTagsChanged),
    Deleted(TaskDeleted),
    Restored(TaskRestored),
}

/// A stored event that cannot be read back as a `TaskEvent`.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type {event_type} (schema {schema_version})")]
    UnknownType {
        event_type: String,
        schema_version: i16,
    },
    #[error("malformed {event_type} event: {source}")]
    Malformed {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

impl TaskEvent {
    pub const TYPES: &'static [&'static str] = &[
        "TaskCreated",
        "TaskTitleChanged",
        "TaskDescriptionChanged",
        "TaskStatusChanged",
        "TaskPriorityChanged",
        "TaskDueDateChanged",
        "TaskTagsChanged",
        "TaskDeleted",
        "TaskRestored",
    ];

    /// The stored name of the event, past tense.
    pub fn event_type(&self) -> &'static str {
        match self {
            TaskEvent::Created(_) => "TaskCreated",
            TaskEvent::TitleChanged(_) => "TaskTitleChanged",
            TaskEvent::DescriptionChanged(_) => "TaskDescriptionChanged",
            TaskEvent::StatusChanged(_) => "TaskStatusChanged",
            TaskEvent::PriorityChanged(_) => "TaskPriorityChanged",
            TaskEvent::DueDateChanged(_) => "TaskDueDateChanged",
            TaskEvent::TagsChanged(_) => "TaskTagsChanged",
            TaskEvent::Deleted(_) => "TaskDeleted",
            TaskEvent::Restored(_) => "TaskRestored",
        }
    }

    /// The schema version written today. `TaskCreated` is at 2: version 1 predates
    /// tags and due dates.
    pub fn schema_version(&self) -> i16 {
        match self {
            TaskEvent::Created(_) => 2,
            _ => 1,
        }
    }

    /// The schema version `event_type` is written at today, which a payload
    /// already upcast (a projection's copy) is decoded with; `None` for a
    /// type this code does not know.
    pub fn current_schema(event_type: &str) -> Option<i16> {
        match event_type {
            "TaskCreated" => Some(2),
            t if Self::TYPES.contains(&t) => Some(1),
            _ => None,
        }
    }

    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            TaskEvent::Created(e) => e.occurred_at,
            TaskEvent::TitleChanged(e) => e.occurred_at,
            TaskEvent::DescriptionChanged(e) => e.occurred_at,
            TaskEvent::StatusChanged(e) => e.occurred_at,
            TaskEvent::PriorityChanged(e) => e.occurred_at,
            TaskEvent::DueDateChanged(e) => e.occurred_at,
            TaskEvent::TagsChanged(e) => e.occurred_at,
            TaskEvent::Deleted(e) => e.occurred_at,
            TaskEvent::Restored(e) => e.occurred_at,
        }
    }

    /// The payload as stored (current schema).
    pub fn to_data(&self) -> Value {
        let result = match self {
            TaskEvent::Created(e) => serde_json::to_value(e),
            TaskEvent::TitleChanged(e) => serde_json::to_value(e),
            TaskEvent::DescriptionChanged(e) => serde_json::to_value(e),
            TaskEvent::StatusChanged(e) => serde_json::to_value(e),
            TaskEvent::PriorityChanged(e) => serde_json::to_value(e),
            TaskEvent::DueDateChanged(e) => serde_json::to_value(e),
            TaskEvent::TagsChanged(e) => serde_json::to_value(e),
            TaskEvent::Deleted(e) => serde_json::to_value(e),
            TaskEvent::Restored(e) => serde_json::to_value(e),
        };
        // Serialising these plain structs into a Value cannot fail: no maps with
        // non-string keys, no custom serialisers that error.
        result.unwrap_or(Value::Null)
    }

    /// Reads a stored event, upcasting older schema versions first.
    ///
    /// # Errors
    /// When the type is unknown or the payload does not match its schema.
    pub fn decode(event_type: &str, schema_version: i16, data: Value) -> Result<Self, CodecError> {
        let data = upcast(event_type, schema_version, data)?;
        let malformed = |source| CodecError::Malformed {
            event_type: event_type.to_owned(),
            source,
        };
        let event = match event_type {
            "TaskCreated" => TaskEvent::Created(serde_json::from_value(data).map_err(malformed)?),
            "TaskTitleChanged" => {
                TaskEvent::TitleChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskDescriptionChanged" => {
                TaskEvent::DescriptionChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskStatusChanged" => {
                TaskEvent::StatusChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskPriorityChanged" => {
                TaskEvent::PriorityChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskDueDateChanged" => {
                TaskEvent::DueDateChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskTagsChanged" => {
                TaskEvent::TagsChanged(serde_json::from_value(data).map_err(malformed)?)
            }
            "TaskDeleted" => TaskEvent::Deleted(serde_json::from_value(data).map_err(malformed)?),
            "TaskRestored" => TaskEvent::Restored(serde_json::from_value(data).map_err(malformed)?),
            other => {
                return Err(CodecError::UnknownType {
                    event_type: other.to_owned(),
                    schema_version,
                });
            }
        };
        Ok(event)
    }
}

/// Brings a stored payload up to the current schema of its type.
fn upcast(event_type: &str, schema_version: i16, mut data: Value) -> Result<Value, CodecError> {
    let unknown = || CodecError::UnknownType {
        event_type: event_type.to_owned(),
        schema_version,
    };
    match (event_type, schema_version) {
        ("TaskCreated", 1) => {
            // v1 had neither tags nor due dates: a v1 task had none of either.
            if let Value::Object(map) = &mut data {
                map.entry("tags").or_insert_with(|| Value::Array(vec![]));
                map.entry("due_at").or_insert(Value::Null);
            }
            Ok(data)
        }
        ("TaskCreated", 2) => Ok(data),
        (t, 1) if TaskEvent::TYPES.contains(&t) => Ok(data),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn created() -> TaskEvent {
        TaskEvent::Created(TaskCreated {
            task_id: TaskId(Uuid::now_v7()),
            owner_id: UserId(Uuid::new_v4()),
            title: TaskTitle::parse("Write tests").unwrap(),
            description: TaskDescription::parse("all of them").unwrap(),
            status: Status::InProgress,
            priority: Priority::High,
            due_at: Some(Utc::now()),
            tags: Tags::parse(&["a", "b"]).unwrap(),
            occurred_at: Utc::now(),
        })
    }

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let at = Utc::now();
        let events = vec![
            created(),
            TaskEvent::TitleChanged(TaskTitleChanged {
                title: TaskTitle::parse("x").unwrap(),
                occurred_at: at,
            }),
            TaskEvent::DescriptionChanged(TaskDescriptionChanged {
                description: TaskDescription::parse("").unwrap(),
                occurred_at: at,
            }),
            TaskEvent::StatusChanged(TaskStatusChanged {
                from: Status::Todo,
                to: Status::Done,
                occurred_at: at,
            }),
            TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::Low,
                to: Priority::Urgent,
                occurred_at: at,
            }),
            TaskEvent::DueDateChanged(TaskDueDateChanged {
                due_at: None,
                occurred_at: at,
            }),
            TaskEvent::TagsChanged(TaskTagsChanged {
                tags: Tags::parse(&["z"]).unwrap(),
                occurred_at: at,
            }),
            TaskEvent::Deleted(TaskDeleted {
                status: Status::Done,
                priority: Priority::Low,
                occurred_at: at,
            }),
            TaskEvent::Restored(TaskRestored {
                task_id: TaskId(Uuid::now_v7()),
                owner_id: UserId(Uuid::new_v4()),
                title: TaskTitle::parse("back").unwrap(),
                description: TaskDescription::parse("again").unwrap(),
                status: Status::Done,
                priority: Priority::Low,
                due_at: None,
                tags: Tags::parse(&["x"]).unwrap(),
                created_at: at,
                completed_at: Some(at),
                occurred_at: at,
            }),
        ];
        assert_eq!(events.len(), TaskEvent::TYPES.len());
        for event in events {
            let back =
                TaskEvent::decode(event.event_type(), event.schema_version(), event.to_data())
                    .unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_version_one_task_created_is_upcast_with_no_tags_and_no_due_date() {
        let v1 = json!({
            "task_id": Uuid::now_v7(), "owner_id": Uuid::new_v4(), "title": "Old",
            "description": "", "status": "todo", "priority": "low",
            "occurred_at": "2024-01-01T00:00:00Z"
        });
        let TaskEvent::Created(c) = TaskEvent::decode("TaskCreated", 1, v1).unwrap() else {
            panic!("expected TaskCreated");
        };
        assert!(c.tags.is_empty());
        assert_eq!(c.due_at, None);
        assert_eq!(c.title.as_str(), "Old");
    }

    #[test]
    fn unknown_types_and_versions_and_bad_payloads_are_errors() {
        assert!(matches!(
            TaskEvent::decode("TaskArchived", 1, json!({})),
            Err(CodecError::UnknownType { .. })
        ));
        assert!(matches!(
            TaskEvent::decode("TaskTitleChanged", 7, json!({})),
            Err(CodecError::UnknownType { .. })
        ));
        assert!(matches!(
            TaskEvent::decode(
                "TaskTitleChanged",
                1,
                json!({"title": "", "occurred_at": "2024-01-01T00:00:00Z"})
            ),
            Err(CodecError::Malformed { .. })
        ));
    }
}
