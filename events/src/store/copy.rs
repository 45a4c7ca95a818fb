//! Copying one event log into another (Postgres into EventStoreDB, say), keeping
//! every stream id, version and event id.
//!
//! Events are appended in log order, one append per original commit of one
//! stream, each expecting the version just before it. A re-run after an
//! interruption appends the same groups with the same ids and expected
//! versions, which the target answers as retries: nothing is written twice.

use std::time::Duration;

use super::{EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError};

/// How many events one read of the source asks for.
const PAGE: usize = 500;
/// How long to wait when the source holds back committed events (Postgres
/// shows a commit only once every older transaction has ended).
const HELD_BACK: Duration = Duration::from_millis(50);

/// Where a copy stands, reported after every append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Events the target did not hold and now does.
    pub copied: u64,
    /// Events the target already held (an earlier, interrupted run).
    pub already_there: u64,
    /// The source position copied up to; pass it as `after` to resume without
    /// re-reading what came before.
    pub position: Option<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading the source log failed: {0}")]
    Source(#[source] StoreError),
    #[error("appending to the target log failed: {0}")]
    Target(#[source] StoreError),
    /// The target holds other events where these belong: it is not an empty log
    /// or an earlier copy of this source.
    #[error("the target already holds different events in {stream_id} at version {version}")]
    Diverged {
        stream_id: String,
        version: u64,
        #[source]
        source: StoreError,
    },
}

/// Copies every event of `from` after `after` (all when `None`) into `to`, at
/// least up to `from`'s head when the copy starts (and whatever follows while
/// it runs).
///
/// # Errors
/// When either log fails, or `to` holds other events in the same places.
pub async fn copy_log(
    from: &dyn EventStore,
    to: &dyn EventStore,
    after: Option<Position>,
    mut progress: impl FnMut(&CopyProgress) + Send,
) -> Result<CopyProgress, CopyError> {
    let mut done = CopyProgress {
        position: after,
        ..CopyProgress::default()
    };
    // An empty page is not the end while the head is ahead: its last events
    // may still be held back.
    let head = from.head().await.map_err(CopyError::Source)?;
    loop {
        let page = from
            .read_all(done.position, PAGE)
            .await
            .map_err(CopyError::Source)?;
        if page.is_empty() {
            if head > done.position {
                tokio::time::sleep(HELD_BACK).await;
                continue;
            }
            return Ok(done);
        }
        // `read_all` never splits a commit, so groups are the same on every run.
        for group in commit_groups(&page) {
            let duplicate = append_group(to, group).await?;
            let n = group.len() as u64;
            if duplicate {
                done.already_there += n;
            } else {
                done.copied += n;
            }
            done.position = group.last().map(|e| e.position);
            progress(&done);
        }
    }
}

/// Consecutive events of one stream and one commit: what one append wrote.
fn commit_groups(events: &[RecordedEvent]) -> Vec<&[RecordedEvent]> {
    events
        .chunk_by(|a, b| {
            a.stream_id == b.stream_id
                && a.position.commit == b.position.commit
                && a.version + 1 == b.version
        })
        .collect()
}

/// The expected version that puts `first_version` exactly where it was.
fn expected_before(first_version: u64) -> ExpectedVersion {
    match first_version.checked_sub(1) {
        None => ExpectedVersion::NoStream,
        Some(v) => ExpectedVersion::Exact(v),
    }
}

async fn append_group(to: &dyn EventStore, group: &[RecordedEvent]) -> Result<bool, CopyError> {
    let Some(first) = group.first() else {
        return Ok(false);
    };
    let events = group
        .iter()
        .map(|e| NewEvent {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        })
        .collect();
    match to
        .append(&first.stream_id, expected_before(first.version), events)
        .await
    {
        Ok(outcome) => Ok(outcome.duplicate),
        Err(e @ (StoreError::Conflict { .. } | StoreError::IdempotencyMismatch)) => {
            Err(CopyError::Diverged {
                stream_id: first.stream_id.clone(),
                version: first.version,
                source: e,
            })
        }
        Err(e) => Err(CopyError::Target(e)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::Metadata;

    fn at(stream: &str, version: u64, commit: u64) -> RecordedEvent {
        RecordedEvent {
            position: Position::new(commit, version),
            stream_id: stream.into(),
            version,
            event_id: Uuid::new_v4(),
            event_type: "TaskCreated".into(),
            schema_version: 1,
            data: json!({}),
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn groups_are_one_stream_and_one_commit() {
        let events = [
            at("task-a", 0, 1),
            at("task-a", 1, 1),
            at("task-b", 0, 2),
            at("task-a", 2, 3),
            at("task-a", 3, 4),
        ];
        let sizes: Vec<usize> = commit_groups(&events).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1]);
    }

    #[test]
    fn each_group_expects_the_version_before_its_first_event() {
        assert_eq!(expected_before(0), ExpectedVersion::NoStream);
        assert_eq!(expected_before(1), ExpectedVersion::Exact(0));
        assert_eq!(expected_before(42), ExpectedVersion::Exact(41));
    }
}
