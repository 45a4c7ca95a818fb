//! The event log: one `EventStore` trait and its adapters.
//!
//! A store holds named streams of events (`task-<uuid>`), each versioned from 0,
//! and one global order over all of them (the log) that subscribers tail.

pub mod copy;
#[cfg(feature = "eventstoredb")]
pub mod eventstoredb;
mod open;
mod position;
pub mod postgres;
pub mod shared;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use open::{Backend, OpenError, backend_for, open, open_existing, open_when_ready};
pub use position::Position;

/// What the writer believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version.
    Exact(u64),
}

/// Who and what caused an event; stored beside it, never part of the fact itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<Uuid>,
    /// The tenant the stream belongs to, so projections partitioned by owner
    /// need no lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What caused the command, e.g. the client's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Set on the events of a revert: the version whose fields they bring back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
}

/// An event about to be appended. `event_id` makes a retried append harmless.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub data: Value,
    pub metadata: Metadata,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// The result of an append: the stream's version after it and the log position
/// of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub version: u64,
    pub position: Position,
    /// True when every event was already stored (a retry) and nothing was written.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version; `actual` is `None` when it
    /// does not exist.
    #[error("expected version {expected:?}, stream is at {actual:?}")]
    Conflict {
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// Some but not all of the event ids are stored, or they belong to another
    /// stream: not a retry of one earlier append.
    #[error("event ids were partly stored already, or under another stream")]
    IdempotencyMismatch,
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("the event store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the event store holds data it cannot read: {0}")]
    Corrupt(String),
    /// A task event of an owner whose account (and so data key) is gone:
    /// nothing more of theirs is written.
    #[error("the account {owner} was erased")]
    Erased { owner: Uuid },
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

/// Batches of events in log order. A batch never splits the events of one
/// commit, so a consumer's checkpoint always lies on a commit boundary.
pub type EventBatches = BoxStream<'static, Result<Vec<RecordedEvent>, StoreError>>;

/// The log, whichever server holds it.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to a stream atomically, if it is at `expected`.
    ///
    /// # Errors
    /// `Conflict` on a version mismatch, `IdempotencyMismatch` for half-known
    /// ids, `Unavailable` when the server cannot be reached.
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads a stream from `from_version` on, oldest first; with `until`, only
    /// events recorded at or before that instant.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to about `max` events of the whole log after `after` (from the
    /// start when `None`), in log order, never splitting a commit.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Tails the whole log after `after`: catch-up, then live. Every event comes
    /// exactly once, in order, with no gap. Errors are reported and the stream
    /// keeps going (it retries), so a consumer may log them and read on.
    fn subscribe_all(&self, after: Option<Position>) -> EventBatches;

    /// The position of the log's last event, if any.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    async fn head(&self) -> Result<Option<Position>, StoreError>;

    /// Answers when the server is reachable, for readiness checks.
    ///
    /// # Errors
    /// `Unavailable` when it is not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many events follow `after`, counting no further than `cap`:
    /// `(count, reached_cap)`. For lag reports. By default the events are
    /// read, at most [`READ_COUNT_CAP`] of them; an adapter that can count
    /// without reading says so by overriding it.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    async fn count_after(
        &self,
        after: Option<Position>,
        cap: u64,
    ) -> Result<(u64, bool), StoreError> {
        let cap = cap.min(READ_COUNT_CAP);
        let read = self
            .read_all(after, usize::try_from(cap).unwrap_or(usize::MAX))
            .await?
            .len() as u64;
        Ok((read.min(cap), read >= cap))
    }

    /// About how many events the log holds, when the adapter knows it
    /// cheaply (a progress bar's total); `None` otherwise.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    async fn approximate_len(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Positions that cut the log from `first` to `head` into about `parts`
    /// stretches that a replay may read at once: each cut lies just after the
    /// last event of a commit, so `read_all(Some(cut), ..)` starts at a commit
    /// and a stretch `(previous cut, cut]` holds whole commits. Empty (one
    /// stretch) when the adapter cannot cut its log.
    fn split_points(&self, first: Position, head: Position, parts: usize) -> Vec<Position> {
        let _ = (first, head, parts);
        Vec::new()
    }
}

/// The most events [`EventStore::count_after`] reads by default.
pub const READ_COUNT_CAP: u64 = 10_000;
