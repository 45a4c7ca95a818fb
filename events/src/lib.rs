//! Tasklog's domain and event log: the Task aggregate (`decide`/`evolve`) and
//! the `EventStore` trait with its Postgres and EventStoreDB adapters.

pub mod domain;
pub mod erasure;
pub mod sealing;
pub mod store;
pub mod task_stream;

pub use store::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StoreError,
};
