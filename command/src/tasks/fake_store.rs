//! A scripted event store for unit tests of the command loop: a fixed stream,
//! and appends that always lose the race, which real Postgres cannot be made
//! to do on demand. It notes where each stream read began.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tasklog_events::domain::{
    CreateTask, Priority, Status, Tags, TaskCommand, TaskDescription, TaskId, TaskState, TaskTitle,
    UserId, decide,
};
use tasklog_events::task_stream::to_new_event;
use tasklog_events::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StoreError,
};
use uuid::Uuid;

pub struct AlwaysConflicting {
    stream: Vec<RecordedEvent>,
    pub appends: AtomicUsize,
    /// The version each `read_stream` began at.
    pub reads: Mutex<Vec<u64>>,
}

impl AlwaysConflicting {
    /// A store holding one live task of `owner`.
    pub fn with_task(id: TaskId, owner: UserId) -> Self {
        let command = TaskCommand::Create(CreateTask {
            task_id: id,
            owner,
            title: TaskTitle::parse("T").unwrap(),
            description: TaskDescription::default(),
            status: Status::Todo,
            priority: Priority::Medium,
            due_at: None,
            tags: Tags::default(),
            at: Utc::now(),
        });
        let event = &decide(&TaskState::Absent, command).unwrap()[0];
        let new = to_new_event(event, Uuid::now_v7(), Metadata::default());
        let recorded = RecordedEvent {
            position: Position::new(1, 1),
            stream_id: id.stream_id(),
            version: 0,
            event_id: new.event_id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            data: new.data,
            metadata: new.metadata,
            recorded_at: Utc::now(),
        };
        Self {
            stream: vec![recorded],
            appends: AtomicUsize::new(0),
            reads: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl EventStore for AlwaysConflicting {
    async fn append(
        &self,
        _: &str,
        expected: ExpectedVersion,
        _: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst) as u64;
        Err(StoreError::Conflict {
            expected,
            actual: Some(n + 1),
        })
    }

    async fn read_stream(
        &self,
        _: &str,
        from_version: u64,
        _: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.lock().unwrap().push(from_version);
        Ok(self
            .stream
            .iter()
            .filter(|e| e.version >= from_version)
            .cloned()
            .collect())
    }

    async fn read_all(
        &self,
        _: Option<Position>,
        _: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(vec![])
    }

    fn subscribe_all(&self, _: Option<Position>) -> EventBatches {
        futures::stream::empty().boxed()
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        Ok(None)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
