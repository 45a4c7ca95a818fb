//! Every translation rule of the adapter, checked without a server.

use chrono::{TimeZone, Utc};
use kurrentdb::{CurrentRevision, StreamState};
use serde_json::json;
use uuid::Uuid;

use super::*;

fn recorded(stream: &str, version: u64, commit: u64, prepare: u64) -> RecordedEvent {
    RecordedEvent {
        position: Position::new(commit, prepare),
        stream_id: stream.to_owned(),
        version,
        event_id: Uuid::new_v4(),
        event_type: "TaskTitleChanged".into(),
        schema_version: 1,
        data: json!({}),
        metadata: Metadata::default(),
        recorded_at: Utc::now(),
    }
}

#[test]
fn expected_versions_map_to_stream_states() {
    assert_eq!(stream_state(ExpectedVersion::Any), StreamState::Any);
    assert_eq!(
        stream_state(ExpectedVersion::NoStream),
        StreamState::NoStream
    );
    assert_eq!(
        stream_state(ExpectedVersion::Exact(0)),
        StreamState::StreamRevision(0)
    );
    assert_eq!(
        stream_state(ExpectedVersion::Exact(u64::MAX)),
        StreamState::StreamRevision(u64::MAX)
    );
}

#[test]
fn positions_keep_commit_and_prepare_and_their_order() {
    let p = kurrentdb::Position {
        commit: u64::MAX,
        prepare: 7,
    };
    assert_eq!(to_position(p), Position::new(u64::MAX, 7));
    assert_eq!(from_position(to_position(p)), p);
    let (a, b) = (
        kurrentdb::Position {
            commit: 10,
            prepare: 99,
        },
        kurrentdb::Position {
            commit: 11,
            prepare: 1,
        },
    );
    assert_eq!(a < b, to_position(a) < to_position(b));
}

#[test]
fn a_wrong_expected_version_is_a_conflict_with_the_actual_version() {
    let err = kurrentdb::Error::WrongExpectedVersion {
        expected: StreamState::StreamRevision(0),
        current: CurrentRevision::Current(3),
    };
    assert!(matches!(
        store_error(err, ExpectedVersion::Exact(0)),
        StoreError::Conflict {
            expected: ExpectedVersion::Exact(0),
            actual: Some(3)
        }
    ));
    let missing = kurrentdb::Error::WrongExpectedVersion {
        expected: StreamState::StreamRevision(4),
        current: CurrentRevision::NoStream,
    };
    assert!(matches!(
        store_error(missing, ExpectedVersion::Exact(4)),
        StoreError::Conflict { actual: None, .. }
    ));
}

#[test]
fn transport_and_server_failures_are_unavailable() {
    let failures = [
        kurrentdb::Error::ConnectionClosed,
        kurrentdb::Error::DeadlineExceeded,
        kurrentdb::Error::ServerError("node gone".into()),
        kurrentdb::Error::AccessDenied,
        kurrentdb::Error::GrpcConnectionError(
            kurrentdb::GrpcConnectionError::MaxDiscoveryAttemptReached(3),
        ),
    ];
    for e in failures {
        let shown = e.to_string();
        match store_error(e, ExpectedVersion::Any) {
            StoreError::Unavailable(source) => assert_eq!(source.to_string(), shown),
            other => panic!("{shown} mapped to {other:?}"),
        }
    }
}

#[test]
fn a_deleted_stream_or_unreadable_response_is_corrupt_not_unavailable() {
    assert!(matches!(
        store_error(kurrentdb::Error::ResourceDeleted, ExpectedVersion::Any),
        StoreError::Corrupt(_)
    ));
    assert!(matches!(
        store_error(
            kurrentdb::Error::InternalParsingError("bad".into()),
            ExpectedVersion::Any
        ),
        StoreError::Corrupt(_)
    ));
}

#[test]
fn metadata_and_schema_version_round_trip_through_custom_metadata() {
    let metadata = Metadata {
        actor_id: Some(Uuid::new_v4()),
        owner_id: Some(Uuid::new_v4()),
        request_id: Some("req-1".into()),
        causation_id: Some("idem-9".into()),
        reverted_to: Some(4),
    };
    let stored = serde_json::to_vec(&StoredMetadata {
        schema_version: 3,
        metadata: metadata.clone(),
    })
    .unwrap();
    // Flat JSON, so operators can read it in the server's UI.
    let flat: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(flat["request_id"], "req-1");
    assert_eq!(flat["schema_version"], 3);

    let id = Uuid::new_v4();
    let data = serde_json::to_vec(&json!({"title": "x"})).unwrap();
    let event = decode(RawEvent {
        stream_id: "task-1",
        revision: 4,
        id,
        event_type: "TaskCreated",
        data: &data,
        custom_metadata: &stored,
        position: kurrentdb::Position {
            commit: 9,
            prepare: 8,
        },
        created_ticks: Some("17356896001234567"),
        created: Utc::now(),
    })
    .unwrap();
    assert_eq!(event.metadata, metadata);
    assert_eq!(event.schema_version, 3);
    assert_eq!(
        (event.stream_id.as_str(), event.version, event.event_id),
        ("task-1", 4, id)
    );
    assert_eq!(event.position, Position::new(9, 8));
    assert_eq!(event.data, json!({"title": "x"}));
    assert_eq!(event.recorded_at, created_at("17356896001234567").unwrap());
}

#[test]
fn absent_metadata_fields_stay_absent() {
    let stored = serde_json::to_vec(&StoredMetadata {
        schema_version: 1,
        metadata: Metadata::default(),
    })
    .unwrap();
    assert_eq!(stored, br#"{"schema_version":1}"#);
}

#[test]
fn events_without_our_metadata_or_with_bad_data_are_corrupt() {
    let raw = |data: &'static [u8], meta: &'static [u8]| RawEvent {
        stream_id: "task-1",
        revision: 0,
        id: Uuid::new_v4(),
        event_type: "TaskCreated",
        data,
        custom_metadata: meta,
        position: kurrentdb::Position::start(),
        created_ticks: None,
        created: Utc::now(),
    };
    assert!(matches!(
        decode(raw(b"{}", b"")),
        Err(StoreError::Corrupt(m)) if m.contains("metadata of task-1@0")
    ));
    assert!(matches!(
        decode(raw(b"not json", br#"{"schema_version":1}"#)),
        Err(StoreError::Corrupt(m)) if m.contains("data")
    ));
}

#[test]
fn created_ticks_keep_sub_second_precision() {
    // 2025-01-01T00:00:00.1234567Z in 100 ns ticks since the Unix epoch.
    let at = created_at("17356896001234567").unwrap();
    assert_eq!(
        at,
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_700)
    );
    assert!(created_at("soon").is_none());
    assert!(created_at("").is_none());
}

#[test]
fn ids_already_stored_are_a_retry_with_the_first_result() {
    let window = vec![recorded("task-1", 3, 30, 30), recorded("task-1", 4, 40, 40)];
    let ids: Vec<Uuid> = window.iter().map(|e| e.event_id).collect();
    assert_eq!(
        classify(&window, &ids),
        Known::All {
            version: 4,
            position: Position::new(40, 40)
        }
    );
    // A backwards read (the `Any` window) comes newest first: same answer.
    let reversed: Vec<RecordedEvent> = window.iter().rev().cloned().collect();
    assert_eq!(classify(&reversed, &ids), classify(&window, &ids));
}

#[test]
fn partly_stored_ids_are_a_mismatch_and_unknown_ids_are_new() {
    let window = vec![recorded("task-1", 0, 1, 1)];
    assert_eq!(
        classify(&window, &[window[0].event_id, Uuid::new_v4()]),
        Known::Some
    );
    assert_eq!(classify(&window, &[Uuid::new_v4()]), Known::None);
    assert_eq!(classify(&[], &[Uuid::new_v4()]), Known::None);
}

#[test]
fn batches_end_only_where_the_commit_changes() {
    let e = |commit, prepare| recorded("task-1", 0, commit, prepare);
    // Commits: [1] [2 2 2] [3]
    let events = vec![e(1, 1), e(2, 2), e(2, 3), e(2, 4), e(3, 5)];
    assert_eq!(commit_boundary(&events, 1), Some(1));
    assert_eq!(
        commit_boundary(&events, 2),
        Some(4),
        "the commit at 2 is kept whole"
    );
    assert_eq!(commit_boundary(&events, 4), Some(4));
    assert_eq!(commit_boundary(&events, 5), None, "nothing past max yet");
    assert_eq!(
        commit_boundary(&events[..4], 2),
        None,
        "the last commit may go on in the next page"
    );
    assert_eq!(commit_boundary(&events, 0), Some(1), "max 0 means 1");
}
