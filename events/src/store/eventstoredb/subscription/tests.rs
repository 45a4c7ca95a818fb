//! The batching rules of the `$all` tail: whole commits, no repeats, and a
//! reset that leaves the resume point on the last event handed out.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::Batcher;
use crate::store::{Metadata, Position, RecordedEvent};

fn at(commit: u64, prepare: u64) -> RecordedEvent {
    RecordedEvent {
        position: Position::new(commit, prepare),
        stream_id: "task-1".into(),
        version: prepare,
        event_id: Uuid::new_v4(),
        event_type: "TaskTitleChanged".into(),
        schema_version: 1,
        data: json!({}),
        metadata: Metadata::default(),
        recorded_at: Utc::now(),
    }
}

fn positions(batch: &[RecordedEvent]) -> Vec<(u64, u64)> {
    batch
        .iter()
        .map(|e| (e.position.commit, e.position.prepare))
        .collect()
}

#[test]
fn a_full_batch_is_handed_out_only_when_a_new_commit_starts() {
    let mut b = Batcher::new(None, 2);
    assert!(b.offer(at(1, 1)).is_none());
    assert!(b.offer(at(2, 2)).is_none());
    // Over the size, but the same commit: it stays whole.
    assert!(b.offer(at(2, 3)).is_none());
    let batch = b.offer(at(3, 4)).expect("a new commit closes the batch");
    assert_eq!(positions(&batch), vec![(1, 1), (2, 2), (2, 3)]);
    assert_eq!(b.after(), Some(Position::new(2, 3)));
    assert_eq!(positions(&b.flush().unwrap()), vec![(3, 4)]);
    assert!(b.flush().is_none(), "nothing pending");
}

#[test]
fn events_at_or_before_the_checkpoint_are_not_repeated() {
    let mut b = Batcher::new(Some(Position::new(5, 5)), 10);
    assert!(b.offer(at(4, 4)).is_none());
    assert!(b.offer(at(5, 5)).is_none());
    assert!(b.is_empty(), "a resubscription's overlap is dropped");
    b.offer(at(6, 6));
    b.offer(at(6, 6)); // the same event twice
    assert_eq!(positions(&b.flush().unwrap()), vec![(6, 6)]);
}

#[test]
fn a_reset_drops_what_was_not_handed_out_and_resumes_after_the_last_batch() {
    let mut b = Batcher::new(None, 10);
    b.offer(at(1, 1));
    b.flush();
    b.offer(at(2, 2));
    b.offer(at(3, 3));
    b.reset();
    assert!(b.is_empty());
    assert_eq!(b.after(), Some(Position::new(1, 1)));
    // The resubscription delivers them again, once.
    b.offer(at(2, 2));
    b.offer(at(3, 3));
    assert_eq!(positions(&b.flush().unwrap()), vec![(2, 2), (3, 3)]);
}
