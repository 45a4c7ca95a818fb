//! What the runner, `catch_up` and `rebuild` need from a projection: its
//! checkpoint, and applying one batch atomically with it.

use std::fmt::Debug;

use async_trait::async_trait;
use tasklog_events::{EventStore, Position, RecordedEvent};

use crate::error::ProjectorError;
use crate::fold::Skipped;

/// The outcome of applying a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<C> {
    /// The batch is in, and this is the new checkpoint.
    Done(C),
    /// The stored checkpoint is not the one the batch was read after: another
    /// writer (a second instance, a replay, a rebuild's swap) moved it. Nothing
    /// was written; go on from the stored one.
    Moved(C),
}

#[async_trait]
pub trait Projection: Send + Sync {
    type Checkpoint: Clone + Debug + PartialEq + Send + Sync;

    /// The projection's name, as metrics, leases and `status` show it.
    fn name(&self) -> &'static str;

    fn position(checkpoint: &Self::Checkpoint) -> Option<Position>;

    /// Reads the stored checkpoint.
    ///
    /// # Errors
    /// When the projection's store is unreachable.
    async fn checkpoint(&self) -> Result<Self::Checkpoint, ProjectorError>;

    /// Applies `events` (the log's events after `expected`, in order) and moves
    /// the checkpoint to the last of them, all or nothing, if the stored
    /// checkpoint is still `expected`.
    ///
    /// # Errors
    /// When a store fails; nothing is applied then.
    async fn apply(
        &self,
        store: &dyn EventStore,
        expected: &Self::Checkpoint,
        events: &[RecordedEvent],
    ) -> Result<Applied<Self::Checkpoint>, ProjectorError>;
}

/// Only the events after `after` (batches are in log order): a subscription
/// restarted from an older position must not hand events in twice.
pub fn after(events: &[RecordedEvent], after: Option<Position>) -> &[RecordedEvent] {
    let start = events.partition_point(|e| Some(e.position) <= after);
    &events[start..]
}

/// Logs and counts events a projection cannot read: better a loud gap than a
/// projector stuck forever on one bad event.
pub fn report_skipped(projection: &'static str, skipped: &[Skipped]) {
    for s in skipped {
        tracing::error!(
            projection,
            position = %s.position,
            stream_id = %s.stream_id,
            reason = %s.reason,
            "skipping an event that cannot be decoded"
        );
        metrics::counter!("projector_skipped_events_total", "projection" => projection)
            .increment(1);
    }
}
