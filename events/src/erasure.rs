//! The erasure of an account on the log: one `UserErased` event in a stream
//! of its own (`erasure-<user id>`), appended after the account's data key
//! is destroyed. Projections fold it into deleting everything of that owner
//! (rows, changes, counts) exactly once with their checkpoints; a replay
//! (`rebuild`, `verify`) meets it at the same place in the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::UserId;
use crate::store::{Metadata, NewEvent, RecordedEvent};

/// The event type, and the prefix of the streams that hold it.
pub const USER_ERASED: &str = "UserErased";
pub const STREAM_PREFIX: &str = "erasure-";

/// The fact: the account and all its text are gone. Carries no personal
/// data, only the id the other events name as their owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserErased {
    pub user_id: UserId,
    pub occurred_at: DateTime<Utc>,
}

/// The stream of `user`'s erasure: one event, appended with `NoStream`, so
/// a retried erasure finds it there.
pub fn stream_id(user: UserId) -> String {
    format!("{STREAM_PREFIX}{}", user.0)
}

impl UserErased {
    pub fn to_new_event(&self, event_id: Uuid, request_id: Option<String>) -> NewEvent {
        NewEvent {
            event_id,
            event_type: USER_ERASED.to_owned(),
            schema_version: 1,
            // A struct of a UUID and a time always serialises.
            data: serde_json::to_value(self).unwrap_or_default(),
            metadata: Metadata {
                actor_id: Some(self.user_id.0),
                owner_id: Some(self.user_id.0),
                request_id,
                causation_id: None,
                reverted_to: None,
            },
        }
    }

    /// The erasure a recorded event states, if it is one.
    pub fn from_recorded(recorded: &RecordedEvent) -> Option<Self> {
        if recorded.event_type != USER_ERASED || !recorded.stream_id.starts_with(STREAM_PREFIX) {
            return None;
        }
        serde_json::from_value(recorded.data.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    #[test]
    fn an_erasure_event_round_trips_through_its_stored_form() {
        let erased = UserErased {
            user_id: UserId(Uuid::now_v7()),
            occurred_at: Utc::now(),
        };
        let new = erased.to_new_event(Uuid::now_v7(), None);
        let recorded = RecordedEvent {
            position: Position::new(1, 0),
            stream_id: stream_id(erased.user_id),
            version: 0,
            event_id: new.event_id,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            data: new.data.clone(),
            metadata: new.metadata.clone(),
            recorded_at: Utc::now(),
        };
        assert_eq!(UserErased::from_recorded(&recorded), Some(erased));
        let elsewhere = RecordedEvent {
            stream_id: "task-x".into(),
            ..recorded
        };
        assert_eq!(UserErased::from_recorded(&elsewhere), None);
    }
}
