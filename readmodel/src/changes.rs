//! The change feed's contract: `readmodel.changes` (migration 0004: one row
//! per task event, keyed by owner and log position, written by the
//! projector's `changes` projection, read by the query service's feed and
//! SSE streams), its row in `readmodel.checkpoints`, and the channel its
//! batches are announced on.

/// The projection's name and its row in `readmodel.checkpoints`.
pub const CHANGES: &str = "changes";

/// Each committed batch is announced here in the [`crate::notice`] format:
/// `<commit>;<owner>,...`, naming the owners whose changes it added.
pub const CHANNEL: &str = "tasklog_changes";
