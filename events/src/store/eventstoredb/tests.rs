//! The adapter against a server that is not there: every call must fail as
//! `Unavailable` (never hang or panic), and input errors must not need a server.

use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::EsdbEventStore;
use crate::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError};

/// A closed local port, one discovery attempt: fails fast and deterministically.
const NOBODY: &str = "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10";

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TaskCreated".into(),
        schema_version: 1,
        data: json!({"title": "t"}),
        metadata: Metadata::default(),
    }
}

fn unavailable<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Unavailable(_)))
}

#[tokio::test]
async fn an_empty_append_is_refused_before_any_network_call() {
    let store = EsdbEventStore::connect(NOBODY).unwrap();
    let err = store.append("task-1", ExpectedVersion::Any, vec![]).await;
    assert!(matches!(err, Err(StoreError::EmptyAppend)), "{err:?}");
}

#[tokio::test]
async fn every_call_to_an_unreachable_server_is_unavailable() {
    let store = EsdbEventStore::connect(NOBODY).unwrap();
    let append = store
        .append("task-1", ExpectedVersion::NoStream, vec![event()])
        .await;
    assert!(unavailable(&append), "{append:?}");
    let read = store.read_stream("task-1", 0, None).await;
    assert!(unavailable(&read), "{read:?}");
    let all = store.read_all(None, 10).await;
    assert!(unavailable(&all), "{all:?}");
    let head = store.head().await;
    assert!(unavailable(&head), "{head:?}");
    let ping = store.ping().await;
    assert!(unavailable(&ping), "{ping:?}");
}

#[tokio::test]
async fn a_subscription_reports_the_outage_and_keeps_retrying() {
    let store = EsdbEventStore::connect(NOBODY).unwrap();
    let mut sub = store.subscribe_all(None);
    for _ in 0..2 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .expect("the subscription answers");
        assert!(
            matches!(next, Some(Err(StoreError::Unavailable(_)))),
            "{next:?}"
        );
    }
}

#[test]
fn connecting_outside_a_runtime_is_an_error_not_a_panic() {
    let err = EsdbEventStore::connect(NOBODY).err().unwrap();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
