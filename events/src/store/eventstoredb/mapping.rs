//! Pure translations between the `EventStore` types and the KurrentDB client's,
//! kept apart from the network code so every rule is unit-tested without a server.

use chrono::{DateTime, TimeZone, Utc};
use kurrentdb::{CurrentRevision, EventData, StreamState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, StoreError};

/// The task streams; `$all` reads and subscriptions filter on it and on the
/// erasure streams' prefix (`crate::erasure::STREAM_PREFIX`) server-side, so
/// system and foreign streams never cross the wire.
pub const STREAM_PREFIX: &str = "task-";

pub fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::Exact(v) => StreamState::StreamRevision(v),
    }
}

pub fn to_position(p: kurrentdb::Position) -> Position {
    Position::new(p.commit, p.prepare)
}

pub fn from_position(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// Maps a client error. `expected` is what the failed append asked for, so a
/// conflict carries the caller's own value rather than the server's echo.
pub fn store_error(e: kurrentdb::Error, expected: ExpectedVersion) -> StoreError {
    match e {
        kurrentdb::Error::WrongExpectedVersion { current, .. } => StoreError::Conflict {
            expected,
            actual: match current {
                CurrentRevision::Current(v) => Some(v),
                CurrentRevision::NoStream => None,
            },
        },
        // Tasklog never deletes a stream (DESIGN rule 6): one that is gone was
        // removed behind the application's back.
        kurrentdb::Error::ResourceDeleted => {
            StoreError::Corrupt("a task stream was deleted on the server".into())
        }
        kurrentdb::Error::InternalParsingError(m) => {
            StoreError::Corrupt(format!("unreadable server response: {m}"))
        }
        // Transport, leader changes, deadlines, access denied: the caller can
        // only wait or retry (an append retried with the same ids is harmless).
        other => StoreError::unavailable(other),
    }
}

/// What the log stores beside the payload (the event's custom metadata JSON).
/// The schema version rides here because the server has no field for it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredMetadata {
    pub schema_version: i16,
    #[serde(flatten)]
    pub metadata: Metadata,
}

pub fn event_data(event: NewEvent) -> Result<EventData, StoreError> {
    let encode = |e: serde_json::Error| StoreError::Corrupt(format!("cannot encode event: {e}"));
    let stored = StoredMetadata {
        schema_version: event.schema_version,
        metadata: event.metadata,
    };
    EventData::json(&event.event_type, &event.data)
        .map_err(encode)?
        .id(event.event_id)
        .metadata_as_json(&stored)
        .map_err(encode)
}

/// The server's `created` stamp: 100 ns ticks since the Unix epoch. Parsed here
/// because the client rounds it down to whole seconds, too coarse for as-of reads.
pub fn created_at(ticks: &str) -> Option<DateTime<Utc>> {
    let ticks: i64 = ticks.parse().ok()?;
    let secs = ticks.div_euclid(10_000_000);
    let nanos = u32::try_from(ticks.rem_euclid(10_000_000) * 100).ok()?;
    Utc.timestamp_opt(secs, nanos).single()
}

/// The parts of a stored event this adapter reads, borrowed from the client's
/// type (which tests cannot build).
pub struct RawEvent<'a> {
    pub stream_id: &'a str,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub custom_metadata: &'a [u8],
    pub position: kurrentdb::Position,
    pub created_ticks: Option<&'a str>,
    pub created: DateTime<Utc>,
}

pub fn decode(raw: RawEvent<'_>) -> Result<RecordedEvent, StoreError> {
    let corrupt = |what: &str, err: serde_json::Error| {
        StoreError::Corrupt(format!(
            "{what} of {}@{}: {err}",
            raw.stream_id, raw.revision
        ))
    };
    let stored: StoredMetadata =
        serde_json::from_slice(raw.custom_metadata).map_err(|err| corrupt("metadata", err))?;
    Ok(RecordedEvent {
        position: to_position(raw.position),
        stream_id: raw.stream_id.to_owned(),
        version: raw.revision,
        event_id: raw.id,
        event_type: raw.event_type.to_owned(),
        schema_version: stored.schema_version,
        data: serde_json::from_slice(raw.data).map_err(|err| corrupt("data", err))?,
        metadata: stored.metadata,
        recorded_at: raw
            .created_ticks
            .and_then(created_at)
            .unwrap_or(raw.created),
    })
}

pub fn recorded_event(e: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    decode(RawEvent {
        stream_id: e.stream_id(),
        revision: e.revision,
        id: e.id,
        event_type: &e.event_type,
        data: &e.data,
        custom_metadata: &e.custom_metadata,
        position: e.position,
        created_ticks: e.metadata.get("created").map(String::as_str),
        created: e.created,
    })
}

/// Whether an append's event ids are already stored in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// None of them: a new append.
    None,
    /// All of them: a retry; answer with the stored last event.
    All { version: u64, position: Position },
    /// Some of them: not a retry of one earlier append.
    Some,
}

/// Classifies `ids` against the stored events where a retry of them would be.
pub fn classify(window: &[RecordedEvent], ids: &[Uuid]) -> Known {
    let found: Vec<&RecordedEvent> = ids
        .iter()
        .filter_map(|id| window.iter().find(|e| e.event_id == *id))
        .collect();
    match found.iter().max_by_key(|e| e.version) {
        None => Known::None,
        Some(last) if found.len() == ids.len() => Known::All {
            version: last.version,
            position: last.position,
        },
        Some(_) => Known::Some,
    }
}

/// Where a batch of at least `max` events may end without splitting a commit:
/// the first index at or after `max` where the commit position changes. `None`
/// when every event from `max - 1` on shares one commit (read further first).
pub fn commit_boundary(events: &[RecordedEvent], max: usize) -> Option<usize> {
    let max = max.max(1);
    if events.len() <= max {
        return None;
    }
    (max..events.len()).find(|&i| events[i].position.commit != events[i - 1].position.commit)
}

#[cfg(test)]
mod tests;
